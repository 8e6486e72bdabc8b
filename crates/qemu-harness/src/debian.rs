//! Debian packages as inputs: the candidate version and checksum from
//! `apt-cache`, the `.deb` from `apt-get download`, its files from
//! `dpkg-deb`.
//!
//! The checksum apt reports (the archive's `SHA256` field) is what cache
//! keys are made of, so a cached kernel or busybox is reused without
//! downloading anything, and replaced when Debian publishes a new build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cache::{Cache, KeyBuilder};
use crate::error::{Failure, Result};
use crate::exec;

/// A package's candidate version as apt describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub depends: String,
}

/// Reads the first paragraph of `apt-cache show` output.
pub fn parse_show(text: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    let mut sha256 = None;
    let mut depends = String::new();
    for line in text.lines() {
        if line.is_empty() {
            if name.is_some() {
                break;
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "Package" => name = Some(value),
            "Version" => version = Some(value),
            "SHA256" => sha256 = Some(value),
            "Depends" | "Pre-Depends" => {
                if !depends.is_empty() {
                    depends.push_str(", ");
                }
                depends.push_str(&value);
            }
            _ => {}
        }
    }
    Some(Package {
        name: name?,
        version: version?,
        sha256: sha256?,
        depends,
    })
}

/// The first package named in a `Depends` field whose name starts with
/// `prefix` (versions and alternatives dropped), e.g. the versioned
/// `linux-image-6.1.0-56-amd64` of the `linux-image-amd64` metapackage.
pub fn dependency_with_prefix(depends: &str, prefix: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| {
            d.split_whitespace()
                .next()
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
        })
        .find(|name| name.starts_with(prefix) && name.len() > prefix.len())
        .map(str::to_string)
}

/// The candidate of `name`, remembered in the cache for as long as apt's
/// lists and configuration stay the same (asking apt takes a second).
pub fn candidate(name: &str, cache: &Cache, deadline: Instant) -> Result<Package> {
    let mut key = KeyBuilder::new("apt-show", 1);
    key.field("package", name.as_bytes());
    key.field("apt-state", apt_state().as_bytes());
    let key = key.finish();
    if let Some(p) = fs::read_to_string(cache.path("apt", &key, "show"))
        .ok()
        .and_then(|t| parse_show(&t))
    {
        return Ok(p);
    }
    let package = ask_apt(name, deadline)?;
    let text = format!(
        "Package: {}\nVersion: {}\nSHA256: {}\nDepends: {}\n",
        package.name, package.version, package.sha256, package.depends
    );
    // A cache that cannot be written only costs the next run a second.
    let _ = cache.get_or_build("apt", &key, "show", |dir| {
        fs::write(dir.join("show"), text).map_err(|e| Failure::infra(e.to_string()))
    });
    Ok(package)
}

/// What apt's answers depend on: the names, sizes and times of the
/// package lists, apt's configuration and dpkg's status.
fn apt_state() -> String {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = ["/var/lib/apt/lists", "/etc/apt", "/var/lib/dpkg/status"]
        .map(PathBuf::from)
        .into();
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(read) = fs::read_dir(&p) {
                stack.extend(read.flatten().map(|e| e.path()));
            }
        } else {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            files.push(format!("{} {} {:?}", p.display(), meta.len(), mtime));
        }
    }
    files.sort();
    files.join("\n")
}

/// Asks `apt-cache` for the candidate of `name`. When apt knows no such
/// package (a fresh machine whose lists were never fetched), runs
/// `apt-get update` once and asks again.
fn ask_apt(name: &str, deadline: Instant) -> Result<Package> {
    let show = |deadline| {
        let out = exec::run(
            Command::new("apt-cache").args(["show", "--no-all-versions", name]),
            None,
            deadline,
        )?;
        Ok::<_, Failure>(parse_show(&out.stdout_text()))
    };
    if let Some(p) = show(deadline)? {
        return Ok(p);
    }
    exec::run_ok(Command::new("apt-get").args(["update", "-qq"]), None, deadline)?;
    show(deadline)?.ok_or_else(|| {
        Failure::infra(format!(
            "apt knows no package {name} (even after apt-get update): check the apt sources"
        ))
    })
}

/// Downloads `package` into `dir` and checks its checksum.
pub fn download(package: &Package, dir: &Path, deadline: Instant) -> Result<PathBuf> {
    let spec = format!("{}={}", package.name, package.version);
    exec::run_ok(
        Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(dir),
        None,
        deadline,
    )?;
    let prefix = format!("{}_", package.name);
    let deb = std::fs::read_dir(dir)
        .map_err(|e| Failure::infra(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
        .ok_or_else(|| {
            Failure::infra(format!(
                "apt-get download {spec} left no .deb in {}",
                dir.display()
            ))
        })?;
    let sum =
        crate::cache::sha256_file(&deb).map_err(|e| Failure::infra(format!("{}: {e}", deb.display())))?;
    if sum != package.sha256 {
        return Err(Failure::infra(format!(
            "{} has SHA256 {sum}, apt said {}",
            deb.display(),
            package.sha256
        )));
    }
    Ok(deb)
}

/// Unpacks the files of `deb` matching the tar patterns `members` (all of
/// them when empty) into `dir`.
pub fn extract(deb: &Path, members: &[&str], dir: &Path, deadline: Instant) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::infra(format!("cannot run dpkg-deb: {e}")))?;
    let tar_input = dpkg.stdout.take().expect("piped");
    let mut tar = Command::new("tar");
    tar.arg("-x").arg("-C").arg(dir).arg("--wildcards").args(members);
    let result = exec::run_ok_from(&mut tar, Stdio::from(tar_input), None, deadline);
    let dpkg_status = dpkg.wait();
    result?;
    match dpkg_status {
        Ok(s) if s.success() => Ok(()),
        other => Err(Failure::infra(format!(
            "dpkg-deb --fsys-tarfile {} failed: {other:?}",
            deb.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\n\
        Version: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n\
        Description-en: Linux for 64-bit PCs (meta-package)\n This package depends on the latest\n\
        SHA256: 4e1f0c\n\nPackage: linux-image-amd64\nVersion: 6.1.0-old\nSHA256: 00\n";

    #[test]
    fn the_first_paragraph_is_the_candidate() {
        let p = parse_show(SHOW).unwrap();
        assert_eq!(p.name, "linux-image-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(p.sha256, "4e1f0c");
        assert_eq!(p.depends, "linux-image-6.1.0-56-amd64 (= 6.1.192-2)");
    }

    #[test]
    fn no_package_no_candidate() {
        assert_eq!(parse_show(""), None);
        assert_eq!(parse_show("N: Unable to locate package foo\n"), None);
    }

    #[test]
    fn the_versioned_kernel_is_found_among_the_dependencies() {
        let deps = "linux-image-6.1.0-56-amd64 (= 6.1.192-2)";
        assert_eq!(
            dependency_with_prefix(deps, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        let deps = "initramfs-tools | linux-initramfs-tool, linux-image-6.12.9-amd64:amd64 (= 6.12.9-1)";
        assert_eq!(
            dependency_with_prefix(deps, "linux-image-").as_deref(),
            Some("linux-image-6.12.9-amd64")
        );
        assert_eq!(dependency_with_prefix("libc6 (>= 2.36)", "linux-image-"), None);
    }
}
