//! The initramfs image: a `newc` cpio archive, written here rather than by
//! `cpio(1)` so that device nodes need no root, every entry is owned by
//! root with mtime 0 (the same inputs give the same bytes), and the
//! archive's checksum can be computed from its entries before it is
//! written.
//!
//! It is not compressed: the kernel reads a plain archive directly, which
//! under emulation is faster than inflating one.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    /// Permission bits (the file type is added from `node`).
    pub mode: u32,
}

/// An archive being put together; paths are absolute guest paths.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds (or replaces) an entry, with its missing parent directories
    /// (mode 0755).
    pub fn add(&mut self, path: &str, node: Node, mode: u32) {
        let path = normalize(path);
        let mut parent = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(Entry {
                node: Node::Dir,
                mode: 0o755,
            });
        }
        self.entries.insert(
            path,
            Entry {
                node,
                mode: mode & 0o7777,
            },
        );
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        self.add(path, Node::Dir, mode);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add(path, Node::File(data), mode);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, Node::Symlink(target.to_string()), 0o777);
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32, mode: u32) {
        self.add(path, Node::CharDevice { major, minor }, mode);
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&normalize(path))
    }

    /// Entries in archive order (parents before children), paths relative
    /// to the root.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Writes the archive, trailer included.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        for (ino, (path, entry)) in (1..).zip(&self.entries) {
            let (kind, data, rdev): (u32, &[u8], (u32, u32)) = match &entry.node {
                Node::Dir => (S_IFDIR, &[], (0, 0)),
                Node::File(data) => (S_IFREG, data, (0, 0)),
                Node::Symlink(target) => (S_IFLNK, target.as_bytes(), (0, 0)),
                Node::CharDevice { major, minor } => (S_IFCHR, &[], (*major, *minor)),
            };
            let nlink = if kind == S_IFDIR { 2 } else { 1 };
            write_entry(&mut out, ino, kind | entry.mode, nlink, rdev, path, data)?;
        }
        write_entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?;
        out.flush()
    }
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn write_entry(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, // uid
        0, // gid
        0, // mtime
        data.len(),
        0, // dev major
        0, // dev minor
        rdev.0,
        rdev.1,
        0, // check
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&[0; 3][..pad4(header.len() + namesize)])?;
    out.write_all(data)?;
    out.write_all(&[0; 3][..pad4(data.len())])
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_come_first() {
        let mut a = Archive::new();
        a.file("/etc/init/x.conf", b"exec true\n".to_vec(), 0o644);
        a.symlink("/bin/sh", "busybox");
        let paths: Vec<&str> = a.entries().map(|(p, _)| p).collect();
        assert_eq!(paths, ["bin", "bin/sh", "etc", "etc/init", "etc/init/x.conf"]);
        assert_eq!(a.get("/etc/init").unwrap().node, Node::Dir);
    }

    #[test]
    fn newc_layout_is_the_kernels() {
        let mut a = Archive::new();
        a.file("/init", b"hi".to_vec(), 0o755);
        a.char_device("/dev/console", 5, 1, 0o600);
        let mut out = Vec::new();
        a.write_to(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        // "dev": a directory, inode 1.
        assert!(text.starts_with("07070100000001000041ed"), "{text}");
        // The device: char, mode 0600, rdev 5:1.
        let dev = text.find("dev/console").unwrap();
        let header = &text[dev - 110..dev];
        assert_eq!(&header[14..22], "00002180");
        assert_eq!(&header[78..94], "0000000500000001");
        // The file: its size, its name padded to 4, then the data.
        let init = text.find("init\0").unwrap();
        let header = &text[init - 110..init];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "00000002");
        assert_eq!(&header[94..102], "00000005");
        assert_eq!(&out[init + 5..init + 8], b"\0hi");
        assert!(text.contains("TRAILER!!!\0"));
    }

    #[test]
    fn the_same_entries_give_the_same_bytes() {
        let build = |order: &[&str]| {
            let mut a = Archive::new();
            for p in order {
                a.file(p, p.as_bytes().to_vec(), 0o644);
            }
            let mut out = Vec::new();
            a.write_to(&mut out).unwrap();
            out
        };
        assert_eq!(build(&["/a", "/b/c"]), build(&["/b/c", "/a"]));
    }
}
