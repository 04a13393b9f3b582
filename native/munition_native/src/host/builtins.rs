//! The built-in host functions behind Munition's capabilities: one table says
//! which capability grants each, under which import name, with which
//! signature, and how it is made. The table is the only place these facts are
//! written: linking reads it, and `host_builtins/0` hands it to
//! `Munition.Host.Capabilities`, which grants by it. Its WASI rows (module
//! `wasi_snapshot_preview1`) are in `wasi::FUNCTIONS`, next to the code
//! they describe; `host::all` and `host::find` read both parts.
//!
//! Munition's own built-ins are written once, against `HostCtx`, and every
//! engine makes them from the same functions. Work a built-in does in
//! proportion to a guest-chosen length is paid for in fuel and checked
//! against the deadline, and every range a guest passes is checked against
//! its memory before anything is read or written.

use std::time::{SystemTime, UNIX_EPOCH};

use munition_core::guest::assemblyscript_string;
use rustler::Atom;

use std::future::Future;
use std::pin::Pin;

use wasmtime::{Caller, Val};

use crate::atoms;
use crate::host::context::{charge_bytes, check_deadline, fail, guest_range, HostCtx, Stop};
use crate::host::journal::Out;
use crate::host::state::StoreState;
use crate::vocabulary::trap::{Reason, TrapKind};
use crate::vocabulary::value::{Value, ValueType};

/// A built-in written once: its parameters, and slots for its results.
pub type HostFn = fn(&mut dyn HostCtx, &[Value], &mut [Value]) -> Result<(), Stop>;

/// How a built-in is made in a store.
pub enum Make {
    /// From Munition's own function, on every engine.
    Own(HostFn),
    /// A WASI function over a Wasmtime caller, made by the Wasmtime engine,
    /// whose `wasmtime-wasi` serves it (see `wasi`); an engine without it
    /// takes the row's function from `wasi::plain`.
    Wasi(WasiFn),
}

/// A WASI function over a Wasmtime caller: its parameters, slots for its
/// results.
pub type WasiFn =
    for<'a, 'c> fn(&'a mut Caller<'c, StoreState>, &'a [Val], &'a mut [Val]) -> WasiFuture<'a>;

/// What a `WasiFn` returns: Wasmtime's functions are async (a file
/// operation, a sleep suspends the guest).
pub type WasiFuture<'a> = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>;

/// One built-in host function.
pub struct Builtin {
    /// The capability that grants it (an atom of `crate::atoms`).
    pub capability: fn() -> Atom,
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [ValueType],
    pub results: &'static [ValueType],
    /// The guest memory it may write, read back after it for the replay
    /// log (see `host::journal`).
    pub writes: &'static [Out],
    pub make: Make,
}

/// Every built-in. The documentation of each is the table in
/// `Munition.Host.Capabilities`.
pub static BUILTINS: [Builtin; 6] = {
    use ValueType::{I32, I64};
    [
        Builtin {
            capability: atoms::time,
            module: "munition",
            name: "get_time_ms",
            params: &[],
            results: &[I64],
            writes: &[],
            make: Make::Own(get_time_ms),
        },
        Builtin {
            capability: atoms::time,
            module: "munition",
            name: "get_monotonic_ns",
            params: &[],
            results: &[I64],
            writes: &[],
            make: Make::Own(get_monotonic_ns),
        },
        Builtin {
            capability: atoms::random,
            module: "munition",
            name: "get_random",
            params: &[],
            results: &[I64],
            writes: &[],
            make: Make::Own(get_random),
        },
        Builtin {
            capability: atoms::random,
            module: "munition",
            name: "random_bytes",
            params: &[I32, I32],
            results: &[],
            writes: &[Out::Sized {
                at: 0,
                len: 1,
                unit: 1,
            }],
            make: Make::Own(random_bytes),
        },
        Builtin {
            capability: atoms::log,
            module: "munition",
            name: "log",
            params: &[I32, I32, I32],
            results: &[],
            writes: &[],
            make: Make::Own(log),
        },
        Builtin {
            capability: atoms::abort,
            module: "env",
            name: "abort",
            params: &[I32, I32, I32, I32],
            results: &[],
            writes: &[],
            make: Make::Own(abort),
        },
    ]
};

/// Parameter `index`, an i32 (the engine checked the signature from the
/// table: anything else cannot happen and reads as 0).
pub fn i32_param(params: &[Value], index: usize) -> i32 {
    match params.get(index) {
        Some(Value::I32(v)) => *v,
        _ => 0,
    }
}

/// A `(ptr, len)` pair of parameters, read as unsigned.
fn range_params(params: &[Value], first: usize) -> (u64, u64) {
    (
        i32_param(params, first) as u32 as u64,
        i32_param(params, first + 1) as u32 as u64,
    )
}

fn get_time_ms(ctx: &mut dyn HostCtx, _: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_millis() as i64)
        .map_err(|e| {
            fail(
                ctx,
                Reason::HostError,
                TrapKind::HostError,
                format!("get_time_ms: the host's clock is before the Unix epoch ({e})"),
            )
        })?;
    results[0] = Value::I64(now);
    Ok(())
}

fn get_monotonic_ns(ctx: &mut dyn HostCtx, _: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    results[0] = Value::I64(ctx.state().origin.elapsed().as_nanos() as i64);
    Ok(())
}

/// The OS random source failed: the call fails with it, the guest never gets
/// bytes that are not random.
fn random_failed(ctx: &mut dyn HostCtx, func: &str, error: getrandom::Error) -> Stop {
    fail(
        ctx,
        Reason::HostError,
        TrapKind::HostError,
        format!("{func}: the OS random source failed: {error}"),
    )
}

fn get_random(ctx: &mut dyn HostCtx, _: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let random = getrandom::u64().map_err(|e| random_failed(ctx, "get_random", e))?;
    results[0] = Value::I64(random as i64);
    Ok(())
}

/// Chunk size of `fill_random`, between deadline checks.
pub const RANDOM_CHUNK: usize = 64 * 1024;

/// Fills `[ptr, ptr + len)` of guest memory from the OS CSPRNG for `func`:
/// the range checked first (a wild pointer must crash, not be filled), paid
/// for in fuel, and the deadline checked between chunks.
pub fn fill_random(ctx: &mut dyn HostCtx, func: &str, ptr: u64, len: u64) -> Result<(), Stop> {
    let range = guest_range(ctx, func, ptr, len)?;
    charge_bytes(ctx, range.len())?;
    let mut start = range.start;
    while start < range.end {
        check_deadline(ctx, func)?;
        let end = (start + RANDOM_CHUNK).min(range.end);
        let filled = match ctx.memory_and_state().0 {
            Some(data) => getrandom::fill(&mut data[start..end]),
            // The range was checked in it just above.
            None => Ok(()),
        };
        filled.map_err(|e| random_failed(ctx, func, e))?;
        start = end;
    }
    Ok(())
}

fn random_bytes(ctx: &mut dyn HostCtx, params: &[Value], _: &mut [Value]) -> Result<(), Stop> {
    let (ptr, len) = range_params(params, 0);
    fill_random(ctx, "random_bytes", ptr, len)
}

fn log(ctx: &mut dyn HostCtx, params: &[Value], _: &mut [Value]) -> Result<(), Stop> {
    let level = i32_param(params, 0);
    let (ptr, len) = range_params(params, 1);
    let range = guest_range(ctx, "log", ptr, len)?;
    charge_bytes(ctx, range.len())?;
    if let (Some(data), state) = ctx.memory_and_state() {
        state.log.push(level, &data[range]);
    }
    Ok(())
}

fn abort(ctx: &mut dyn HostCtx, params: &[Value], _: &mut [Value]) -> Result<(), Stop> {
    let (message, file) = match ctx.memory_and_state().0 {
        Some(data) => (
            assemblyscript_string(data, i32_param(params, 0)),
            assemblyscript_string(data, i32_param(params, 1)),
        ),
        None => ("<no memory>".to_string(), "<no memory>".to_string()),
    };
    let (line, column) = (i32_param(params, 2), i32_param(params, 3));
    Err(fail(
        ctx,
        Reason::Trap,
        TrapKind::Abort,
        format!("abort: {message} at {file}:{line}:{column}"),
    ))
}
