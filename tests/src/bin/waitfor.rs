//! `waitfor --file FILE [--status N]`: waits until FILE exists (checking
//! every 20 ms), then exits with status N (default 0). Lets a test end a
//! job, and so emit its `stopping`/`stopped` events, by creating a file.

use std::path::Path;

use upshot_tests::standin::Args;

fn main() {
    let args = Args::parse();
    let file = args.req("--file");
    let status: i32 = args.num("--status", 0);
    while !Path::new(&file).exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::exit(status)
}
