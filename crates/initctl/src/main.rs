fn main() {
    eprintln!("initctl: not built yet");
    std::process::exit(1);
}
