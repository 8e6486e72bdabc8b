//! Disk images for the VM (`[[boot.disk]]`): made in the run directory
//! before each boot attempt, so every attempt starts from a fresh file
//! system, and left there after the run for the host to inspect (with
//! `dumpe2fs`, `e2fsck -n`, `debugfs`).
//!
//! They are not cached: a sparse file and `mkfs.ext4` on it take a few
//! milliseconds, and each boot writes to its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Failure, Result};
use crate::exec;
use crate::job::Disk;

/// Makes `disk` in `run_dir` (replacing an older image): a sparse file of
/// its size, then its `mkfs` command on it. Returns the image's path.
pub fn make(disk: &Disk, run_dir: &Path, deadline: Instant) -> Result<PathBuf> {
    let path = run_dir.join(&disk.file);
    let io = |e: std::io::Error| Failure::infra(format!("{}: {e}", path.display()));
    let _ = fs::remove_file(&path);
    fs::File::create(&path)
        .and_then(|f| f.set_len(disk.size))
        .map_err(io)?;
    if let Some((program, args)) = disk.mkfs.split_first() {
        if !exec::on_path(program) {
            return Err(Failure::infra(format!(
                "{program} is not installed (for the disk {}; e2fsprogs has mkfs.ext4)",
                disk.file
            )));
        }
        exec::run_ok(Command::new(program).args(args).arg(&path), None, deadline)?;
    }
    Ok(path)
}

/// QEMU's `-drive` value for an image: a raw file on the interface.
/// Commas in the path are doubled, as QEMU's option syntax wants.
pub fn drive_arg(image: &Path, interface: &str) -> String {
    format!(
        "file={},format=raw,if={interface}",
        image.display().to_string().replace(',', ",,")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qemu-harness-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn a_blank_disk_is_a_sparse_file_of_its_size_made_afresh() {
        let d = dir("blank");
        let disk = Disk {
            file: "blank.img".into(),
            size: 3 << 20,
            mkfs: Vec::new(),
            interface: "virtio".into(),
        };
        fs::write(d.join("blank.img"), b"old content").unwrap();
        let path = make(&disk, &d, far()).unwrap();
        assert_eq!(path, d.join("blank.img"));
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 << 20);
        assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_mkfs_command_gets_the_image_last() {
        let d = dir("mkfs");
        // A stand-in for mkfs: writes its arguments into the image.
        let disk = Disk {
            file: "d.img".into(),
            size: 1 << 20,
            mkfs: vec![
                "sh".into(),
                "-c".into(),
                "echo \"$0 $1\" > \"$1\"".into(),
                "label".into(),
            ],
            interface: "virtio".into(),
        };
        let path = make(&disk, &d, far()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("label {}\n", path.display())
        );
        let failing = Disk {
            mkfs: vec!["false".into()],
            ..disk.clone()
        };
        let f = make(&failing, &d, far()).unwrap_err();
        assert_eq!(f.kind, crate::error::Kind::Infrastructure);
        let missing = Disk {
            mkfs: vec!["no-such-mkfs".into()],
            ..disk
        };
        let f = make(&missing, &d, far()).unwrap_err();
        assert!(f.message.starts_with("no-such-mkfs is not installed"), "{f}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn drive_arguments_escape_commas() {
        assert_eq!(
            drive_arg(Path::new("/runs/a,b/disk.img"), "virtio"),
            "file=/runs/a,,b/disk.img,format=raw,if=virtio"
        );
    }
}
