//! The built-in host functions behind Munition's capabilities: one table says
//! which capability grants each, under which import name, with which
//! signature, and how it is made. The table is the only place these facts are
//! written: linking reads it, and `host_builtins/0` hands it to
//! `Munition.Host.Capabilities`, which grants by it. Its WASI rows (module
//! `wasi_snapshot_preview1`) are in `wasi::FUNCTIONS`, next to the code
//! they describe; `find` and `host_builtins/0` read both parts.
//!
//! Work a built-in does in proportion to a guest-chosen length is paid for in
//! fuel and checked against the deadline, and every range a guest passes is
//! checked against its memory before anything is read or written.

use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustler::Atom;
use wasmtime::{Caller, Error, Func, FuncType, Memory, Store, Trap, Val, ValType};

use crate::atoms;
use crate::error::MunitionResult;
use crate::guest_memory;
use crate::store::{host_fail, host_timeout, HostState};
use crate::trap::{Reason, TrapKind};
use crate::value::val_type_atom;
use crate::wasi;

/// How a built-in is made in a store.
pub enum Make {
    /// By Munition, with the row's type.
    Own(fn(&mut Store<HostState>, FuncType) -> Func),
    /// Taken from Wasmtime's WASI implementation (`wasi::linked`), by the
    /// row's name.
    Wasi,
}

/// One built-in host function.
pub struct Builtin {
    /// The capability that grants it (an atom of `crate::atoms`).
    pub capability: fn() -> Atom,
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    /// Makes it in one store, with the type of `params` and `results`.
    pub make: Make,
}

/// Every built-in. The documentation of each is the table in
/// `Munition.Host.Capabilities`.
pub static BUILTINS: [Builtin; 6] = {
    use ValType::{I32, I64};
    [
        Builtin {
            capability: atoms::time,
            module: "munition",
            name: "get_time_ms",
            params: &[],
            results: &[I64],
            make: Make::Own(get_time_ms),
        },
        Builtin {
            capability: atoms::time,
            module: "munition",
            name: "get_monotonic_ns",
            params: &[],
            results: &[I64],
            make: Make::Own(get_monotonic_ns),
        },
        Builtin {
            capability: atoms::random,
            module: "munition",
            name: "get_random",
            params: &[],
            results: &[I64],
            make: Make::Own(get_random),
        },
        Builtin {
            capability: atoms::random,
            module: "munition",
            name: "random_bytes",
            params: &[I32, I32],
            results: &[],
            make: Make::Own(random_bytes),
        },
        Builtin {
            capability: atoms::log,
            module: "munition",
            name: "log",
            params: &[I32, I32, I32],
            results: &[],
            make: Make::Own(log),
        },
        Builtin {
            capability: atoms::abort,
            module: "env",
            name: "abort",
            params: &[I32, I32, I32, I32],
            results: &[],
            make: Make::Own(abort),
        },
    ]
};

/// Every row of the table: Munition's own built-ins, then WASI's.
fn all() -> impl Iterator<Item = &'static Builtin> {
    BUILTINS.iter().chain(wasi::FUNCTIONS.iter())
}

/// The built-in imported as `module`.`name`, if there is one.
pub fn find(module: &str, name: &str) -> Option<&'static Builtin> {
    all().find(|builtin| builtin.module == module && builtin.name == name)
}

impl Builtin {
    /// The function, made in `store`.
    pub fn func(&self, store: &mut Store<HostState>) -> MunitionResult<Func> {
        match self.make {
            Make::Own(make) => {
                let ty = FuncType::new(
                    store.engine(),
                    self.params.iter().cloned(),
                    self.results.iter().cloned(),
                );
                Ok(make(store, ty))
            }
            Make::Wasi => wasi::linked(store, self.name),
        }
    }
}

/// One row of the table as Elixir sees it.
#[derive(rustler::NifMap)]
#[rustler(encode)]
struct BuiltinInfo {
    capability: Atom,
    module: String,
    name: String,
    params: Vec<Atom>,
    results: Vec<Atom>,
}

/// The table: `[%{capability: atom, module: string, name: string, params:
/// [type], results: [type]}]`, in table order.
#[rustler::nif]
fn host_builtins() -> Vec<BuiltinInfo> {
    all()
        .map(|builtin| BuiltinInfo {
            capability: (builtin.capability)(),
            module: builtin.module.to_string(),
            name: builtin.name.to_string(),
            params: builtin.params.iter().map(val_type_atom).collect(),
            results: builtin.results.iter().map(val_type_atom).collect(),
        })
        .collect()
}

/// `get_time_ms`'s value for either engine: ms since the Unix epoch, or the
/// message of a host clock set before it.
pub fn unix_time_ms() -> Result<i64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_millis() as i64)
        .map_err(|e| format!("get_time_ms: the host's clock is before the Unix epoch ({e})"))
}

/// The message of a failed OS random source, for either engine.
pub fn random_failure(func: &str, error: getrandom::Error) -> String {
    format!("{func}: the OS random source failed: {error}")
}

fn get_time_ms(store: &mut Store<HostState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, _, results| {
        let now = unix_time_ms().map_err(|message| {
            host_fail(&mut caller, Reason::HostError, TrapKind::HostError, message)
        })?;
        results[0] = Val::I64(now);
        Ok(())
    })
}

fn get_monotonic_ns(store: &mut Store<HostState>, ty: FuncType) -> Func {
    let origin = Instant::now();
    Func::new(store, ty, move |_, _, results| {
        results[0] = Val::I64(origin.elapsed().as_nanos() as i64);
        Ok(())
    })
}

fn get_random(store: &mut Store<HostState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, _, results| {
        let random = getrandom::u64().map_err(|e| random_failed(&mut caller, "get_random", e))?;
        results[0] = Val::I64(random as i64);
        Ok(())
    })
}

/// Chunk size of `random_bytes`, between deadline checks.
pub const RANDOM_CHUNK: usize = 64 * 1024;

fn random_bytes(store: &mut Store<HostState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, params, _| {
        let (ptr, len) = (params[0].unwrap_i32(), params[1].unwrap_i32());
        // Check the range first: a wild pointer must crash, not be filled.
        let (memory, range) = guest_range(&mut caller, "random_bytes", ptr, len)?;
        charge_fuel(&mut caller, range.len())?;
        let mut start = range.start;
        while start < range.end {
            check_deadline(&mut caller, "random_bytes")?;
            let end = (start + RANDOM_CHUNK).min(range.end);
            getrandom::fill(&mut memory.data_mut(&mut caller)[start..end])
                .map_err(|e| random_failed(&mut caller, "random_bytes", e))?;
            start = end;
        }
        Ok(())
    })
}

/// The OS random source failed: the call fails with it, the guest never gets
/// bytes that are not random.
pub fn random_failed(
    caller: &mut Caller<'_, HostState>,
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

fn log(store: &mut Store<HostState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, params, _| {
        let level = params[0].unwrap_i32();
        let (ptr, len) = (params[1].unwrap_i32(), params[2].unwrap_i32());
        let (memory, range) = guest_range(&mut caller, "log", ptr, len)?;
        charge_fuel(&mut caller, range.len())?;
        let (data, state) = memory.data_and_store_mut(&mut caller);
        state.log.push(level, &data[range]);
        Ok(())
    })
}

fn abort(store: &mut Store<HostState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, params, _| {
        let message = assemblyscript_string(&mut caller, params[0].unwrap_i32());
        let file = assemblyscript_string(&mut caller, params[1].unwrap_i32());
        let (line, column) = (params[2].unwrap_i32(), params[3].unwrap_i32());
        Err(host_fail(
            &mut caller,
            Reason::Trap,
            TrapKind::Abort,
            format!("abort: {message} at {file}:{line}:{column}"),
        ))
    })
}

/// The byte range `[ptr, ptr + len)` (both read as unsigned) of the guest's
/// exported memory, checked without copying anything, or a
/// `memory_out_of_bounds` failure naming the host function.
pub fn guest_range(
    caller: &mut Caller<'_, HostState>,
    func: &str,
    ptr: i32,
    len: i32,
) -> Result<(Memory, Range<usize>), Error> {
    let (ptr, len) = (ptr as u32 as u64, len as u32 as u64);
    guest_memory::caller_range(caller, ptr, len).ok_or_else(|| {
        host_fail(
            caller,
            Reason::Trap,
            TrapKind::MemoryOutOfBounds,
            format!("{func}: guest passed range {ptr}+{len} outside its memory"),
        )
    })
}

/// Bytes a built-in may handle per unit of fuel: work proportional to a
/// guest-chosen length is paid for like the guest's own instructions, so a
/// loop of large calls exhausts its budget instead of running for free.
pub const BYTES_PER_FUEL: u64 = 8;

pub fn charge_fuel(caller: &mut Caller<'_, HostState>, bytes: usize) -> Result<(), Error> {
    let cost = (bytes as u64).div_ceil(BYTES_PER_FUEL);
    let fuel = caller.get_fuel()?;
    if cost > fuel {
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - cost)?;
    Ok(())
}

/// Fails the call as a timeout when its deadline has passed: a built-in that
/// works through a large range checks this between chunks, since epoch
/// interruption only reaches wasm code.
pub fn check_deadline(caller: &mut Caller<'_, HostState>, func: &str) -> Result<(), Error> {
    if Instant::now() < caller.data().deadline {
        return Ok(());
    }
    Err(host_timeout(
        caller,
        format!("{func}: the deadline passed while the host function ran"),
    ))
}

/// Reads an AssemblyScript string (UTF-16LE, its byte length in the u32 just
/// before the pointer). Best effort: the guest is already aborting, so a bad
/// pointer yields a placeholder in the message rather than a second failure.
fn assemblyscript_string(caller: &mut Caller<'_, HostState>, ptr: i32) -> String {
    let Some(memory) = guest_memory::from_caller(caller) else {
        return "<no memory>".into();
    };
    assemblyscript_string_in(memory.data(&*caller), ptr)
}

/// The AssemblyScript string at `ptr` of guest memory `data`, for either
/// engine; a placeholder saying where it was when it cannot be read.
pub fn assemblyscript_string_in(data: &[u8], ptr: i32) -> String {
    let ptr = ptr as u32 as usize;
    let decoded = (|| {
        let len_bytes = data.get(ptr.checked_sub(4)?..ptr)?;
        // Four bytes, as just sliced: cannot fail.
        let len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
        let bytes = data.get(ptr..ptr.checked_add(len.min(4096))?)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    })();
    // The placeholder says where the unreadable string was.
    decoded.unwrap_or_else(|| format!("<string at {ptr}>"))
}
