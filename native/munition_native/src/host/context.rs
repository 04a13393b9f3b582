//! What a host function needs of the store it runs in, whichever engine
//! runs the guest: its state, its exported memory, its fuel. The built-ins
//! and the bridge's serving of Elixir's memory requests are written once
//! against this trait; each engine implements it for its own handles.

use std::ops::Range;
use std::time::Instant;

use munition_core::guest::{bounds, fuel_for};

use crate::host::state::StoreState;
use crate::vocabulary::trap::{Reason, TrapKind};

/// Why a host function stops the guest.
#[derive(Debug)]
pub enum Stop {
    /// A failure recorded on the store (`StoreState::fail`), with its
    /// message for the error that unwinds the guest.
    Failed(String),
    /// The fuel ran out: the engine's own out-of-fuel trap.
    OutOfFuel,
}

/// A store, seen from a host function.
pub trait HostCtx {
    fn state(&mut self) -> &mut StoreState;

    /// The guest's exported memory (`None` when it exports none) and the
    /// store's state, at once.
    fn memory_and_state(&mut self) -> (Option<&mut [u8]>, &mut StoreState);

    /// Fuel left to the guest (the store's and any reserve), or why it
    /// cannot be read.
    fn fuel(&mut self) -> Result<u64, String>;

    /// Takes `cost` units of fuel from the guest: `Err` when it has not
    /// that much (it then has none).
    fn charge(&mut self, cost: u64) -> Result<(), Stop>;
}

/// Fails the call: records the failure and returns the `Stop` for it.
pub fn fail(ctx: &mut dyn HostCtx, reason: Reason, trap: TrapKind, message: String) -> Stop {
    Stop::Failed(ctx.state().fail(reason, trap, message))
}

/// The byte range `[ptr, ptr + len)` (both read as unsigned) of the guest's
/// exported memory, checked without copying anything, or a
/// `memory_out_of_bounds` failure naming the host function.
pub fn guest_range(
    ctx: &mut dyn HostCtx,
    func: &str,
    ptr: u64,
    len: u64,
) -> Result<Range<usize>, Stop> {
    let (memory, _) = ctx.memory_and_state();
    match memory.and_then(|data| bounds(data.len(), ptr, len)) {
        Some(range) => Ok(range),
        None => Err(fail(
            ctx,
            Reason::Trap,
            TrapKind::MemoryOutOfBounds,
            format!("{func}: guest passed range {ptr}+{len} outside its memory"),
        )),
    }
}

/// Charges the fuel for handling `bytes` bytes (`BYTES_PER_FUEL` a unit).
pub fn charge_bytes(ctx: &mut dyn HostCtx, bytes: usize) -> Result<(), Stop> {
    ctx.charge(fuel_for(bytes))
}

/// Fails the call as a timeout when its deadline has passed: a host
/// function that works through a large range checks this between chunks,
/// since an engine's interruption only reaches wasm code.
pub fn check_deadline(ctx: &mut dyn HostCtx, func: &str) -> Result<(), Stop> {
    let state = ctx.state();
    if Instant::now() < state.deadline {
        return Ok(());
    }
    Err(Stop::Failed(state.time_out(format!(
        "{func}: the deadline passed while the host function ran"
    ))))
}
