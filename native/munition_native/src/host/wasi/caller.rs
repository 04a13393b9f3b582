//! A Wasmtime `Caller` as a `HostCtx`: how WASI's functions, and the
//! Wasmtime engine's glue around the built-ins and the bridge, reach the
//! store they run in. Also the one-line text of a Wasmtime error, and the
//! Wasmtime error a `Stop` unwinds the guest with.

use wasmtime::{Caller, Error, Extern, Memory, Trap};

use crate::host::context::{HostCtx, Stop};
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

/// An error and its causes on one line, outermost first. Wasmtime attaches
/// the backtrace and the coredump as context layers whose text is a whole
/// multi-line report; those are read structurally by the capture and left out.
pub fn error_chain(error: &Error) -> String {
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
