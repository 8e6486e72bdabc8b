//! `init --check [--dump] PATH…`: the everyday tool for people writing job
//! files. A path is a job file, or a directory whose `*.conf` files are
//! found recursively (skipping the names a conf dir scan ignores); each
//! file's `NAME.override` beside it is applied all or nothing. Errors go to
//! standard error as `FILE:LINE:COL: MESSAGE` with the line and a caret;
//! `--dump` prints a JSON array of the jobs on standard output. The exit
//! status is 0 only when every file parsed.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jobconf_parser::{FileError, apply_override, dump::dump_job, is_ignored, job_name, parse_job};
use serde_json::{Value, json};

/// A job file found under a path, with its name.
struct Found {
    name: String,
    path: PathBuf,
}

pub fn run(paths: &[PathBuf], dump: bool) -> ExitCode {
    let mut ok = true;
    let mut dumped: Vec<Value> = Vec::new();
    let stderr = io::stderr();
    let mut err = stderr.lock();

    for path in paths {
        let found = match find_jobs(path) {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(err, "{}: {e}", path.display());
                ok = false;
                continue;
            }
        };
        for f in found {
            match check_file(&f.path) {
                Ok(job) => {
                    if dump {
                        let mut v = dump_job(&job);
                        if let Value::Object(map) = &mut v {
                            let mut head = serde_json::Map::new();
                            head.insert("name".into(), json!(f.name));
                            head.insert("path".into(), json!(f.path.display().to_string()));
                            head.extend(std::mem::take(map));
                            *map = head;
                        }
                        dumped.push(v);
                    }
                }
                Err(CheckError::Parse(e)) => {
                    let _ = writeln!(err, "{}", e.with_caret());
                    ok = false;
                }
                Err(CheckError::Io(p, e)) => {
                    let _ = writeln!(err, "{}: {e}", p.display());
                    ok = false;
                }
            }
        }
    }

    if dump {
        let out = serde_json::to_string_pretty(&Value::Array(dumped)).unwrap_or_default();
        let mut stdout = io::stdout().lock();
        if writeln!(stdout, "{out}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

enum CheckError {
    Parse(FileError),
    Io(PathBuf, io::Error),
}

/// Parses a job file and applies the `.override` beside it, if any.
fn check_file(path: &Path) -> Result<jobconf_parser::JobConf, CheckError> {
    let text = fs::read(path).map_err(|e| CheckError::Io(path.to_path_buf(), e))?;
    let job = parse_job(&text).map_err(|e| CheckError::Parse(FileError::new(path, e)))?;
    let Some(ovr) = override_path(path) else {
        return Ok(job);
    };
    // Only a regular file counts; a symlinked override is ignored (lstat).
    match fs::symlink_metadata(&ovr) {
        Ok(m) if m.file_type().is_file() => {
            let text = fs::read(&ovr).map_err(|e| CheckError::Io(ovr.clone(), e))?;
            apply_override(&job, &text).map_err(|e| CheckError::Parse(FileError::new(&ovr, e)))
        }
        _ => Ok(job),
    }
}

/// `DIR/NAME.override` for `DIR/NAME.conf`.
fn override_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".conf")?;
    Some(path.with_file_name(format!("{stem}.override")))
}

/// The job files a path names: itself, or the `*.conf` files under a
/// directory in sorted order (symlinked directories are not followed).
fn find_jobs(path: &Path) -> io::Result<Vec<Found>> {
    let meta = fs::metadata(path)?;
    if !meta.is_dir() {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let name = file.strip_suffix(".conf").unwrap_or(file).to_string();
        return Ok(vec![Found {
            name,
            path: path.to_path_buf(),
        }]);
    }
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let mut entries: Vec<_> = fs::read_dir(path.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if is_ignored(&fname) {
                continue;
            }
            let rel_path = rel.join(&fname);
            let ft = entry.file_type()?;
            if ft.is_dir() {
                dirs.push(rel_path);
            } else if let Some(name) = rel_path.to_str().and_then(job_name)
                && (ft.is_file() || (ft.is_symlink() && entry.path().is_file()))
            {
                found.push(Found {
                    name,
                    path: entry.path(),
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}
