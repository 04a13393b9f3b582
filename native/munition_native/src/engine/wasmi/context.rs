//! A Wasmi store as the host sees it (`HostCtx`): from inside a host
//! function, or from the loop serving a suspended guest's Elixir host call.

use munition_core::guest::take_fuel;
use wasmi::{AsContextMut, Caller, Extern, Instance, Memory, Store, StoreContextMut, TrapCode};

use crate::host::context::{HostCtx, Stop};
use crate::host::state::StoreState;
use crate::vocabulary::guest_memory::EXPORT_NAME;
use crate::vocabulary::trap::{Reason, TrapKind};

/// A Wasmi store seen from a host function, or from the loop serving a
/// suspended guest's Elixir host call.
pub struct Ctx<'a> {
    store: StoreContextMut<'a, StoreState>,
    memory: Option<Memory>,
}

impl<'a> Ctx<'a> {
    pub fn of_caller(caller: &'a mut Caller<'_, StoreState>) -> Self {
        let memory = caller.get_export(EXPORT_NAME).and_then(Extern::into_memory);
        Ctx {
            store: caller.as_context_mut(),
            memory,
        }
    }

    pub fn of_store(store: &'a mut Store<StoreState>, instance: Option<Instance>) -> Self {
        let memory = instance.and_then(|instance| instance.get_memory(&*store, EXPORT_NAME));
        Ctx {
            store: store.as_context_mut(),
            memory,
        }
    }
}

impl HostCtx for Ctx<'_> {
    fn state(&mut self) -> &mut StoreState {
        self.store.data_mut()
    }

    fn memory_and_state(&mut self) -> (Option<&mut [u8]>, &mut StoreState) {
        match self.memory {
            Some(memory) => {
                let (data, state) = memory.data_and_store_mut(&mut self.store);
                (Some(data), state)
            }
            None => (None, self.store.data_mut()),
        }
    }

    fn fuel(&mut self) -> Result<u64, String> {
        let in_store = self.store.get_fuel().map_err(|e| e.to_string())?;
        Ok(in_store.saturating_add(self.store.data().reserve))
    }

    /// From the store, then from the reserve. Not enough is
    /// `:fuel_exhausted`, as when the guest's own instructions run out.
    fn charge(&mut self, cost: u64) -> Result<(), Stop> {
        let in_store = self.store.get_fuel().map_err(|e| {
            Stop::Failed(self.store.data_mut().fail(
                Reason::HostError,
                TrapKind::HostError,
                format!("cannot read the fuel left: {e}"),
            ))
        })?;
        let reserve = self.store.data().reserve;
        let (in_store, reserve, stop) = match take_fuel(in_store, reserve, cost) {
            Some((in_store, reserve)) => (in_store, reserve, None),
            None => (0, 0, Some(())),
        };
        self.store.data_mut().reserve = reserve;
        let set = self.store.set_fuel(in_store);
        if stop.is_some() || set.is_err() {
            return Err(Stop::Failed(self.store.data_mut().fail(
                Reason::FuelExhausted,
                TrapKind::OutOfFuel,
                format!(
                    "{}: a host function's work took the last of the fuel",
                    TrapCode::OutOfFuel
                ),
            )));
        }
        Ok(())
    }
}
