//! Kernel modules for the initramfs, from the kernel's own Debian package,
//! with what they need.
//!
//! Debian's `linux-image-*` package carries the modules but no
//! `modules.dep` (its post-install script runs `depmod`). The harness does
//! without `depmod`: it reads each module's `.modinfo` section, which
//! names its dependencies (`depends=`, found by the kernel build from the
//! symbols it uses, as `depmod` finds them), its soft dependencies
//! (`softdep=pre: … post: …`) and its aliases. A wanted name is a module
//! name or an alias (`crypto-crc32c`: every module that provides it); the
//! set is closed over dependencies and soft dependencies (a soft
//! dependency that nothing provides is left out, as `modprobe` leaves it).
//!
//! What goes into the image, under `/lib/modules/RELEASE/`: the `.ko` files
//! at their paths in the package, and the index files `modprobe` reads, for
//! these modules only, in `depmod`'s formats: `modules.dep` (each module's
//! full dependency list, the one to load first last, which busybox's
//! `modprobe` needs), `modules.alias`, `modules.softdep` (busybox's
//! `modprobe` ignores it: load a soft dependency by name or alias) and the
//! package's `modules.builtin`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Failure, Result};

/// What a module's `.modinfo` says, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name (`crc32c_intel` for `crc32c-intel.ko`).
    pub name: String,
    /// Its path under `/lib/modules/RELEASE/`.
    pub path: String,
    pub depends: Vec<String>,
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub aliases: Vec<String>,
}

/// The `key=value` strings of an ELF object's `.modinfo` section (64-bit
/// little-endian, as x86-64 modules are).
pub fn modinfo(elf: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    use object::{Object, ObjectSection};
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = |_| "a truncated or malformed ELF file".to_string();
    let file = object::read::elf::ElfFile64::<object::LittleEndian>::parse(elf).map_err(bad)?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| "no .modinfo section".to_string())?;
    let info = section.data().map_err(bad)?;
    Ok(info
        .split(|&b| b == 0)
        .filter_map(|field| {
            let field = String::from_utf8_lossy(field);
            let (k, v) = field.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// A module name as the kernel and `modprobe` compare them: `-` is `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

impl Module {
    /// A module from its `.modinfo` fields and its path.
    pub fn from_info(path: &str, info: &[(String, String)]) -> Module {
        let file_name = path.rsplit('/').next().unwrap_or(path);
        let mut m = Module {
            name: normalize(file_name.strip_suffix(".ko").unwrap_or(file_name)),
            path: path.to_string(),
            depends: Vec::new(),
            pre: Vec::new(),
            post: Vec::new(),
            aliases: Vec::new(),
        };
        for (key, value) in info {
            match key.as_str() {
                "name" => m.name = normalize(value),
                "depends" => m
                    .depends
                    .extend(value.split(',').filter(|d| !d.is_empty()).map(normalize)),
                "alias" => m.aliases.push(value.clone()),
                // softdep=pre: a b post: c
                "softdep" => {
                    let mut list = None;
                    for word in value.split_whitespace() {
                        match word {
                            "pre:" => list = Some(&mut m.pre),
                            "post:" => list = Some(&mut m.post),
                            _ => {
                                if let Some(l) = list.as_mut() {
                                    l.push(word.to_string());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }
}

/// `fnmatch(3)` with `*` and `?`, as module aliases use them.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Every module of a kernel, by name.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub modules: BTreeMap<String, Module>,
    /// Names of the modules built into the kernel (`modules.builtin`).
    pub builtin: BTreeSet<String>,
}

impl Index {
    pub fn add(&mut self, m: Module) {
        self.modules.insert(m.name.clone(), m);
    }

    /// The modules a name stands for: the module of that name, else every
    /// module with a matching alias; none for a built-in module.
    pub fn lookup(&self, name: &str) -> Vec<&Module> {
        let n = normalize(name);
        if let Some(m) = self.modules.get(&n) {
            return vec![m];
        }
        self.modules
            .values()
            .filter(|m| m.aliases.iter().any(|a| glob(&normalize(a), &n)))
            .collect()
    }

    /// The modules `wanted` needs, in an order they can be loaded in
    /// (dependencies and `pre:` soft dependencies first, `post:` ones
    /// after). A wanted name that is neither a module, an alias nor built
    /// in is an error; so is a dependency that is not in the index.
    pub fn resolve(&self, wanted: &[String]) -> std::result::Result<Vec<&Module>, String> {
        let mut order: Vec<&Module> = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            let found = self.lookup(name);
            if found.is_empty() && !self.builtin.contains(&normalize(name)) {
                return Err(format!("no module or alias {name} in this kernel"));
            }
            for m in found {
                self.visit(m, &mut seen, &mut order)?;
            }
        }
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        m: &'a Module,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<&'a Module>,
    ) -> std::result::Result<(), String> {
        // Marked before its dependencies: a cycle (soft dependencies may
        // make one) ends here instead of looping.
        if !seen.insert(m.name.clone()) {
            return Ok(());
        }
        for soft in &m.pre {
            for d in self.lookup(soft) {
                self.visit(d, seen, order)?;
            }
        }
        for dep in &m.depends {
            let d = self
                .modules
                .get(dep)
                .ok_or_else(|| format!("{} needs {dep}, which this kernel lacks", m.name))?;
            self.visit(d, seen, order)?;
        }
        order.push(m);
        for soft in &m.post {
            for d in self.lookup(soft) {
                self.visit(d, seen, order)?;
            }
        }
        Ok(())
    }

    /// Every module `name` needs to be loaded first, directly or not, in
    /// `modules.dep`'s order: the last one is loaded first.
    pub fn full_depends(&self, name: &str) -> Vec<&Module> {
        let mut seen = BTreeSet::from([name.to_string()]);
        let mut order = Vec::new();
        if let Some(m) = self.modules.get(name) {
            self.post_order(m, &mut seen, &mut order);
        }
        order.reverse();
        order
    }

    /// The dependencies of `m` not yet `seen`, each after its own.
    fn post_order<'a>(&'a self, m: &'a Module, seen: &mut BTreeSet<String>, order: &mut Vec<&'a Module>) {
        for d in &m.depends {
            if let Some(dm) = self.modules.get(d)
                && seen.insert(d.clone())
            {
                self.post_order(dm, seen, order);
                order.push(dm);
            }
        }
    }

    /// `modules.dep`, `modules.alias` and `modules.softdep` for `chosen`
    /// (in `depmod`'s formats), in that order.
    pub fn index_files(&self, chosen: &[&Module]) -> [String; 3] {
        let mut dep = String::new();
        let mut alias = String::new();
        let mut softdep = String::new();
        for m in chosen {
            let deps: Vec<&str> = self
                .full_depends(&m.name)
                .iter()
                .map(|d| d.path.as_str())
                .collect();
            dep.push_str(&format!("{}:", m.path));
            for d in deps {
                dep.push(' ');
                dep.push_str(d);
            }
            dep.push('\n');
            for a in &m.aliases {
                alias.push_str(&format!("alias {} {}\n", normalize(a), m.name));
            }
            if !m.pre.is_empty() || !m.post.is_empty() {
                softdep.push_str(&format!("softdep {}", m.name));
                for (label, list) in [("pre:", &m.pre), ("post:", &m.post)] {
                    if !list.is_empty() {
                        softdep.push_str(&format!(" {label} {}", list.join(" ")));
                    }
                }
                softdep.push('\n');
            }
        }
        [dep, alias, softdep]
    }
}

/// Reads every `.ko` under `release_dir` (`…/lib/modules/RELEASE`) and its
/// `modules.builtin`.
pub fn index_tree(release_dir: &Path) -> Result<Index> {
    let io = |p: &Path, e: std::io::Error| Failure::infra(format!("{}: {e}", p.display()));
    let mut index = Index::default();
    if let Ok(text) = fs::read_to_string(release_dir.join("modules.builtin")) {
        for line in text.lines() {
            let file = line.rsplit('/').next().unwrap_or(line);
            index
                .builtin
                .insert(normalize(file.strip_suffix(".ko").unwrap_or(file)));
        }
    }
    let mut compressed = 0;
    let mut stack: Vec<PathBuf> = vec![release_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".ko") {
                let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
                let info = modinfo(&bytes).map_err(|e| Failure::infra(format!("{}: {e}", path.display())))?;
                let rel = path
                    .strip_prefix(release_dir)
                    .map_err(|_| Failure::infra(format!("{} is outside the tree", path.display())))?;
                index.add(Module::from_info(&rel.to_string_lossy(), &info));
            } else if name.contains(".ko.") {
                compressed += 1;
            }
        }
    }
    if index.modules.is_empty() && compressed > 0 {
        return Err(Failure::infra(format!(
            "{}: the kernel's {compressed} modules are compressed (.ko.xz, .ko.zst), which the harness \
             does not unpack yet",
            release_dir.display()
        )));
    }
    Ok(index)
}

/// The `lib/modules/RELEASE` directory of an unpacked kernel package
/// (`/lib` or, merged, `/usr/lib`), and RELEASE.
pub fn release_dir(unpacked: &Path) -> Result<(PathBuf, String)> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let dir = unpacked.join(base);
        let Ok(read) = fs::read_dir(&dir) else { continue };
        let mut releases: Vec<String> = read
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        releases.sort();
        if let [release] = releases.as_slice() {
            return Ok((dir.join(release), release.clone()));
        }
        if !releases.is_empty() {
            return Err(Failure::infra(format!(
                "{}: more than one kernel release ({})",
                dir.display(),
                releases.join(", ")
            )));
        }
    }
    Err(Failure::infra(format!(
        "the kernel package has no lib/modules/RELEASE (unpacked in {})",
        unpacked.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str], pre: &[&str], aliases: &[&str]) -> Module {
        Module {
            name: name.into(),
            path: format!("kernel/{name}.ko"),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            pre: pre.iter().map(|s| s.to_string()).collect(),
            post: Vec::new(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// ext4 and virtio as Debian's 6.1 kernel has them.
    fn kernel() -> Index {
        let mut i = Index::default();
        i.add(module(
            "ext4",
            &["jbd2", "mbcache", "crc16"],
            &["crypto-crc32c"],
            &["fs-ext4"],
        ));
        i.add(module("jbd2", &[], &["crypto-crc32c"], &[]));
        i.add(module("mbcache", &[], &[], &[]));
        i.add(module("crc16", &[], &[], &[]));
        i.add(module("crc32c_generic", &[], &[], &["crypto-crc32c", "crc32c"]));
        i.add(module(
            "crc32c_intel",
            &[],
            &[],
            &["crypto-crc32c", "crc32c-intel"],
        ));
        i.add(module("virtio", &[], &[], &[]));
        i.add(module("virtio_ring", &[], &[], &[]));
        i.add(module(
            "virtio_blk",
            &["virtio", "virtio_ring"],
            &[],
            &["virtio:d00000002v*"],
        ));
        i.add(module(
            "virtio_pci",
            &[
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
            ],
            &[],
            &["pci:v00001AF4d*sv*sd*bc*sc*i*"],
        ));
        i.add(module("virtio_pci_modern_dev", &[], &[], &[]));
        i.add(module("virtio_pci_legacy_dev", &[], &[], &[]));
        i.add(module("loop", &[], &[], &[]));
        i.builtin.insert("unix".into());
        i
    }

    fn names(ms: &[&Module]) -> Vec<String> {
        ms.iter().map(|m| m.name.clone()).collect()
    }

    fn wanted(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_and_soft_dependencies_come_first() {
        let k = kernel();
        let order = k.resolve(&wanted(&["virtio_pci", "virtio_blk", "ext4"])).unwrap();
        assert_eq!(
            names(&order),
            [
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio",
                "virtio_pci",
                "virtio_blk",
                // ext4's soft dependency is an alias: both providers.
                "crc32c_generic",
                "crc32c_intel",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
            ]
        );
        // Every module comes after what it depends on.
        for (i, m) in order.iter().enumerate() {
            for d in &m.depends {
                assert!(order[..i].iter().any(|o| &o.name == d), "{} before {d}", m.name);
            }
        }
    }

    #[test]
    fn names_may_be_aliases_or_have_dashes_and_built_ins_need_nothing() {
        let k = kernel();
        assert_eq!(
            names(&k.resolve(&wanted(&["fs-ext4"])).unwrap()).last().unwrap(),
            "ext4"
        );
        assert_eq!(
            names(&k.resolve(&wanted(&["crc32c-intel"])).unwrap()),
            ["crc32c_intel"]
        );
        assert_eq!(
            names(&k.resolve(&wanted(&["virtio-blk"])).unwrap())
                .last()
                .unwrap(),
            "virtio_blk"
        );
        assert!(k.resolve(&wanted(&["unix"])).unwrap().is_empty());
        assert_eq!(
            k.resolve(&wanted(&["ext5"])).unwrap_err(),
            "no module or alias ext5 in this kernel"
        );
        let mut broken = kernel();
        broken.modules.remove("jbd2");
        assert_eq!(
            broken.resolve(&wanted(&["ext4"])).unwrap_err(),
            "ext4 needs jbd2, which this kernel lacks"
        );
    }

    #[test]
    fn a_soft_dependency_nothing_provides_is_left_out_and_cycles_end() {
        let mut k = Index::default();
        k.add(module("a", &[], &["b", "nothing"], &[]));
        k.add(module("b", &[], &["a"], &[]));
        assert_eq!(names(&k.resolve(&wanted(&["a"])).unwrap()), ["b", "a"]);
    }

    #[test]
    fn the_index_files_are_depmods() {
        let mut k = kernel();
        // A dependency of a dependency: listed after it (loaded before).
        k.modules.get_mut("jbd2").unwrap().depends.push("crc16".into());
        let order = k.resolve(&wanted(&["virtio_blk", "ext4"])).unwrap();
        let [dep, alias, softdep] = k.index_files(&order);
        assert!(
            dep.contains("kernel/virtio_blk.ko: kernel/virtio_ring.ko kernel/virtio.ko\n"),
            "{dep}"
        );
        assert!(
            dep.contains("kernel/ext4.ko: kernel/mbcache.ko kernel/jbd2.ko kernel/crc16.ko\n"),
            "{dep}"
        );
        assert!(dep.contains("kernel/crc16.ko:\n"), "{dep}");
        assert_eq!(dep.lines().count(), order.len());
        assert!(alias.contains("alias crypto_crc32c crc32c_generic\n"), "{alias}");
        assert!(alias.contains("alias crypto_crc32c crc32c_intel\n"), "{alias}");
        assert!(alias.contains("alias virtio:d00000002v* virtio_blk\n"), "{alias}");
        assert_eq!(
            softdep,
            "softdep jbd2 pre: crypto-crc32c\nsoftdep ext4 pre: crypto-crc32c\n"
        );
    }

    #[test]
    fn full_dependencies_are_transitive_and_load_in_reverse() {
        let mut k = Index::default();
        k.add(module("top", &["mid", "leaf2", "a"], &[], &[]));
        k.add(module("mid", &["leaf"], &[], &[]));
        k.add(module("leaf", &[], &[], &[]));
        k.add(module("leaf2", &["leaf"], &[], &[]));
        // A direct dependency that another direct one needs.
        k.add(module("a", &["leaf2"], &[], &[]));
        let full = k.full_depends("top");
        assert_eq!(names(&full), ["a", "leaf2", "mid", "leaf"]);
        // Loaded from the end, each module comes after its own.
        let mut loaded: Vec<&str> = Vec::new();
        for m in full.iter().rev() {
            assert!(
                m.depends.iter().all(|d| loaded.contains(&d.as_str())),
                "{}",
                m.name
            );
            loaded.push(&m.name);
        }
    }

    #[test]
    fn globs() {
        assert!(glob(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
        ));
        assert!(glob("crypto_crc32c", "crypto_crc32c"));
        assert!(glob("a?c*", "abcdef"));
        assert!(!glob("crypto_crc32c", "crypto_crc32c_generic"));
        assert!(!glob("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
    }

    #[test]
    fn modinfo_fields_give_the_module() {
        let info: Vec<(String, String)> = [
            ("softdep", "pre: crypto-crc32c post: x"),
            ("alias", "fs-ext4"),
            ("depends", "jbd2,mbcache,crc16"),
            ("name", "ext4"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = Module::from_info("kernel/fs/ext4/ext4.ko", &info);
        assert_eq!(m.name, "ext4");
        assert_eq!(m.depends, ["jbd2", "mbcache", "crc16"]);
        assert_eq!(m.pre, ["crypto-crc32c"]);
        assert_eq!(m.post, ["x"]);
        assert_eq!(m.aliases, ["fs-ext4"]);
        let m = Module::from_info(
            "kernel/arch/x86/crypto/crc32c-intel.ko",
            &[("depends".into(), "".into())],
        );
        assert_eq!(m.name, "crc32c_intel");
        assert!(m.depends.is_empty());
    }

    /// A minimal ELF64 object: a header, a `.modinfo` section and the
    /// section name table.
    fn elf(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 64];
        f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        f[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        f[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[0x14..0x18].copy_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
        f[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // header size
        let info_at = f.len();
        f.extend_from_slice(modinfo);
        let names_at = f.len();
        f.extend_from_slice(names);
        let shoff = f.len();
        let header = |name: u32, kind: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        f.extend(header(0, 0, 0, 0)); // SHT_NULL
        f.extend(header(11, 1, info_at, modinfo.len())); // SHT_PROGBITS
        f.extend(header(1, 3, names_at, names.len())); // SHT_STRTAB
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn the_modinfo_section_is_read_from_the_elf_file() {
        let f = elf(b"alias=fs-ext4\0depends=jbd2,crc16\0\0\0name=ext4\0");
        assert_eq!(
            modinfo(&f).unwrap(),
            [
                ("alias".to_string(), "fs-ext4".to_string()),
                ("depends".into(), "jbd2,crc16".into()),
                ("name".into(), "ext4".into())
            ]
        );
        assert_eq!(modinfo(b"MZ").unwrap_err(), "not a 64-bit little-endian ELF file");
        assert_eq!(
            modinfo(&f[..70]).unwrap_err(),
            "a truncated or malformed ELF file"
        );
        let other = elf(b"x")
            .iter()
            .map(|&b| if b == b'm' { b'n' } else { b })
            .collect::<Vec<_>>();
        assert_eq!(modinfo(&other).unwrap_err(), "no .modinfo section");
    }
}
