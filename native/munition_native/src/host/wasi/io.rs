//! WASI's byte movers, bounded: the metered `fd_read`/`fd_write`/
//! `fd_pread`/`fd_pwrite` (`random_get` is in `own`, the capture pipes are
//! `pipe`).
//!
//! A guest pays fuel for the bytes it moves, as for Munition's built-ins
//! (`munition_core::guest::BYTES_PER_FUEL`): before an `fd_*` call runs, the guest pays
//! one unit per entry of its iovec array (8 bytes each) and one per 8 bytes
//! of the buffer that Wasmtime's implementation will move (the first
//! non-empty one: it moves one buffer per call). Then Wasmtime's own
//! function does the work (`linked`).

use wasmtime::{Caller, Error, Val};

use super::caller::{self, check_range, error, read_guest};
use super::linked;
use crate::host::builtins::WasiFuture;
use crate::host::context::charge_bytes;
use crate::host::state::StoreState;
use crate::vocabulary::guest_memory::bounds;

/// Charges the guest for the iovec array `[iovs, iovs + 8 * count)` and for
/// the buffer Wasmtime's implementation will move. An array outside guest
/// memory is a `:memory_out_of_bounds` trap before anything is read; a
/// buffer outside it is not charged for (Wasmtime's function traps on it).
fn charge_iovecs(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    iovs: i32,
    count: i32,
) -> Result<(), Error> {
    let (iovs, count) = (iovs as u32 as u64, count as u32 as u64);
    // Never overflows: both are below 2^32.
    check_range(caller, func, iovs, count * 8)?;
    charge_bytes(caller, (count * 8) as usize).map_err(error)?;
    for entry in 0..count {
        let iovec = read_guest::<8>(caller, func, iovs + entry * 8)?;
        let buf = u32::from_le_bytes([iovec[0], iovec[1], iovec[2], iovec[3]]) as u64;
        let len = u32::from_le_bytes([iovec[4], iovec[5], iovec[6], iovec[7]]) as u64;
        if len == 0 {
            continue;
        }
        let size = caller::memory(caller).map_or(0, |memory| memory.data_size(&*caller));
        if bounds(size, buf, len).is_some() {
            charge_bytes(caller, len as usize).map_err(error)?;
        }
        break;
    }
    Ok(())
}

/// One of Wasmtime's `fd_*` byte movers (`linked`), paid for first (see
/// the moduledoc): its iovec array and its count are parameters `iovs` and
/// `iovs + 1`.
macro_rules! metered {
    ($(#[$doc:meta])* $name:ident, iovs at $iovs:literal) => {
        $(#[$doc])*
        pub fn $name<'a>(
            caller: &'a mut Caller<'_, StoreState>,
            params: &'a [Val],
            results: &'a mut [Val],
        ) -> WasiFuture<'a> {
            Box::pin(async move {
                let param = |i: usize| params.get(i).and_then(Val::i32).unwrap_or_default();
                charge_iovecs(caller, stringify!($name), param($iovs), param($iovs + 1))?;
                linked::$name(caller, params, results).await
            })
        }
    };
}

metered! {
    /// `fd_write(fd, iovs, iovs_len, nwritten)`.
    fd_write, iovs at 1
}

metered! {
    /// `fd_read(fd, iovs, iovs_len, nread)`.
    fd_read, iovs at 1
}

metered! {
    /// `fd_pwrite(fd, iovs, iovs_len, offset, nwritten)`.
    fd_pwrite, iovs at 1
}

metered! {
    /// `fd_pread(fd, iovs, iovs_len, offset, nread)`.
    fd_pread, iovs at 1
}
