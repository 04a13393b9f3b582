//! The iovec arrays of preview 1's byte movers on an engine without
//! `wasmtime-wasi` (Wasmi): every buffer checked in guest memory, the array
//! paid for, and one call's copy bounded as Wasmtime bounds its own.

use std::ops::Range;

use crate::host::context::{charge_bytes, guest_range, HostCtx, Stop};

pub const NOMEM: i32 = 48;
/// What one call may copy, as Wasmtime's `hostcall_fuel` allows its WASI
/// (128 MiB): more is `ENOMEM` before any buffer is followed.
pub const COPY_LIMIT: u64 = 128 << 20;

/// The buffers of the iovec array `[iovs, iovs + 8 * count)`, each checked
/// in guest memory, the array paid for (one unit per entry); `ENOMEM`
/// (`Ok(Err)`) when they add up to more than one call may copy.
pub fn iovecs(
    ctx: &mut dyn HostCtx,
    func: &str,
    iovs: u64,
    count: u64,
) -> Result<Result<Vec<Range<usize>>, i32>, Stop> {
    // Below 2^32 each: the product cannot overflow. An array outside memory
    // traps; one over the copy limit is refused before anything of it is
    // copied to the host.
    let array = guest_range(ctx, func, iovs, count * 8)?;
    if count * 8 > COPY_LIMIT {
        return Ok(Err(NOMEM));
    }
    charge_bytes(ctx, array.len())?;
    let mut raw = vec![0u8; array.len()];
    if let (Some(data), _) = ctx.memory_and_state() {
        raw.copy_from_slice(&data[array]);
    }
    let mut buffers = Vec::new();
    let mut copied = raw.len() as u64;
    for entry in raw.chunks_exact(8) {
        let buf = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) as u64;
        let len = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) as u64;
        copied += len;
        if copied > COPY_LIMIT {
            return Ok(Err(NOMEM));
        }
        buffers.push(guest_range(ctx, func, buf, len)?);
    }
    Ok(Ok(buffers))
}
