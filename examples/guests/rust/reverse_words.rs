//! A library guest following Munition's binary ABI: it exports `memory`,
//! `alloc(len) -> ptr` and `reverse_words(ptr, len) -> i64`, whose result packs
//! the output's pointer (high 32 bits) and length (low 32 bits).
//!
//!     /usr/bin/rustc --edition 2021 --target wasm32-unknown-unknown \
//!           --crate-type cdylib -C opt-level=s -C strip=debuginfo -C panic=abort \
//!           reverse_words.rs -o reverse_words.wasm
//!
//!     Munition.fire(wasm, "reverse_words", ["one two three"], result: :binary)
//!     #=> {:ok, "three two one", _}
//!
//! It uses `std` (Vec, slices) and, built for wasm32-unknown-unknown, imports
//! nothing. Built for wasm32-wasi (`make examples` builds it both ways) the
//! same library imports WASI: wasi-libc's start-up reads the environment
//! around every exported call, and a panic would print its message.

use std::mem;

/// Memory for one binary argument, owned by the guest from then on.
#[no_mangle]
pub extern "C" fn alloc(len: u32) -> *mut u8 {
    let mut buf: Vec<u8> = Vec::with_capacity(len as usize);
    let ptr = buf.as_mut_ptr();
    // Every call runs in a fresh instance: nothing needs to be freed.
    mem::forget(buf);
    ptr
}

/// The words of `input` (split on ASCII whitespace) in reverse order, joined
/// by single spaces. Bytes that are not UTF-8 are kept as they are.
#[no_mangle]
pub extern "C" fn reverse_words(ptr: *const u8, len: u32) -> u64 {
    let input = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
    let words: Vec<&[u8]> = input
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .collect();

    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    for (i, word) in words.iter().rev().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    pack(out)
}

fn pack(out: Vec<u8>) -> u64 {
    let out = mem::ManuallyDrop::new(out);
    ((out.as_ptr() as u64) << 32) | out.len() as u64
}
