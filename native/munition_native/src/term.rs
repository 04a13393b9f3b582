//! Erlang terms the NIFs build or describe that are not wasm values: binaries
//! made from bytes the native side owns, and short descriptions of terms for
//! error messages.

use rustler::{Binary, Encoder, Env, NewBinary, Term};

/// Bytes that reach Elixir as a binary.
pub struct OwnedBytes(pub Vec<u8>);

impl Encoder for OwnedBytes {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        bytes_term(env, &self.0)
    }
}

/// A new binary holding a copy of `bytes`.
pub fn bytes_term<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Binary::from(binary).encode(env)
}

/// A term for an error message, cut short: a caller's or host function's
/// mistake may be a huge term, and the message must stay small.
pub fn brief(term: Term) -> String {
    let mut text = format!("{term:?}");
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
