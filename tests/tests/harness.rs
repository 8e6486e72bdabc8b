//! The harness itself: where it finds the programs, and that dropping a
//! session leaves nothing behind.

use std::path::Path;

use upshot_tests::{Session, alive, bin_dir, init_binary};

/// The stand-ins the job files name through `@BIN@` are this crate's
/// binaries, as cargo builds them for these tests, and `init` sits in the
/// same target profile directory.
#[test]
fn stand_ins_and_init_are_where_the_harness_looks() {
    for exe in [
        env!("CARGO_BIN_EXE_crasher"),
        env!("CARGO_BIN_EXE_escaper"),
        env!("CARGO_BIN_EXE_forker"),
        env!("CARGO_BIN_EXE_recorder"),
        env!("CARGO_BIN_EXE_stopper"),
        env!("CARGO_BIN_EXE_term-ignorer"),
        env!("CARGO_BIN_EXE_ticker"),
        env!("CARGO_BIN_EXE_waitfor"),
    ] {
        let exe = Path::new(exe);
        assert_eq!(exe.parent(), Some(bin_dir()), "{}", exe.display());
    }
    assert!(init_binary().is_file());
    assert_eq!(
        init_binary().parent().and_then(Path::file_name),
        bin_dir().file_name(),
        "same profile"
    );
}

/// Dropping a session with the daemon still running kills the daemon,
/// every job process (an escaped one included, and a respawning job is not
/// brought back), and removes the tree.
#[test]
fn dropping_a_session_leaves_no_process_and_no_tree() {
    let mut s = Session::new("harness-drop");
    s.write_job(
        "escape",
        "start on startup\nexec @BIN@/escaper --out @OUT@/escape\n",
    );
    s.write_job(
        "again",
        "start on startup\nrespawn\nexec @BIN@/recorder --out @OUT@/again\n",
    );
    s.start(&[]);
    let out = s.wait_out("escape");
    let again = s.wait_record("again").num("pid") as i32;
    let pids: Vec<i32> = out
        .lines()
        .filter_map(|l| l.split_once(' ')?.1.parse().ok())
        .chain([again, s.pid()])
        .collect();
    assert_eq!(pids.len(), 4);
    let root = s.root().to_path_buf();
    let daemon = s.pid();
    drop(s);
    for pid in pids {
        assert!(!alive(pid), "{pid} survived the session (daemon {daemon})");
    }
    assert!(!root.exists());
}
