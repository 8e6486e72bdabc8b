//! The serial console as the harness sees it: everything the VM printed so
//! far, waited on with patterns, and the framing that turns a typed command
//! into its output and exit status.
//!
//! A reader thread appends what QEMU prints to a [`Console`] (with `\r`
//! removed) and to the console log; waiters block on a condition variable
//! until a pattern matches after their cursor, the console closes (QEMU
//! exited), or their deadline passes.
//!
//! A command is typed as
//! `echo @@UPSHOT''-B-N@@; COMMAND; echo @@UPSHOT''-E-N:$?@@`: the shell
//! prints the markers without the quotes, while the terminal's echo of the
//! typed line keeps them, so only the real output sits between
//! `@@UPSHOT-B-N@@` and `@@UPSHOT-E-N:STATUS@@`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

/// What the VM printed, shared between the reader and the waiters.
#[derive(Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    text: String,
    /// When each line ended, since the console was created: (offset of
    /// the line's end in `text`, time).
    line_times: Vec<(usize, Duration)>,
    closed: bool,
}

/// Why a wait ended without a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// The deadline passed.
    Timeout,
    /// The console closed (QEMU exited) first.
    Closed,
}

/// A match: where it is in the console text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
}

impl Console {
    pub fn new() -> Console {
        Console::default()
    }

    /// Appends output (the reader thread calls this); `at` is when it
    /// arrived, measured from the console's creation by the caller.
    pub fn push(&self, bytes: &[u8], at: Duration) {
        let (lock, cvar) = &*self.inner;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(bytes).replace('\r', "");
        let base = s.text.len();
        for (i, _) in text.match_indices('\n') {
            s.line_times.push((base + i, at));
        }
        s.text.push_str(&text);
        cvar.notify_all();
    }

    /// Marks the end of output (QEMU exited).
    pub fn close(&self) {
        let (lock, cvar) = &*self.inner;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cvar.notify_all();
    }

    /// The length of the text so far: a cursor for later waits.
    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_closed(&self) -> bool {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner()).closed
    }

    /// The text from `from` on.
    pub fn text_from(&self, from: usize) -> String {
        let s = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        s.text.get(from..).unwrap_or("").to_string()
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let s = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        tail_lines(&s.text, n)
    }

    /// When the line holding offset `at` was complete (for timings).
    pub fn time_of(&self, at: usize) -> Option<Duration> {
        let s = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        s.line_times.iter().find(|(end, _)| *end >= at).map(|(_, t)| *t)
    }

    /// Waits until `pattern` matches the text after `from`.
    pub fn wait_for(&self, from: usize, pattern: &Regex, deadline: Instant) -> Result<Found, WaitError> {
        self.wait_until(deadline, |text| find_after(text, from, pattern))
    }

    /// Waits until `check` finds something in the whole text.
    pub fn wait_until<T>(
        &self,
        deadline: Instant,
        check: impl Fn(&str) -> Option<T>,
    ) -> Result<T, WaitError> {
        let (lock, cvar) = &*self.inner;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(found) = check(&s.text) {
                return Ok(found);
            }
            if s.closed {
                return Err(WaitError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            s = cvar
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The first match of `pattern` in `text` at or after byte `from`.
pub fn find_after(text: &str, from: usize, pattern: &Regex) -> Option<Found> {
    let from = from.min(text.len());
    if !text.is_char_boundary(from) {
        return None;
    }
    pattern.find_at(text, from).map(|m| Found {
        start: m.start(),
        end: m.end(),
    })
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The line typed to run `command` as the `n`th framed command.
pub fn framed_command(command: &str, n: u32) -> String {
    format!("echo @@UPSHOT''-B-{n}@@; {command}; echo @@UPSHOT''-E-{n}:$?@@")
}

/// What a framed command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// Its output, without the markers' lines.
    pub output: String,
    pub status: i32,
    /// The offset just past the end marker in the console text.
    pub end: usize,
}

/// A framed command's result, once both markers are in `text` after
/// `from`.
pub fn framed_result(text: &str, from: usize, n: u32) -> Option<Framed> {
    let rest = text.get(from..)?;
    let begin = format!("@@UPSHOT-B-{n}@@\n");
    let start = rest.find(&begin)? + begin.len();
    let end_marker = format!("@@UPSHOT-E-{n}:");
    let end = start + rest[start..].find(&end_marker)?;
    let after = &rest[end + end_marker.len()..];
    let close = after.find("@@")?;
    let status = after[..close].parse().ok()?;
    Some(Framed {
        output: rest[start..end].to_string(),
        status,
        end: from + end + end_marker.len() + close + 2,
    })
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    fn re(p: &str) -> Regex {
        Regex::new(p).unwrap()
    }

    #[test]
    fn patterns_match_only_after_the_cursor() {
        let text = "login: \nlogin: again\n";
        let first = find_after(text, 0, &re("login:")).unwrap();
        assert_eq!(first, Found { start: 0, end: 6 });
        let second = find_after(text, first.end, &re("login:")).unwrap();
        assert_eq!(second.start, 8);
        assert_eq!(find_after(text, second.end, &re("login:")), None);
        assert_eq!(find_after(text, 999, &re("")), Some(Found { start: 21, end: 21 }));
    }

    #[test]
    fn line_anchors_need_multi_line_mode() {
        let text = "boot\nupshot# ";
        assert!(find_after(text, 0, &re("^upshot# ")).is_none());
        assert!(find_after(text, 0, &re("(?m)^upshot# ")).is_some());
    }

    #[test]
    fn carriage_returns_are_dropped() {
        let c = Console::new();
        c.push(b"a\r\nb\r\n", Duration::ZERO);
        assert_eq!(c.text_from(0), "a\nb\n");
        assert!(find_after(&c.text_from(0), 0, &re("(?m)^a$")).is_some());
    }

    #[test]
    fn a_wait_sees_output_that_arrives_later() {
        let c = Console::new();
        let writer = c.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            writer.push(b"Run /init as init process\n", Duration::from_millis(50));
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let found = c.wait_for(0, &re("Run (\\S+) as init"), deadline).unwrap();
        assert_eq!(found.start, 0);
        t.join().unwrap();
        assert_eq!(c.time_of(found.start), Some(Duration::from_millis(50)));
    }

    #[test]
    fn a_wait_ends_at_its_deadline_or_when_the_console_closes() {
        let c = Console::new();
        c.push(b"nothing here\n", Duration::ZERO);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(c.wait_for(0, &re("prompt"), soon), Err(WaitError::Timeout));
        let closer = c.clone();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            closer.close();
        });
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(c.wait_for(0, &re("prompt"), later), Err(WaitError::Closed));
        t.join().unwrap();
    }

    #[test]
    fn framed_output_skips_the_echo_of_the_typed_line() {
        let line = framed_command("initctl status tty", 7);
        // What a serial console shows: the echo, then the output.
        let text = format!(
            "upshot# {line}\n@@UPSHOT-B-7@@\ntty start/running, process 93\n@@UPSHOT-E-7:0@@\nupshot# "
        );
        assert!(!line.contains("@@UPSHOT-B-7@@"));
        let r = framed_result(&text, 0, 7).unwrap();
        assert_eq!(
            (r.output.as_str(), r.status),
            ("tty start/running, process 93\n", 0)
        );
        assert_eq!(&text[r.end..], "\nupshot# ");
        assert_eq!(framed_result(&text, 0, 8), None);
    }

    #[test]
    fn framed_output_waits_for_the_end_marker_and_reads_the_status() {
        let partial = "@@UPSHOT-B-2@@\nsome output\n";
        assert_eq!(framed_result(partial, 0, 2), None);
        let done = format!("{partial}@@UPSHOT-E-2:127@@\n");
        let r = framed_result(&done, 0, 2).unwrap();
        assert_eq!(
            (r.output.as_str(), r.status, r.end),
            ("some output\n", 127, done.len() - 1)
        );
        // Interleaved kernel messages stay in the output; empty output is "".
        let text = "@@UPSHOT-B-3@@\n@@UPSHOT-E-3:1@@\n";
        let r = framed_result(text, 0, 3).unwrap();
        assert_eq!((r.output.as_str(), r.status), ("", 1));
        // A cursor past the command ignores it.
        assert_eq!(framed_result(text, 5, 3), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
