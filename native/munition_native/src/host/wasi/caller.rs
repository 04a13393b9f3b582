//! A Wasmtime `Caller` as a `HostCtx`: how WASI's functions, and the
//! Wasmtime engine's glue around the built-ins and the bridge, reach the
//! store they run in. Also the Wasmtime error a `Stop` unwinds the guest
//! with, and the reads of guest memory of the WASI functions over it.

use std::ops::Range;

use wasmtime::{Caller, Error, Extern, Memory, Trap};

use super::error::error_chain;
use crate::host::context::{guest_range, HostCtx, Stop};
use crate::host::state::StoreState;
use crate::vocabulary::guest_memory::EXPORT_NAME;
use crate::vocabulary::trap::{Reason, TrapKind};

/// The guest's exported memory, seen from inside one of its host functions.
pub fn memory<T>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    caller.get_export(EXPORT_NAME).and_then(Extern::into_memory)
}

/// The error that unwinds the guest for `stop`: the engine's own
/// out-of-fuel trap, or the failure's message (the failure itself is on the
/// store, where the classification finds it).
pub fn error(stop: Stop) -> Error {
    match stop {
        Stop::OutOfFuel => Trap::OutOfFuel.into(),
        Stop::Failed(message) => Error::msg(message),
    }
}

impl HostCtx for Caller<'_, StoreState> {
    fn state(&mut self) -> &mut StoreState {
        self.data_mut()
    }

    fn memory_and_state(&mut self) -> (Option<&mut [u8]>, &mut StoreState) {
        match memory(self) {
            Some(memory) => {
                let (data, state) = memory.data_and_store_mut(self);
                (Some(data), state)
            }
            None => (None, self.data_mut()),
        }
    }

    fn fuel(&mut self) -> Result<u64, String> {
        self.get_fuel().map_err(|e| error_chain(&e))
    }

    fn charge(&mut self, cost: u64) -> Result<(), Stop> {
        let unreadable = |caller: &mut Self, e: Error| {
            Stop::Failed(caller.data_mut().fail(
                Reason::HostError,
                TrapKind::HostError,
                format!("cannot read the fuel left: {}", error_chain(&e)),
            ))
        };
        let fuel = self.get_fuel().map_err(|e| unreadable(self, e))?;
        if cost > fuel {
            self.set_fuel(0).map_err(|e| unreadable(self, e))?;
            return Err(Stop::OutOfFuel);
        }
        self.set_fuel(fuel - cost).map_err(|e| unreadable(self, e))
    }
}

/// Checks that `[ptr, ptr + len)` lies in the guest's memory, or fails the
/// call as a `:memory_out_of_bounds` trap naming `func`.
pub fn check_range(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    ptr: u64,
    len: u64,
) -> Result<Range<usize>, Error> {
    guest_range(caller, func, ptr, len).map_err(error)
}

/// `N` bytes at `ptr` of the guest's memory (see `check_range`).
pub fn read_guest<const N: usize>(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    ptr: u64,
) -> Result<[u8; N], Error> {
    let range = check_range(caller, func, ptr, N as u64)?;
    let mut bytes = [0u8; N];
    if let Some(memory) = memory(caller) {
        bytes.copy_from_slice(&memory.data(&*caller)[range]);
    }
    Ok(bytes)
}
