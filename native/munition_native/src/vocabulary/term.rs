//! Erlang terms the NIFs build, read or describe that are not wasm values:
//! binaries made from bytes the native side owns, optional fields, and short
//! descriptions of terms for error messages.

use rustler::{Binary, Decoder, Encoder, Env, NewBinary, NifResult, Term};

/// Bytes that reach Elixir as a binary.
pub struct OwnedBytes(pub Vec<u8>);

impl Encoder for OwnedBytes {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        bytes_term(env, &self.0)
    }
}

/// `nil` or a `T`. Rustler's own `Option<T>` decodes `T` first and looks for
/// `nil` only when that fails, so every `nil` for a map type costs a failed
/// decode and the error message it formats; this looks for `nil` first.
pub struct OrNil<T>(pub Option<T>);

impl<'a, T: Decoder<'a>> Decoder<'a> for OrNil<T> {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        if term == rustler::types::atom::nil().to_term(term.get_env()) {
            Ok(OrNil(None))
        } else {
            term.decode().map(|value| OrNil(Some(value)))
        }
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
