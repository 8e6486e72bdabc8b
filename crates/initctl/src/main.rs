//! `initctl` (and `start`, `stop`, `restart`, `reload`, `status`, `emit`
//! through links): see the library crate and initctl(8).

fn main() {
    // Like a C program, die quietly when a reader goes away
    // (`initctl list | head -1`).
    // SAFETY: restoring a default signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let status = initctl::main_with(&argv, &initctl::commands::Env::from_process());
    std::process::exit(status);
}
