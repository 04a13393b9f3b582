//! The built-in host functions for Wasmi: the rows of the one table
//! (`crate::builtins::BUILTINS`, which says which capability grants each,
//! its import name and its signature), made as Wasmi functions. They keep
//! the same rules: work in proportion to a guest-chosen length is paid in
//! fuel (`BYTES_PER_FUEL`) and checked against the deadline, and every
//! range is checked against guest memory before it is touched.
//!
//! WASI's rows are not made here: Munition's WASI is Wasmtime's
//! (`wasmtime-wasi`), and a call that needs it is refused on Wasmi by name
//! before anything runs (see `Munition.Runtime.Wasmi`).

use std::ops::Range;
use std::time::Instant;

use wasmi::{Caller, Error, Extern, Func, FuncType, Memory, Store, Val};

use super::store::{charge, check_deadline, host_fail, WasmiState};
use super::value::type_from_shared;
use crate::builtins::{
    assemblyscript_string_in, random_failure, unix_time_ms, Builtin, Make, BYTES_PER_FUEL,
    RANDOM_CHUNK,
};
use crate::guest_memory::{bounds, EXPORT_NAME};
use crate::trap::{Reason, TrapKind};

/// The built-in of `row`, made in `store`; `None` for a row Wasmi has no
/// implementation of (WASI's).
pub fn make(store: &mut Store<WasmiState>, row: &Builtin) -> Option<Func> {
    let Make::Own(_) = row.make else {
        return None;
    };
    let ty = FuncType::new(
        row.params.iter().map(type_from_shared),
        row.results.iter().map(type_from_shared),
    );
    let func = match row.name {
        "get_time_ms" => Func::new(store, ty, get_time_ms),
        "get_monotonic_ns" => {
            let origin = Instant::now();
            Func::new(store, ty, move |_, _, results| {
                results[0] = Val::I64(origin.elapsed().as_nanos() as i64);
                Ok(())
            })
        }
        "get_random" => Func::new(store, ty, get_random),
        "random_bytes" => Func::new(store, ty, random_bytes),
        "log" => Func::new(store, ty, log),
        "abort" => Func::new(store, ty, abort),
        _ => return None,
    };
    Some(func)
}

fn i32_param(params: &[Val], index: usize) -> i32 {
    match params.get(index) {
        Some(Val::I32(v)) => *v,
        // Wasmi checked the signature from the table: cannot happen.
        _ => 0,
    }
}

fn get_time_ms(
    mut caller: Caller<'_, WasmiState>,
    _: &[Val],
    results: &mut [Val],
) -> Result<(), Error> {
    let now = unix_time_ms().map_err(|message| {
        host_fail(&mut caller, Reason::HostError, TrapKind::HostError, message)
    })?;
    results[0] = Val::I64(now);
    Ok(())
}

fn random_failed(
    caller: &mut Caller<'_, WasmiState>,
    func: &str,
    error: getrandom::Error,
) -> Error {
    host_fail(
        caller,
        Reason::HostError,
        TrapKind::HostError,
        random_failure(func, error),
    )
}

fn get_random(
    mut caller: Caller<'_, WasmiState>,
    _: &[Val],
    results: &mut [Val],
) -> Result<(), Error> {
    let random = getrandom::u64().map_err(|e| random_failed(&mut caller, "get_random", e))?;
    results[0] = Val::I64(random as i64);
    Ok(())
}

fn random_bytes(
    mut caller: Caller<'_, WasmiState>,
    params: &[Val],
    _: &mut [Val],
) -> Result<(), Error> {
    let (memory, range) = guest_range(&mut caller, "random_bytes", params, 0)?;
    charge(&mut caller, fuel_for(range.len()))?;
    let mut start = range.start;
    while start < range.end {
        check_deadline(&mut caller, "random_bytes")?;
        let end = (start + RANDOM_CHUNK).min(range.end);
        getrandom::fill(&mut memory.data_mut(&mut caller)[start..end])
            .map_err(|e| random_failed(&mut caller, "random_bytes", e))?;
        start = end;
    }
    Ok(())
}

fn log(mut caller: Caller<'_, WasmiState>, params: &[Val], _: &mut [Val]) -> Result<(), Error> {
    let level = i32_param(params, 0);
    let (memory, range) = guest_range(&mut caller, "log", params, 1)?;
    charge(&mut caller, fuel_for(range.len()))?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    state.log.push(level, &data[range]);
    Ok(())
}

fn abort(mut caller: Caller<'_, WasmiState>, params: &[Val], _: &mut [Val]) -> Result<(), Error> {
    let (message, file) = match exported_memory(&caller) {
        Some(memory) => {
            let data = memory.data(&caller);
            (
                assemblyscript_string_in(data, i32_param(params, 0)),
                assemblyscript_string_in(data, i32_param(params, 1)),
            )
        }
        None => ("<no memory>".to_string(), "<no memory>".to_string()),
    };
    let (line, column) = (i32_param(params, 2), i32_param(params, 3));
    Err(host_fail(
        &mut caller,
        Reason::Trap,
        TrapKind::Abort,
        format!("abort: {message} at {file}:{line}:{column}"),
    ))
}

fn fuel_for(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_FUEL)
}

/// The guest's exported memory, from inside a host function.
pub fn exported_memory(caller: &Caller<'_, WasmiState>) -> Option<Memory> {
    caller.get_export(EXPORT_NAME).and_then(Extern::into_memory)
}

/// The range of the `(ptr, len)` parameters at `first` and `first + 1` (both
/// read as unsigned) of the guest's memory, or a `memory_out_of_bounds`
/// failure naming the host function.
fn guest_range(
    caller: &mut Caller<'_, WasmiState>,
    func: &str,
    params: &[Val],
    first: usize,
) -> Result<(Memory, Range<usize>), Error> {
    let ptr = i32_param(params, first) as u32 as u64;
    let len = i32_param(params, first + 1) as u32 as u64;
    let found = exported_memory(caller)
        .and_then(|memory| Some((memory, bounds(memory.data(&*caller).len(), ptr, len)?)));
    found.ok_or_else(|| {
        host_fail(
            caller,
            Reason::Trap,
            TrapKind::MemoryOutOfBounds,
            format!("{func}: guest passed range {ptr}+{len} outside its memory"),
        )
    })
}
