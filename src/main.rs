use std::io::Write;

fn main() {
    let code = fetchfs::cli::main();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once, skipping atexit handlers and
    // C++ static destructors. RocksDB's destructors abort the process
    // ("pthread lock: Invalid argument") if a task that outlived the
    // shutdown still uses the index; everything the index wrote is already
    // in the kernel (its log is written with write(2)), so nothing is lost.
    unsafe { libc::_exit(code) }
}
