//! What the commands print on standard output. A reader that goes away
//! (`signet keys list | head`) ends the command quietly, with status 0,
//! instead of the panic `println!` would raise on the closed pipe.

use std::io::{ErrorKind, Write};

/// Writes `text` and a newline to standard output, and flushes it.
pub(super) fn line(text: std::fmt::Arguments<'_>) {
    write(format_args!("{text}\n"));
}

/// Writes `text` to standard output, and flushes it.
pub(super) fn write(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("signet: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// `println!` that ends the command quietly when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::stdout::line(format_args!($($arg)*))
    };
}

/// `print!` that ends the command quietly when the reader went away.
macro_rules! out_raw {
    ($($arg:tt)*) => {
        $crate::cli::stdout::write(format_args!($($arg)*))
    };
}

pub(super) use {out, out_raw};
