//! A WASI command that reads `key = value` lines on standard input and prints
//! them back sorted as `key=value`. A line without `=` is a bug in the caller
//! here, and it panics: Rust prints the panic message on standard error, then
//! aborts, which in WebAssembly is the `unreachable` instruction.
//!
//!     rustc --target wasm32-wasi -C opt-level=s -C panic=abort \
//!           parse_config.rs -o parse_config.wasm
//!
//!     stdin "b = 2\na = 1\n"   -> stdout "a=1\nb=2\n", exit code 0
//!     stdin "a = 1\noops\n"     -> stderr "... line 2 has no '=': \"oops\" ...", trap

use std::collections::BTreeMap;
use std::io::{self, Read};

fn main() {
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .expect("standard input is not UTF-8");

    let mut config = BTreeMap::new();
    for (index, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {} has no '=': {:?}", index + 1, line));
        config.insert(key.trim().to_string(), value.trim().to_string());
    }

    for (key, value) in &config {
        println!("{}={}", key, value);
    }
}
