//! A WASI command in the manner of `wc`: it reads standard input and prints
//! its line, word and byte counts, and with `-l` the lines only.
//!
//!     rustc --target wasm32-wasi -C opt-level=s wc.rs -o wc.wasm
//!
//!     Munition.run(wasm, capabilities: [:wasi], wasi: [stdin: "a b\nc\n"])
//!     #=> {:ok, 0, %{stdout: "2 3 6\n", ...}}

use std::io::{self, Read, Write};
use std::process;

// Exit codes go through `process::exit`: Rust 1.63's `ExitCode` on wasm32-wasi
// is the "unsupported" one and turns every code but 0 into 1.
fn main() {
    let lines_only = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("-l") => true,
        Some(other) => {
            eprintln!("wc: unknown option {:?}", other);
            process::exit(2);
        }
    };

    let mut input = Vec::new();
    if let Err(error) = io::stdin().read_to_end(&mut input) {
        eprintln!("wc: cannot read standard input: {}", error);
        process::exit(1);
    }

    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let words = input
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .count();

    let mut stdout = io::stdout().lock();
    let written = if lines_only {
        writeln!(stdout, "{}", lines)
    } else {
        writeln!(stdout, "{} {} {}", lines, words, input.len())
    };
    if written.is_err() {
        process::exit(1);
    }
}
