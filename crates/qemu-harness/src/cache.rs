//! The artifact cache: `target/qemu-harness/KIND/KEY/FILE`, where KEY is a
//! SHA-256 over everything the artifact is made from.
//!
//! An artifact is rebuilt only when an input changed, because a changed
//! input gives a different key. Builds go to a private temporary directory
//! that is renamed into place, so parallel runs never see half an artifact
//! (the loser of a race keeps the winner's copy). Each kind keeps its few
//! most recent entries.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Failure, Result};

/// How many entries of one kind are kept…
const KEEP: usize = 4;
/// …unless they were used this recently (another run may be about to
/// read them).
const RECENT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Builds a cache key from named inputs, in order. Every field is framed
/// with its name and length, so no two different input lists hash alike by
/// running into each other.
#[derive(Clone)]
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// A key for artifacts of `kind`, made by code of `version` (bump it
    /// when the way an artifact is made changes).
    pub fn new(kind: &str, version: u32) -> KeyBuilder {
        let mut k = KeyBuilder(Sha256::new());
        k.field("kind", kind.as_bytes());
        k.field("version", &version.to_le_bytes());
        k
    }

    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut KeyBuilder {
        for part in [name.as_bytes(), value] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// SHA-256 of some bytes, in hex.
pub fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA-256 of a file's content, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Whether [`Cache::get_or_build`] found the artifact or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Built,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact `file` of `kind` with `key` lives.
    pub fn path(&self, kind: &str, key: &str, file: &str) -> PathBuf {
        self.root.join(kind).join(key).join(file)
    }

    /// The artifact `file` of `kind` with `key`: the cached one, or a new
    /// one that `build` writes into the directory it is given.
    pub fn get_or_build(
        &self,
        kind: &str,
        key: &str,
        file: &str,
        build: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(PathBuf, Outcome)> {
        let dir = self.root.join(kind).join(key);
        let wanted = dir.join(file);
        if wanted.is_file() {
            // Touch it so it counts as recently used.
            let _ = fs::File::open(&dir).and_then(|d| d.set_modified(std::time::SystemTime::now()));
            return Ok((wanted, Outcome::Hit));
        }
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Failure::infra(format!("cache: cannot {what} {}: {e}", p.display()))
        };
        let tmp = self
            .root
            .join(kind)
            .join(format!(".tmp-{key}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io("remove", &tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| io("create", &tmp, e))?;
        if let Err(f) = build(&tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(f);
        }
        if !tmp.join(file).is_file() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(Failure::infra(format!(
                "cache: building {kind} did not make {file}"
            )));
        }
        if fs::rename(&tmp, &dir).is_err() {
            // Another run made it first: use theirs.
            let _ = fs::remove_dir_all(&tmp);
            if !wanted.is_file() {
                return Err(Failure::infra(format!(
                    "cache: cannot move {} into place",
                    tmp.display()
                )));
            }
        }
        self.prune(kind, key);
        Ok((wanted, Outcome::Built))
    }

    /// Removes all but the [`KEEP`] most recently used entries of `kind`
    /// (never `current`, nor one used within [`RECENT`]).
    fn prune(&self, kind: &str, current: &str) {
        let Ok(read) = fs::read_dir(self.root.join(kind)) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = read
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && name != current
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        entries.sort();
        let excess = (entries.len() + 1).saturating_sub(KEEP);
        let now = std::time::SystemTime::now();
        for (used, path) in entries.into_iter().take(excess) {
            if now.duration_since(used).is_ok_and(|age| age > RECENT) {
                let _ = fs::remove_dir_all(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fields: &[(&str, &[u8])]) -> String {
        let mut k = KeyBuilder::new("t", 1);
        for (n, v) in fields {
            k.field(n, v);
        }
        k.finish()
    }

    #[test]
    fn the_same_inputs_give_the_same_key() {
        assert_eq!(key(&[("a", b"1"), ("b", b"2")]), key(&[("a", b"1"), ("b", b"2")]));
        assert_eq!(key(&[]).len(), 64);
    }

    #[test]
    fn any_changed_input_changes_the_key() {
        let base = key(&[("a", b"1"), ("b", b"2")]);
        assert_ne!(base, key(&[("a", b"1"), ("b", b"3")]), "value");
        assert_ne!(base, key(&[("a", b"1"), ("c", b"2")]), "name");
        assert_ne!(base, key(&[("b", b"2"), ("a", b"1")]), "order");
        assert_ne!(base, key(&[("a", b"1")]), "a field less");
        let mut v2 = KeyBuilder::new("t", 2);
        v2.field("a", b"1").field("b", b"2");
        assert_ne!(base, v2.finish(), "version");
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        assert_ne!(key(&[("a", b"12"), ("b", b"")]), key(&[("a", b"1"), ("b", b"2")]));
        assert_ne!(key(&[("ab", b"")]), key(&[("a", b"b")]));
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qemu-harness-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_artifact_is_built_once_per_key() {
        let dir = scratch("once");
        let cache = Cache::new(&dir);
        let mut builds = 0;
        let get = |key: &str, builds: &mut u32| {
            cache
                .get_or_build("thing", key, "out", |d| {
                    *builds += 1;
                    fs::write(d.join("out"), key).map_err(|e| Failure::infra(e.to_string()))
                })
                .unwrap()
        };
        let (p1, o1) = get("k1", &mut builds);
        let (p2, o2) = get("k1", &mut builds);
        let (p3, o3) = get("k2", &mut builds);
        assert_eq!((o1, o2, o3), (Outcome::Built, Outcome::Hit, Outcome::Built));
        assert_eq!(p1, p2);
        assert_ne!(p1, p3);
        assert_eq!(builds, 2);
        assert_eq!(fs::read_to_string(p3).unwrap(), "k2");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_build_leaves_nothing_behind() {
        let dir = scratch("fail");
        let cache = Cache::new(&dir);
        let err = cache
            .get_or_build("thing", "k", "out", |d| {
                fs::write(d.join("out"), "half").unwrap();
                Err(Failure::infra("no"))
            })
            .unwrap_err();
        assert_eq!(err.message, "no");
        assert_eq!(fs::read_dir(dir.join("thing")).unwrap().count(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_the_most_recent_entries_are_kept() {
        let dir = scratch("prune");
        let cache = Cache::new(&dir);
        for i in 0..KEEP + 3 {
            let key = format!("k{i}");
            cache
                .get_or_build("thing", &key, "out", |d| {
                    fs::write(d.join("out"), "x").map_err(|e| Failure::infra(e.to_string()))
                })
                .unwrap();
            // mtimes must differ for the order to be defined.
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            fs::File::open(dir.join("thing").join(&key))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let mut left: Vec<String> = fs::read_dir(dir.join("thing"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), KEEP);
        assert!(left.contains(&format!("k{}", KEEP + 2)), "{left:?}");
        assert!(!left.contains(&"k0".to_string()), "{left:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn entries_used_recently_are_never_removed() {
        let dir = scratch("recent");
        let cache = Cache::new(&dir);
        for i in 0..KEEP + 2 {
            cache
                .get_or_build("thing", &format!("k{i}"), "out", |d| {
                    fs::write(d.join("out"), "x").map_err(|e| Failure::infra(e.to_string()))
                })
                .unwrap();
        }
        assert_eq!(fs::read_dir(dir.join("thing")).unwrap().count(), KEEP + 2);
        fs::remove_dir_all(dir).unwrap();
    }
}
