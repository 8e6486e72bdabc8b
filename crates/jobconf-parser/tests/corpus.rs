//! The real-world corpus (`shared/testdata/upstart-jobs`, 593 job files from
//! 69 projects): every file gets the verdict Upstart 1.13.2 gives it.
//!
//! The rejected files, decided one by one from the spec:
//! - ChromeOS's own stanzas `import` and `tmpfiles` come from its Upstart
//!   fork and are not in upstream's stanza table, so upstream (and upshot,
//!   deliberately) reports `Unknown stanza` at their first use;
//! - `limit RESOURCE VALUE` with one value: both soft and hard are required
//!   (`Expected token` at the end of the line);
//! - typos and misuse: `decription`, `console out`, `expect WHAT`,
//!   `pre-start` with neither `exec` nor `script`, `description ""` (an
//!   empty argument is no token);
//! - a comment-only line inside a parenthesised `start on` (real Upstart
//!   1.13.2 says `Expected token` on that line).

use std::fs;
use std::path::PathBuf;

use jobconf_parser::{EventExpr, MatchArg, NormalExit, Signal, parse_job};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/upstart-jobs")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("the corpus is ../shared/testdata/upstart-jobs beside the project")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

fn parse_corpus(name: &str) -> jobconf_parser::JobFields {
    let text = fs::read(corpus_dir().join(name)).unwrap();
    parse_job(&text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .fields()
}

/// (file, line, column, message) for every file Upstart rejects.
const REJECTED: &[(&str, usize, usize, &str)] = &[
    ("cameronnemo__dbeacon-instance.conf", 6, 8, "Unknown stanza"),
    ("cameronnemo__elasticsearch.conf", 14, 19, "Expected token"),
    ("cameronnemo__grafana.conf", 9, 19, "Expected token"),
    ("cameronnemo__motd.conf", 5, 10, "Expected token"),
    ("cameronnemo__postfix-instance.conf", 1, 1, "Unknown stanza"),
    ("cameronnemo__restorecond.conf", 7, 8, "Unknown stanza"),
    ("cameronnemo__speech-dispatcher.conf", 1, 15, "Expected token"),
    ("cameronnemo__tarantool-instance.conf", 19, 8, "Unknown stanza"),
    ("ceph__ceph-mon.conf", 9, 19, "Expected token"),
    (
        "chromiumos-platform2__anomaly-detector.conf",
        14,
        1,
        "Unknown stanza",
    ),
    (
        "chromiumos-platform2__arc-myfiles-full.conf",
        14,
        1,
        "Unknown stanza",
    ),
    (
        "chromiumos-platform2__arc-myfiles-write.conf",
        14,
        1,
        "Unknown stanza",
    ),
    (
        "chromiumos-platform2__arc-stale-directory-remover.conf",
        14,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__bootlockboxd.conf", 15, 1, "Unknown stanza"),
    ("chromiumos-platform2__cros-disks.conf", 28, 1, "Unknown stanza"),
    ("chromiumos-platform2__cryptohomed.conf", 39, 1, "Unknown stanza"),
    ("chromiumos-platform2__debugd.conf", 18, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__device_managementd.conf",
        15,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__dns-proxy.conf", 22, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__extended-updates-arc-cleanup.conf",
        11,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__factory.conf", 14, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__failing-service.conf",
        16,
        1,
        "Unknown stanza",
    ),
    (
        "chromiumos-platform2__fbpreprocessord.conf",
        22,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__halt.conf", 15, 1, "Unknown stanza"),
    ("chromiumos-platform2__hammerd.conf", 36, 1, "Unknown stanza"),
    ("chromiumos-platform2__hermes.conf", 9, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__ippusb-bridge.conf",
        10,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__missived.conf", 27, 1, "Unknown stanza"),
    ("chromiumos-platform2__ml-service.conf", 14, 1, "Unknown stanza"),
    ("chromiumos-platform2__modemloggerd.conf", 9, 1, "Unknown stanza"),
    ("chromiumos-platform2__odmld.conf", 17, 1, "Unknown stanza"),
    ("chromiumos-platform2__pre-shutdown.conf", 40, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__private_computing.conf",
        12,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__reboot.conf", 15, 1, "Unknown stanza"),
    ("chromiumos-platform2__resourced.conf", 79, 1, "Unknown stanza"),
    ("chromiumos-platform2__s3halt.conf", 18, 1, "Unknown stanza"),
    ("chromiumos-platform2__secanomalyd.conf", 31, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__swap_management.conf",
        14,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__timberslide.conf", 16, 1, "Unknown stanza"),
    (
        "chromiumos-platform2__timberslide-watcher.conf",
        16,
        1,
        "Unknown stanza",
    ),
    ("chromiumos-platform2__tpm_managerd.conf", 14, 1, "Unknown stanza"),
    ("chromiumos-platform2__ui.conf", 54, 1, "Unknown stanza"),
    ("chromiumos-platform2__vm_concierge.conf", 30, 1, "Unknown stanza"),
    ("cloud-init__ec2-preconf-ssh-keys.conf", 10, 9, "Unknown stanza"),
    (
        "ubuntu-plymouth__plymouth.plymouth-stop.conf",
        16,
        1,
        "Expected token",
    ),
];

#[test]
fn every_corpus_file_gets_upstarts_verdict() {
    let files = corpus_files();
    assert_eq!(files.len(), 593, "the corpus changed");
    let mut mismatches = Vec::new();
    let mut rejected = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = fs::read(path).unwrap();
        let got = parse_job(&text);
        match (REJECTED.iter().find(|r| r.0 == name), got) {
            (None, Ok(_)) => {}
            (None, Err(e)) => mismatches.push(format!("{name}: expected to parse, got {e}")),
            (Some(r), Ok(_)) => mismatches.push(format!("{name}: expected {}:{}: {}, parsed", r.1, r.2, r.3)),
            (Some(&(_, line, column, message)), Err(e)) => {
                rejected += 1;
                if (e.line, e.column, e.kind.message()) != (line, column, message) {
                    mismatches.push(format!("{name}: expected {line}:{column}: {message}, got {e}"));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(rejected, REJECTED.len());
}

#[test]
fn chromeos_import_and_tmpfiles_are_unknown_stanzas_like_upstream() {
    let chromeos: Vec<_> = REJECTED
        .iter()
        .filter(|r| r.0.starts_with("chromiumos"))
        .collect();
    assert_eq!(chromeos.len(), 34);
    for r in chromeos {
        let text = fs::read_to_string(corpus_dir().join(r.0)).unwrap();
        let word = text
            .lines()
            .nth(r.1 - 1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert!(word == "import" || word == "tmpfiles", "{}: {word}", r.0);
        assert_eq!(r.3, "Unknown stanza");
    }
}

fn m(name: &str, args: &[&str]) -> EventExpr {
    EventExpr::Match(jobconf_parser::EventMatch {
        name: name.into(),
        args: args.iter().map(|a| MatchArg::from_token(a)).collect(),
    })
}
fn and(l: EventExpr, r: EventExpr) -> EventExpr {
    EventExpr::And(Box::new(l), Box::new(r))
}
fn or(l: EventExpr, r: EventExpr) -> EventExpr {
    EventExpr::Or(Box::new(l), Box::new(r))
}

#[test]
fn deep_mixed_expression_spanning_lines_groups_left_to_right() {
    let job = parse_corpus("ubuntu-gdm__gdm.conf");
    let expected = or(
        and(
            and(
                and(m("filesystem", &[]), m("runlevel", &["[!06]"])),
                m("started", &["dbus"]),
            ),
            or(
                m("drm-device-added", &["card0", "PRIMARY_DEVICE_FOR_DISPLAY=1"]),
                m("stopped", &["udev-fallback-graphics"]),
            ),
        ),
        m("runlevel", &["PREVLEVEL=S"]),
    );
    assert_eq!(job.start_on, Some(expected));
}

#[test]
fn backslash_continuation_outside_parentheses() {
    let job = parse_corpus("ceph__ceph-hotplug.conf");
    assert_eq!(
        job.start_on,
        Some(m(
            "block-device-added",
            &[
                "DEVTYPE=partition",
                "ID_PART_ENTRY_TYPE=4fbd7e29-9d25-41b8-afd0-062c0ceff05d"
            ]
        ))
    );
}

#[test]
fn stop_on_refers_to_the_instance_environment_unexpanded() {
    let job = parse_corpus("ubuntu-ifupdown__ifupdown.network-interface-security.conf");
    assert_eq!(job.instance, "$JOB${INTERFACE:+/}${INTERFACE:-}");
    let stop = job.stop_on.unwrap().to_string();
    assert_eq!(
        stop,
        "((stopped network-interface JOB=$JOB INTERFACE=$INTERFACE or stopped network-manager JOB=$JOB) \
         or stopped networking JOB=$JOB)"
    );
}

#[test]
fn quoted_match_values_single_empty_and_glob() {
    let job = parse_corpus("nuntium__nuntium.conf");
    let dbus = m(
        "dbus",
        &[
            "SIGNAL=NameOwnerChanged",
            "BUS=system",
            "INTERFACE=org.freedesktop.DBus",
            "OBJPATH=/org/freedesktop/DBus",
            "SENDER=org.freedesktop.DBus",
            "ARG0=org.ofono",
            "ARG1=",
            "ARG2=*",
        ],
    );
    assert_eq!(job.start_on, Some(or(m("started", &["dbus"]), dbus)));
}

#[test]
fn double_quoted_env_value_spanning_lines_collapses_to_single_spaces() {
    let job = parse_corpus("cameronnemo__patchram.conf");
    let env = job.env.iter().find(|e| e.starts_with("PATCHRAM_ARGS=")).unwrap();
    assert_eq!(
        env,
        "PATCHRAM_ARGS=--patchram /lib/firmware/bcm4330.hcd --no2bytes --scopcm=0,2,0,0,0,0,0,0,0,0 \
         --enable_hci --enable_lpm --baudrate 3000000 --use_baudrate_for_download --tosleep=50000 /dev/ttyHS2"
    );
    assert_eq!(
        job.process.main.unwrap().command,
        "/usr/bin/brcm_patchram_plus $PATCHRAM_ARGS &"
    );
}

#[test]
fn stanza_given_twice_last_wins() {
    let job = parse_corpus("chromiumos-overlay__nfs-ganesha.conf");
    assert_eq!(job.stop_on, Some(m("stopping", &["rpcbind"])));
}

#[test]
fn legacy_oom_and_unlimited_respawn_and_signal_names_in_normal_exit() {
    assert_eq!(
        parse_corpus("gce__google-accounts-daemon.conf").oom_score,
        Some(-16 * 1000 / 17)
    );
    assert!(
        parse_corpus("media-hub__media-hub.conf")
            .respawn_limit
            .is_unlimited()
    );
    let job = parse_corpus("cameronnemo__postgresql-cluster.conf");
    assert_eq!(
        job.normal_exit,
        vec![
            NormalExit::Status(0),
            NormalExit::Signal(Signal::TERM),
            NormalExit::Signal(Signal::INT)
        ]
    );
}

#[test]
fn templates_with_at_tokens_parse_as_plain_text() {
    let job = parse_corpus("indicator-datetime__indicator-datetime.conf");
    assert_eq!(
        job.process.main.unwrap().command,
        "$SNAP@pkglibexecdir@/indicator-datetime-service"
    );
}

#[test]
fn comment_after_end_script() {
    let job = parse_corpus("chromiumos-overlay__nat.conf");
    assert!(job.process.pre_start.is_some_and(|p| p.script));
}
