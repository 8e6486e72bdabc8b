//! The guest kernel: Debian's `linux-image-amd64`, unpacked to the
//! uncompressed `vmlinux` ELF that QEMU boots through PVH.
//!
//! Under emulation a bzImage spends about 5 of its 8.5 s decompressing
//! itself; the ELF, loaded directly, boots in about 3 s. The compressed
//! image inside `vmlinuz` is found the way the kernel's `extract-vmlinux`
//! finds it: try each compression magic in turn until one decompresses to
//! an ELF file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cache::{Cache, KeyBuilder, Outcome};
use crate::debian;
use crate::error::{Failure, Result};
use crate::exec;

/// A compression format the kernel can be packed with, and the host tool
/// that unpacks it from stdin, ignoring what follows the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xz,
    Zstd,
    Gzip,
}

impl Format {
    fn magic(self) -> &'static [u8] {
        match self {
            Format::Xz => b"\xfd7zXZ\x00",
            Format::Zstd => b"\x28\xb5\x2f\xfd",
            Format::Gzip => b"\x1f\x8b\x08",
        }
    }

    fn command(self) -> Command {
        let mut c = match self {
            Format::Xz => Command::new("xz"),
            Format::Zstd => Command::new("zstd"),
            Format::Gzip => Command::new("gzip"),
        };
        match self {
            Format::Xz => c.args(["-dc", "--single-stream"]),
            Format::Zstd => c.args(["-dc"]),
            Format::Gzip => c.args(["-dc"]),
        };
        c
    }
}

const ELF: &[u8] = b"\x7fELF";

/// Where compressed streams may start in `image`, in the order to try
/// them (by format, then by offset).
pub fn candidate_streams(image: &[u8]) -> Vec<(usize, Format)> {
    let mut found = Vec::new();
    for format in [Format::Xz, Format::Zstd, Format::Gzip] {
        let magic = format.magic();
        let mut at = 0;
        while let Some(i) = find(&image[at..], magic) {
            found.push((at + i, format));
            at += i + 1;
        }
    }
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The ELF kernel inside a `vmlinuz` (or the file itself if it is one).
pub fn extract_vmlinux(image: &[u8], deadline: Instant) -> Result<Vec<u8>> {
    if image.starts_with(ELF) {
        return Ok(image.to_vec());
    }
    let mut tried = Vec::new();
    for (offset, format) in candidate_streams(image) {
        let Ok(out) = exec::run(&mut format.command(), Some(image[offset..].to_vec()), deadline) else {
            tried.push(format!("{format:?} at {offset}: no tool"));
            continue;
        };
        if out.stdout.starts_with(ELF) {
            return Ok(out.stdout);
        }
        tried.push(format!("{format:?} at {offset}: not an ELF"));
    }
    Err(Failure::infra(format!(
        "no ELF kernel found inside the vmlinuz (tried: {})",
        tried.join("; ")
    )))
}

/// The unpacked `vmlinux` of the kernel `metapackage` depends on, from the
/// cache or downloaded now; also says which kernel package it is.
pub fn vmlinux(cache: &Cache, metapackage: &str, deadline: Instant) -> Result<(PathBuf, Outcome, String)> {
    let package = package(cache, metapackage, deadline)?;
    let mut key = KeyBuilder::new("kernel", 1);
    key.field("deb-sha256", package.sha256.as_bytes());
    let label = format!("{} {}", package.name, package.version);
    let (path, outcome) = cache.get_or_build("kernel", &key.finish(), "vmlinux", |dir| {
        let deb = debian::download(&package, dir, deadline)?;
        debian::extract(&deb, &["./boot/vmlinuz-*"], dir, deadline)?;
        let _ = std::fs::remove_file(&deb);
        let vmlinuz = find_vmlinuz(&dir.join("boot"))?;
        let image =
            std::fs::read(&vmlinuz).map_err(|e| Failure::infra(format!("{}: {e}", vmlinuz.display())))?;
        let elf = extract_vmlinux(&image, deadline)?;
        std::fs::write(dir.join("vmlinux"), elf)
            .map_err(|e| Failure::infra(format!("writing vmlinux: {e}")))?;
        let _ = std::fs::remove_dir_all(dir.join("boot"));
        Ok(())
    })?;
    Ok((path, outcome, label))
}

/// The versioned kernel package `metapackage` depends on (the one whose
/// kernel boots and whose modules go into the image).
pub fn package(cache: &Cache, metapackage: &str, deadline: Instant) -> Result<debian::Package> {
    let meta = debian::candidate(metapackage, cache, deadline)?;
    let name = debian::dependency_with_prefix(&meta.depends, "linux-image-")
        .ok_or_else(|| Failure::infra(format!("{metapackage} depends on no linux-image-* package")))?;
    debian::candidate(&name, cache, deadline)
}

fn find_vmlinuz(boot: &Path) -> Result<PathBuf> {
    std::fs::read_dir(boot)
        .map_err(|e| Failure::infra(format!("the kernel package has no boot/: {e}")))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .ok_or_else(|| Failure::infra("the kernel package has no boot/vmlinuz-*"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_magic_is_a_candidate_xz_first() {
        let mut image = b"MZ setup code ".to_vec();
        image.extend_from_slice(b"\x1f\x8b\x08gz");
        image.extend_from_slice(b"\xfd7zXZ\x00one");
        image.extend_from_slice(b"\xfd7zXZ\x00two");
        let c = candidate_streams(&image);
        assert_eq!(c, [(19, Format::Xz), (28, Format::Xz), (14, Format::Gzip)]);
    }

    #[test]
    fn an_elf_is_taken_as_it_is() {
        let elf = b"\x7fELF\x02\x01rest".to_vec();
        assert_eq!(extract_vmlinux(&elf, Instant::now()).unwrap(), elf);
    }

    #[test]
    fn the_stream_that_unpacks_to_an_elf_wins() {
        // A fake bzImage: setup bytes, a gzip stream of a non-ELF (a decoy),
        // then a gzip stream of an "ELF", then trailing bytes.
        let gzip = |data: &[u8]| {
            let out = exec::run(Command::new("gzip").arg("-c"), Some(data.to_vec()), far()).unwrap();
            out.stdout
        };
        let mut image = b"setup".to_vec();
        image.extend(gzip(b"not a kernel"));
        image.extend(gzip(b"\x7fELF kernel"));
        image.extend_from_slice(b"trailer");
        assert_eq!(extract_vmlinux(&image, far()).unwrap(), b"\x7fELF kernel");
        let f = extract_vmlinux(b"setup only", far()).unwrap_err();
        assert!(f.message.starts_with("no ELF kernel"), "{f}");
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }
}
