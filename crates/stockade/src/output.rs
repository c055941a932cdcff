//! Standard output for every command: `println!` in this crate is the
//! macro in main.rs, which ends the process quietly (exit 0) when the reader went away —
//! `stockade sku list | head`, `stockade audit export | head` — instead of panicking
//! with "failed printing to stdout". Other write failures exit 1 with one line.

use std::io::Write;

/// Write formatted text and a newline to standard output.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        failed(&e);
    }
}

/// The outcome of a write to standard output made with a writer of its own: a closed
/// pipe ends the process quietly, another error becomes a failure.
pub fn check(result: std::io::Result<()>, what: &str) -> Result<(), crate::exit::Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => reader_gone(),
        Err(e) => Err(crate::exit::Failure::runtime(format!(
            "cannot write {what}: {e}"
        ))),
    }
}

fn failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        reader_gone();
    }
    let _ = writeln!(
        std::io::stderr(),
        "error: cannot write to standard output: {e}"
    );
    std::process::exit(1);
}

/// The reader of standard output is gone (`| head` has what it wanted): nothing more
/// can be shown, which is not a failure.
fn reader_gone() -> ! {
    std::process::exit(0);
}
