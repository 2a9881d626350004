//! Standard output that behaves like a Unix tool's: when its reader goes away
//! (`strata scan … | head`, `strata inspect manifest | head`), the process ends quietly
//! with status 0 — not with a panic (`println!`) or an error message. Every command prints
//! through `outln!` or [`QuietStdout`].

use std::io::Write;

/// Ends the process quietly if `error` says stdout's reader has gone; returns it otherwise.
fn reader_gone(error: std::io::Error) -> std::io::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        // Read-only commands have nothing to finish; a writing command's rows are in its
        // WAL, as after any other interruption.
        std::process::exit(0);
    }
    error
}

/// Standard output, unbuffered here (wrap it in a `BufWriter` for bulk output).
pub(crate) struct QuietStdout;

impl Write for QuietStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf).map_err(reader_gone)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush().map_err(reader_gone)
    }
}

/// One line to standard output (what `outln!` expands to).
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(reader_gone);
    if let Err(error) = written {
        eprintln!("strata: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

/// `println!` through [`line()`]: quiet when the reader of standard output has gone.
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}
