//! `initctl` (and `start`, `stop`, `restart`, `reload`, `status`, `emit`
//! through links): see the library crate and initctl(8).

fn main() {
    initctl::process_main()
}
