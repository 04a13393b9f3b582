//! The one-line text of a Wasmtime error, for messages.

use wasmtime::Error;

/// An error and its causes on one line, outermost first. Wasmtime attaches
/// the backtrace and the coredump as context layers whose text is a whole
/// multi-line report; those are read structurally by the capture and left out.
pub fn error_chain(error: &Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.starts_with("error while executing at wasm backtrace:")
            || text.starts_with("wasm coredump generated while executing")
        {
            continue;
        }
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
