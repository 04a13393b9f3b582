//! Munition's native side: Wasmtime behind a Rustler NIF.
//!
//! One file per concept: `engine` (the shared engine and deadlines), `module`
//! (compile and cache), `instance` (fresh stores), `call`, `capture`
//! (forensics), `host` (host functions), `analyser` (memory scans),
//! `error` (what every fallible NIF returns).

mod analyser;
mod call;
mod capture;
mod engine;
mod error;
mod host;
mod instance;
mod module;

use rustler::{Binary, Encoder, Env, NewBinary, Term};

/// Bytes that reach Elixir as a binary.
pub struct OwnedBytes(pub Vec<u8>);

impl Encoder for OwnedBytes {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        bytes_term(env, &self.0)
    }
}

pub fn bytes_term<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Binary::from(binary).encode(env)
}

/// An error and its causes on one line, outermost first. Wasmtime attaches
/// the backtrace and the coredump as context layers whose text is a whole
/// multi-line report; those are read structurally by the capture and left out.
pub fn error_chain(error: &wasmtime::Error) -> String {
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

mod atoms {
    rustler::atoms! {
        ok, error, ready, crashed, returned, yielded, full, minimal,
        // error kinds
        invalid_module, function_not_found, bad_args, capability_denied,
        memory_limit, instantiation_failed, invalid_state, out_of_bounds, bad_data, overloaded, unsupported,
        // crash reasons
        fuel_exhausted, trap, timeout, host_error,
        // trap kinds
        stack_overflow, memory_out_of_bounds, heap_misaligned, table_out_of_bounds,
        indirect_call_to_null, bad_signature, integer_overflow, integer_divide_by_zero,
        bad_conversion_to_integer, unreachable, interrupt, out_of_fuel, null_reference,
        allocation_too_large, unknown, abort,
        // value types and extern kinds
        i32, i64, f32, f64, v128, ref_ = "ref", func, memory, table, global, tag,
        nan, infinity, neg_infinity,
        // engine features
        fuel, epochs, pooling, coredump, fibers,
        // metadata keys
        fuel_consumed, fuel_remaining, execution_time_us,
        munition_host_call, munition_wake, munition_memory, waiting, large,
    }
}

rustler::init!("Elixir.Munition.Native");
