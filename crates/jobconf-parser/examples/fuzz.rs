//! A dependency-free mutation fuzzer for the job-file parser, for machines
//! without a nightly toolchain (where `cargo +nightly fuzz run parse_job`
//! works, prefer it: it is coverage guided).
//!
//! ```text
//! cargo run --release -p jobconf-parser --example fuzz -- --seconds N [--seed S] [--keep-going] [CORPUS_DIR]
//! cargo run --release -p jobconf-parser --example fuzz -- --minimize CRASH_FILE
//! ```
//!
//! Every input is a corpus file (default: the shared Upstart corpus) with a
//! few random mutations stacked on it: byte flips, insertion and deletion of
//! the bytes the tokenizer treats specially, splicing lines from another
//! file, duplicating lines, inserting stanza keywords, truncation. Each input
//! goes through the same check as the cargo-fuzz target
//! (`tests/support/fuzz_check.rs`). A panic is caught, the input written to
//! `TARGET_DIR/fuzz-crash-SEED-N.conf` and the fuzzer exits 1 (with
//! `--keep-going` it goes on for the whole time, saving the first 50
//! crashes and counting the rest, and exits 1 at the end). Without a crash it exits 0 after N seconds. The run is reproducible
//! from the printed seed, except for how many iterations fit in the time.
//!
//! `--minimize FILE` shrinks a crashing input (removing chunks while the
//! check still panics at the same place) and writes `FILE.min`.

#[path = "../tests/support/fuzz_check.rs"]
#[allow(dead_code)]
mod fuzz_check;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bytes with a meaning to libnih's tokenizer.
const SPECIAL: &[u8] = b"\"'\\#()\n\t \0";

/// Words worth inserting: stanza names, sub-keywords, operators, block ends.
const WORDS: &[&str] = &[
    "start on ",
    "stop on ",
    "and",
    "or",
    " and ",
    " or ",
    "(",
    ")",
    "script\n",
    "end script",
    "\nend script\n",
    "pre-start script\n",
    "post-stop exec ",
    "exec ",
    "env ",
    "export ",
    "emits ",
    "description ",
    "instance ",
    "manual\n",
    "respawn limit ",
    "normal exit ",
    "kill signal ",
    "kill timeout ",
    "reload signal ",
    "umask ",
    "nice ",
    "oom score ",
    "limit nofile ",
    "unlimited",
    "cgroup ",
    "apparmor load ",
    "debug",
    "KEY=VALUE",
    "K!=V",
    "$UPSTART_JOB",
    "\\\n",
    "\"\"",
    "''",
    "SIGTERM",
    "-1",
    "18446744073709551616",
    "0777",
];

/// The largest input tried; mutations that grow past it are truncated.
const MAX_LEN: usize = 256 * 1024;
/// How many crash files `--keep-going` writes at most.
const MAX_CRASHES: usize = 50;

/// xorshift64* (Vigna): small, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // The state must not be zero; mix the seed so nearby seeds differ.
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((s ^ (s >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A position in `0..=len`.
    fn pos(&mut self, len: usize) -> usize {
        self.below(len + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The `(start, end)` byte ranges of `data`'s lines, newline included.
fn lines(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < data.len() {
        out.push((start, data.len()));
    }
    out
}

/// Applies one random mutation to `data`; `seeds` gives material to splice.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    match rng.below(11) {
        // Flip a bit.
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with a random or special one.
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = if rng.below(2) == 0 {
                rng.next() as u8
            } else {
                *rng.pick(SPECIAL)
            };
        }
        // Insert special bytes (a few, sometimes a run of one).
        2 => {
            let at = rng.pos(data.len());
            let most = if rng.below(8) == 0 { 64 } else { 3 };
            let n = 1 + rng.below(most);
            let run = rng.below(2) == 0;
            let first = *rng.pick(SPECIAL);
            let bytes: Vec<u8> = (0..n)
                .map(|_| if run { first } else { *rng.pick(SPECIAL) })
                .collect();
            data.splice(at..at, bytes);
        }
        // Delete one special byte.
        3 => {
            let specials: Vec<usize> = (0..data.len()).filter(|&i| SPECIAL.contains(&data[i])).collect();
            if !specials.is_empty() {
                data.remove(*rng.pick(&specials));
            }
        }
        // Delete a random range.
        4 if !data.is_empty() => {
            let a = rng.below(data.len());
            let b = (a + 1 + rng.below(16)).min(data.len());
            data.drain(a..b);
        }
        // Splice lines from another file over some of ours.
        5 => {
            let other = rng.pick(seeds);
            let theirs = lines(other);
            let ours = lines(data);
            if theirs.is_empty() {
                return;
            }
            let from = rng.below(theirs.len());
            let to = (from + 1 + rng.below(8)).min(theirs.len());
            let piece = other[theirs[from].0..theirs[to - 1].1].to_vec();
            let (a, b) = if ours.is_empty() {
                (0, 0)
            } else {
                let i = rng.below(ours.len());
                let j = (i + rng.below(4)).min(ours.len());
                (ours[i].0, if j == i { ours[i].0 } else { ours[j - 1].1 })
            };
            data.splice(a..b, piece);
        }
        // Duplicate a line (sometimes many times).
        6 => {
            let ours = lines(data);
            if ours.is_empty() {
                return;
            }
            let (a, b) = *rng.pick(&ours);
            let times = if rng.below(8) == 0 { 1 + rng.below(200) } else { 1 };
            let line = data[a..b].to_vec();
            let mut rep = Vec::with_capacity(line.len() * times);
            for _ in 0..times {
                rep.extend_from_slice(&line);
            }
            data.splice(b..b, rep);
        }
        // Truncate.
        7 if !data.is_empty() => {
            let at = rng.below(data.len());
            data.truncate(at);
        }
        // Insert a keyword.
        8 => {
            let at = rng.pos(data.len());
            let w = rng.pick(WORDS).as_bytes().to_vec();
            data.splice(at..at, w);
        }
        // Swap two lines.
        9 => {
            let ours = lines(data);
            if ours.len() < 2 {
                return;
            }
            let i = rng.below(ours.len() - 1);
            let (a, m) = ours[i];
            let (_, b) = ours[i + 1];
            let mut swapped = data[m..b].to_vec();
            if swapped.last() != Some(&b'\n') {
                swapped.push(b'\n');
            }
            swapped.extend_from_slice(&data[a..m]);
            data.splice(a..b, swapped);
        }
        // Insert random bytes.
        _ => {
            let at = rng.pos(data.len());
            let n = 1 + rng.below(4);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
    }
}

/// Where the last panic happened and what it said, filled by the hook.
static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn install_quiet_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "(non-string panic)".to_string()
        };
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some((location, message));
        }
    }));
}

/// Runs the check; on a panic returns its location and message.
fn run_check(data: &[u8]) -> Option<(String, String)> {
    match panic::catch_unwind(AssertUnwindSafe(|| fuzz_check::fuzz_check(data))) {
        Ok(()) => None,
        Err(_) => Some(
            LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .unwrap_or_else(|| (String::new(), "(panic)".to_string())),
        ),
    }
}

/// The target directory of the build that made this program
/// (`TARGET/release/examples/fuzz`), so crash files land beside it.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn read_seeds(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf" || x == "override"))
        .collect();
    paths.sort();
    let mut seeds = Vec::with_capacity(paths.len());
    for p in paths {
        seeds.push(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    Ok(seeds)
}

/// Shrinks a crashing input while it keeps panicking at the same place.
fn minimize(path: &Path) -> ExitCode {
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let Some((location, message)) = run_check(&data) else {
        println!("{} does not crash the check", path.display());
        return ExitCode::SUCCESS;
    };
    println!("crash at {location}: {}", message.lines().next().unwrap_or(""));
    let same = |d: &[u8]| run_check(d).is_some_and(|(l, _)| l == location);
    let mut chunk = data.len().max(1).next_power_of_two();
    while chunk >= 1 {
        let mut i = 0;
        while i < data.len() {
            let end = (i + chunk).min(data.len());
            let mut candidate = data.clone();
            candidate.drain(i..end);
            if same(&candidate) {
                data = candidate;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    // Then try to simplify bytes to `a`, which keeps minimal inputs readable.
    for i in 0..data.len() {
        if data[i] != b'a' {
            let mut candidate = data.clone();
            candidate[i] = b'a';
            if same(&candidate) {
                data = candidate;
            }
        }
    }
    let out = path.with_extension("min");
    if let Err(e) = std::fs::write(&out, &data) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::from(2);
    }
    println!(
        "minimal input ({} bytes), written to {}:",
        data.len(),
        out.display()
    );
    println!("{:?}", String::from_utf8_lossy(&data));
    println!("bytes: {data:?}");
    if let Some((_, message)) = run_check(&data) {
        println!("panic: {message}");
    }
    ExitCode::from(1)
}

struct Options {
    seconds: u64,
    seed: u64,
    keep_going: bool,
    corpus: PathBuf,
    minimize: Option<PathBuf>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: fuzz [--seconds N] [--seed S] [--keep-going] [CORPUS_DIR]\n       fuzz --minimize CRASH_FILE"
    );
    ExitCode::from(2)
}

fn parse_options() -> Result<Options, String> {
    let default_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut o = Options {
        seconds: 60,
        seed: default_seed,
        keep_going: false,
        corpus: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/upstart-jobs"),
        minimize: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                o.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--seed" => o.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--keep-going" => o.keep_going = true,
            "--minimize" => o.minimize = Some(PathBuf::from(value("--minimize")?)),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.corpus = PathBuf::from(s),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fuzz: {e}");
            }
            return usage();
        }
    };
    install_quiet_panic_hook();
    if let Some(path) = &o.minimize {
        return minimize(path);
    }

    let mut seeds = match read_seeds(&o.corpus) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    if seeds.is_empty() {
        println!(
            "fuzz: no *.conf files in {}; starting from built-in seeds",
            o.corpus.display()
        );
        seeds = vec![
            b"start on (a and b) or c X=y\nexec /bin/true \"q\" # c\n".to_vec(),
            b"script\n  echo 'hi'\nend script\nenv A=\"b c\"\n".to_vec(),
        ];
    }
    println!(
        "fuzz: seed {} ({} seed files from {}), {} s",
        o.seed,
        seeds.len(),
        o.corpus.display(),
        o.seconds
    );

    // Every seed file as it is comes first.
    for (n, s) in seeds.iter().enumerate() {
        if let Some((loc, msg)) = run_check(s) {
            println!("fuzz: seed file {n} itself crashes at {loc}: {msg}");
            return ExitCode::from(1);
        }
    }

    let mut rng = Rng::new(o.seed);
    let start = Instant::now();
    let limit = Duration::from_secs(o.seconds);
    let mut report_at = Duration::from_secs(10);
    let mut iterations: u64 = 0;
    let mut crashes = 0usize;
    let mut input = Vec::new();
    while start.elapsed() < limit {
        for _ in 0..64 {
            input.clear();
            input.extend_from_slice(&seeds[rng.below(seeds.len())]);
            let most = if rng.below(4) == 0 { 16 } else { 4 };
            let rounds = 1 + rng.below(most);
            for _ in 0..rounds {
                mutate(&mut rng, &mut input, &seeds);
            }
            input.truncate(MAX_LEN);
            iterations += 1;
            if let Some((loc, msg)) = run_check(&input) {
                crashes += 1;
                if crashes > MAX_CRASHES {
                    continue;
                }
                let path = target_dir().join(format!("fuzz-crash-{}-{iterations}.conf", o.seed));
                let saved =
                    std::fs::create_dir_all(target_dir()).and_then(|()| std::fs::write(&path, &input));
                println!("fuzz: CRASH at iteration {iterations} in {loc}:");
                println!("{}", msg.lines().take(3).collect::<Vec<_>>().join("\n"));
                match saved {
                    Ok(()) => println!(
                        "fuzz: input written to {0}\nfuzz: shrink it with: cargo run --release -p jobconf-parser --example fuzz -- --minimize {0}",
                        path.display()
                    ),
                    Err(e) => println!("fuzz: cannot write {}: {e}", path.display()),
                }
                if crashes == MAX_CRASHES && o.keep_going {
                    println!("fuzz: {MAX_CRASHES} crashes saved; counting further ones without saving them");
                }
                if !o.keep_going {
                    print_summary(iterations, start.elapsed(), o.seed);
                    return ExitCode::from(1);
                }
            }
        }
        if start.elapsed() >= report_at {
            println!(
                "fuzz: {iterations} iterations, {:.0} s, {crashes} crashes",
                start.elapsed().as_secs_f64()
            );
            report_at += Duration::from_secs(10);
        }
    }
    print_summary(iterations, start.elapsed(), o.seed);
    if crashes > 0 {
        println!("fuzz: {crashes} crashes");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn print_summary(iterations: u64, elapsed: Duration, seed: u64) {
    let secs = elapsed.as_secs_f64();
    println!(
        "fuzz: {iterations} iterations in {secs:.1} s ({:.0} inputs/s), seed {seed}",
        iterations as f64 / secs.max(1e-9)
    );
}
