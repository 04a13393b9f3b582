//! The WASI functions Munition implements itself and writes once, over
//! `HostCtx`, for every engine: the clocks (`clock_time_get`,
//! `clock_res_get`: time is Munition's, real or deterministic, see `time`),
//! `sched_yield`, `random_get` (paid for in fuel, checked against the
//! deadline) and `proc_exit` (an exit code is a result, not a failure).
//! Each engine makes them as it makes the built-ins (`Make::Own` rows of the
//! table in `wasi`).

use super::clock::NS_PER_FUEL;
use crate::host::builtins::{fill_random, i32_param};
use crate::host::context::{fail, guest_range, HostCtx, Stop};
use crate::vocabulary::trap::{Reason, TrapKind};
use crate::vocabulary::value::Value;

/// WASI's error numbers that Munition's own functions return. A pointer
/// outside guest memory is no errno: as WASI says and Wasmtime does, the
/// function traps (`:memory_out_of_bounds`).
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
}

pub const REALTIME: u32 = 0;
pub const MONOTONIC: u32 = 1;

/// `(monotonic, wall)` now, in nanoseconds, for the guest's clocks.
pub fn now(ctx: &mut dyn HostCtx) -> Result<(u64, u64), Stop> {
    let fuel = match ctx.fuel() {
        Ok(fuel) => fuel,
        Err(message) => {
            return Err(fail(
                ctx,
                Reason::HostError,
                TrapKind::HostError,
                format!("cannot read the fuel left: {message}"),
            ))
        }
    };
    let clock = &ctx.state().wasi().clock;
    Ok((clock.monotonic_ns(fuel), clock.wall_ns(fuel)))
}

/// Writes `bytes` at `ptr` of the guest's memory, or fails the call as a
/// `:memory_out_of_bounds` trap naming `func`.
pub fn write_guest(ctx: &mut dyn HostCtx, func: &str, ptr: u64, bytes: &[u8]) -> Result<(), Stop> {
    let range = guest_range(ctx, func, ptr, bytes.len() as u64)?;
    if let (Some(data), _) = ctx.memory_and_state() {
        data[range].copy_from_slice(bytes);
    }
    Ok(())
}

/// `clock_res_get(id, resolution)`.
pub fn clock_res_get(
    ctx: &mut dyn HostCtx,
    params: &[Value],
    results: &mut [Value],
) -> Result<(), Stop> {
    let (id, ptr) = (i32_param(params, 0) as u32, i32_param(params, 1) as u32);
    // CPU-time clocks are not offered, as in Wasmtime's implementation.
    if id != REALTIME && id != MONOTONIC {
        results[0] = Value::I32(errno::BADF);
        return Ok(());
    }
    write_guest(ctx, "clock_res_get", ptr.into(), &NS_PER_FUEL.to_le_bytes())?;
    results[0] = Value::I32(errno::SUCCESS);
    Ok(())
}

/// `clock_time_get(id, precision, time)`.
pub fn clock_time_get(
    ctx: &mut dyn HostCtx,
    params: &[Value],
    results: &mut [Value],
) -> Result<(), Stop> {
    let (id, ptr) = (i32_param(params, 0) as u32, i32_param(params, 2) as u32);
    let (monotonic, wall) = now(ctx)?;
    let time = match id {
        REALTIME => wall,
        MONOTONIC => monotonic,
        _ => {
            results[0] = Value::I32(errno::BADF);
            return Ok(());
        }
    };
    write_guest(ctx, "clock_time_get", ptr.into(), &time.to_le_bytes())?;
    results[0] = Value::I32(errno::SUCCESS);
    Ok(())
}

/// `sched_yield()`: nothing to yield to (the guest has its own slices).
pub fn sched_yield(_: &mut dyn HostCtx, _: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    results[0] = Value::I32(errno::SUCCESS);
    Ok(())
}

/// `random_get(buf, len)`: fills `[buf, buf + len)` from the OS CSPRNG as
/// the `random_bytes` built-in does, paid for in fuel and checked against
/// the deadline as it goes; a range outside guest memory is a
/// `:memory_out_of_bounds` trap.
pub fn random_get(
    ctx: &mut dyn HostCtx,
    params: &[Value],
    results: &mut [Value],
) -> Result<(), Stop> {
    let (ptr, len) = (i32_param(params, 0) as u32, i32_param(params, 1) as u32);
    fill_random(ctx, "random_get", ptr.into(), len.into())?;
    results[0] = Value::I32(errno::SUCCESS);
    Ok(())
}

/// `proc_exit(code)`: the guest ends itself. The code is kept on the store
/// and the guest unwound; its execution then ends as `{:exited, code, meta}`
/// (each engine's execution looks for the code first), whatever the code.
pub fn proc_exit(ctx: &mut dyn HostCtx, params: &[Value], _: &mut [Value]) -> Result<(), Stop> {
    let code = i32_param(params, 0) as u32;
    ctx.state().exit_code = Some(code);
    Err(Stop::Failed(format!("proc_exit({code})")))
}
