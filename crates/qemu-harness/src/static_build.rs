//! Static builds of workspace binaries for the guest: musl when rustup has
//! (or can add) `x86_64-unknown-linux-musl`, else glibc with `crt-static`
//! (a static-pie; glibc's static `getrandom` needs `/dev` mounted, which
//! init does first).
//!
//! Cargo decides what to rebuild; the binaries it leaves are inputs of the
//! initramfs's cache key like any other file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Failure, Result};
use crate::exec;
use crate::job::{Binary, Deploy, Target};

pub const MUSL: &str = "x86_64-unknown-linux-musl";
pub const GNU: &str = "x86_64-unknown-linux-gnu";

/// The target triple to build for, and whether `RUSTFLAGS` needs
/// `+crt-static`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triple {
    pub name: &'static str,
    pub crt_static_flag: bool,
}

impl Triple {
    /// musl: static by default.
    pub const MUSL: Triple = Triple {
        name: MUSL,
        crt_static_flag: false,
    };
    /// glibc, made static with `+crt-static`.
    pub const GNU_STATIC: Triple = Triple {
        name: GNU,
        crt_static_flag: true,
    };
}

/// Chooses the triple: `installed` says whether the musl standard library
/// is there, `add` tries to add it (and says whether that worked).
pub fn choose(target: Target, installed: bool, add: impl FnOnce() -> Result<()>) -> Result<Triple> {
    let (musl, gnu) = (Triple::MUSL, Triple::GNU_STATIC);
    match target {
        Target::GnuStatic => Ok(gnu),
        Target::Musl if installed => Ok(musl),
        Target::Musl => add().map(|()| musl),
        Target::Auto if installed => Ok(musl),
        Target::Auto => Ok(if add().is_ok() { musl } else { gnu }),
    }
}

/// Whether rustup lists the musl target as installed (false without
/// rustup).
fn musl_installed(deadline: Instant) -> bool {
    exec::run(
        Command::new("rustup").args(["target", "list", "--installed"]),
        None,
        deadline,
    )
    .map(|o| o.status.success() && o.stdout_text().lines().any(|l| l.trim() == MUSL))
    .unwrap_or(false)
}

fn add_musl(deadline: Instant) -> Result<()> {
    exec::run_ok(
        Command::new("rustup").args(["target", "add", MUSL]),
        None,
        deadline,
    )
    .map(|_| ())
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the
/// workspace) or the workspace's `target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
}

/// The directory cargo puts a profile's binaries in.
pub fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// The flags added to `RUSTFLAGS`: `+crt-static` for glibc, and a fixed
/// load address unless `pie`.
pub fn rustflags(triple: &Triple, pie: bool) -> String {
    let mut flags = Vec::new();
    if triple.crt_static_flag {
        flags.push("-C target-feature=+crt-static");
    }
    if !pie {
        flags.push("-C relocation-model=static");
    }
    flags.join(" ")
}

/// The cargo command line that builds `binaries`.
pub fn cargo_args(triple: &Triple, profile: &str, binaries: &[Binary]) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "--profile".into(),
        profile.into(),
        "--target".into(),
        triple.name.into(),
    ];
    let mut packages: Vec<&str> = binaries.iter().map(|b| b.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    for p in packages {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    for b in binaries {
        args.extend(["--bin".to_string(), b.bin.clone()]);
    }
    let mut features: Vec<String> = binaries
        .iter()
        .flat_map(|b| b.features.iter().map(|f| format!("{}/{f}", b.package)))
        .collect();
    features.sort_unstable();
    features.dedup();
    if !features.is_empty() {
        args.extend(["--features".to_string(), features.join(",")]);
    }
    args
}

/// Builds the deploy section's binaries static; returns each one's path,
/// in order, the triple used, and why musl was given up when `auto` fell
/// back to glibc after a failed musl build. Cargo's output goes to `log`. A failed
/// `rustup target add` is remembered in `memo_dir` for an hour, so that
/// a machine that cannot fetch the target does not try at every run.
pub fn build(
    workspace: &Path,
    spec: &Deploy,
    log: &Path,
    memo_dir: &Path,
    deadline: Instant,
) -> Result<(Triple, Vec<PathBuf>, Option<String>)> {
    let (binaries, profile) = (&spec.binaries, spec.profile.as_str());
    let rustup_deadline = deadline.min(Instant::now() + spec.rustup_timeout);
    let memo = memo_dir.join("rustup-target-add-failed");
    let failed_lately = std::fs::metadata(&memo)
        .and_then(|m| m.modified())
        .is_ok_and(|t| {
            t.elapsed()
                .is_ok_and(|age| age < std::time::Duration::from_secs(3600))
        });
    let triple = choose(spec.target, musl_installed(rustup_deadline), || {
        if failed_lately {
            return Err(Failure::infra(format!(
                "rustup target add {MUSL} failed within the hour ({})",
                memo.display()
            )));
        }
        add_musl(rustup_deadline).inspect_err(|f| {
            let _ = std::fs::create_dir_all(memo_dir);
            let _ = std::fs::write(&memo, &f.message);
        })
    })?;
    if binaries.is_empty() {
        return Ok((triple, Vec::new(), None));
    }
    match cargo_build(workspace, &triple, (profile, spec.pie), binaries, log, deadline) {
        Err(f) if spec.target == Target::Auto && triple.name == MUSL => {
            // A workspace that does not build for musl (a glibc-only call)
            // can still be had static with glibc.
            let gnu = Triple::GNU_STATIC;
            let paths = cargo_build(workspace, &gnu, (profile, spec.pie), binaries, log, deadline)?;
            Ok((gnu, paths, Some(f.message)))
        }
        r => r.map(|paths| (triple, paths, None)),
    }
}

/// One `cargo build` of `binaries` for `triple`; their paths.
fn cargo_build(
    workspace: &Path,
    triple: &Triple,
    (profile, pie): (&str, bool),
    binaries: &[Binary],
    log: &Path,
    deadline: Instant,
) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(cargo_args(triple, profile, binaries))
        .current_dir(workspace);
    let extra = rustflags(triple, pie);
    if !extra.is_empty() {
        let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        cmd.env("RUSTFLAGS", format!("{flags} {extra}").trim_start());
    }
    let shown = exec::describe(&cmd);
    let out = exec::run(&mut cmd, None, deadline)?;
    let _ = std::fs::write(log, &out.stderr);
    if !out.status.success() {
        return Err(Failure::infra(format!(
            "`{shown}` failed ({}); the end of its output ({}):\n{}",
            out.status,
            log.display(),
            crate::console::tail_lines(&out.stderr, 20)
        )));
    }
    let dir = target_dir(workspace).join(triple.name).join(profile_dir(profile));
    let paths: Vec<PathBuf> = binaries.iter().map(|b| dir.join(&b.bin)).collect();
    for p in &paths {
        if !p.is_file() {
            return Err(Failure::infra(format!("cargo built no {}", p.display())));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Result<()> {
        panic!("should not try to add the target")
    }

    #[test]
    fn musl_is_used_when_installed_or_addable() {
        assert_eq!(choose(Target::Auto, true, never).unwrap().name, MUSL);
        assert_eq!(choose(Target::Auto, false, || Ok(())).unwrap().name, MUSL);
        assert_eq!(choose(Target::Musl, false, || Ok(())).unwrap().name, MUSL);
    }

    #[test]
    fn auto_falls_back_to_static_glibc() {
        let t = choose(Target::Auto, false, || Err(Failure::infra("offline"))).unwrap();
        assert_eq!(t, Triple::GNU_STATIC);
        assert!(choose(Target::Musl, false, || Err(Failure::infra("offline"))).is_err());
        assert_eq!(choose(Target::GnuStatic, true, never).unwrap().name, GNU);
    }

    #[test]
    fn one_cargo_command_builds_every_binary() {
        let bin = |package: &str, bin: &str| Binary {
            package: package.into(),
            bin: bin.into(),
            path: "/x".into(),
            features: if bin == "init" {
                vec!["initctl".into()]
            } else {
                Vec::new()
            },
        };
        let args = cargo_args(
            &Triple::MUSL,
            "release",
            &[bin("init", "init"), bin("initctl", "initctl")],
        );
        assert_eq!(
            args.join(" "),
            "build --profile release --target x86_64-unknown-linux-musl -p init -p initctl --bin init --bin initctl --features init/initctl"
        );
        assert_eq!(profile_dir("dev"), "debug");
        let musl = Triple::MUSL;
        let gnu = Triple::GNU_STATIC;
        assert_eq!(rustflags(&musl, true), "");
        assert_eq!(rustflags(&musl, false), "-C relocation-model=static");
        assert_eq!(
            rustflags(&gnu, false),
            "-C target-feature=+crt-static -C relocation-model=static"
        );
        assert_eq!(profile_dir("release"), "release");
    }
}
