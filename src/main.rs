fn main() {
    std::process::exit(fetchfs::cli::main());
}
