//! A fresh Wasmi store per instance and what it carries besides the guest:
//! the memory limit (the same rule as Wasmtime's, `crate::store::GuestLimits`),
//! the deadline, the log, a failure a host function recorded, the fuel not
//! yet put in the store, and the Elixir host call the guest waits for.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustler::LocalPid;
use wasmi::{Caller, Error, Store, TrapCode};
use wasmi_core::LimiterError;

use super::engine::ENGINE;
use super::host::Pending;
use crate::engine::{self, MAX_TABLES_PER_MODULE};
use crate::error::{MunitionError, MunitionResult};
use crate::store::{GuestLimits, GuestLog};
use crate::trap::{HostFailure, Reason, TrapKind};

/// The memory limit as Wasmi asks for it; the message of a growth past it
/// is kept for the dump (Wasmi's limiter error carries none).
pub struct WasmiLimits {
    pub limits: GuestLimits,
    pub message: Option<String>,
}

impl wasmi::ResourceLimiter for WasmiLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        self.limits
            .memory_growing(current, desired, maximum)
            .map_err(|message| {
                self.message.get_or_insert(message);
                LimiterError::ResourceLimiterDeniedAllocation
            })
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        Ok(desired <= self.limits.max_table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_MODULE
    }

    fn memories(&self) -> usize {
        engine::settings().max_memories_per_module as usize
    }
}

/// Everything a Wasmi store carries besides the guest.
pub struct WasmiState {
    pub limits: WasmiLimits,
    pub deadline: Instant,
    pub log: GuestLog,
    pub host_failure: Option<HostFailure>,
    /// Fuel of the budget not yet put in the store (it gets `FUEL_SLICE` at
    /// a time): what is left is this plus the store's own.
    pub reserve: u64,
    /// The process serving the guest's Elixir host functions, if any.
    pub driver: Option<LocalPid>,
    /// The environment of the NIF call running the guest, for sending host
    /// calls from inside a host function; null between NIF calls.
    pub env: Arc<AtomicPtr<rustler::sys::ErlNifEnv>>,
    /// The Elixir host call the guest is suspended on.
    pub pending: Option<Pending>,
}

/// Wasmi stores alive right now (`Munition.Runtime.Wasmi.live_count/0`).
static LIVE_STORES: AtomicUsize = AtomicUsize::new(0);

impl Drop for WasmiState {
    fn drop(&mut self) {
        LIVE_STORES.fetch_sub(1, Ordering::Relaxed);
    }
}

#[rustler::nif]
fn wasmi_live_count() -> usize {
    LIVE_STORES.load(Ordering::Relaxed)
}

/// A fresh store with a budget of `fuel`, a deadline `timeout` from now and
/// a limit of `max_memory` bytes over all its memories.
pub fn new_store(
    fuel: u64,
    timeout: Duration,
    max_memory: u64,
    log_limit: usize,
    driver: Option<LocalPid>,
) -> MunitionResult<Store<WasmiState>> {
    let state = WasmiState {
        limits: WasmiLimits {
            limits: GuestLimits::new(max_memory),
            message: None,
        },
        deadline: Instant::now() + timeout,
        log: GuestLog::new(log_limit),
        host_failure: None,
        reserve: fuel,
        driver,
        env: Arc::new(AtomicPtr::new(std::ptr::null_mut())),
        pending: None,
    };
    LIVE_STORES.fetch_add(1, Ordering::Relaxed);
    let mut store = Store::new(&ENGINE, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(0)
        .map_err(|e| MunitionError::InvalidState(e.to_string()))?;
    Ok(store)
}

/// Fuel left: the store's and the reserve.
pub fn fuel_left(store: &Store<WasmiState>) -> u64 {
    store
        .get_fuel()
        .unwrap_or(0)
        .saturating_add(store.data().reserve)
}

/// Records a host-side failure (the first one stands) and returns the error
/// that ends the guest.
pub fn host_fail(
    caller: &mut Caller<'_, WasmiState>,
    reason: Reason,
    trap: TrapKind,
    message: String,
) -> Error {
    let error = Error::new(message.clone());
    caller.data_mut().host_failure.get_or_insert(HostFailure {
        reason,
        trap,
        message,
    });
    error
}

/// Charges `cost` units of fuel to a host function's guest: from the store,
/// then from the reserve. Not enough is `:fuel_exhausted`, as when the
/// guest's own instructions run out.
pub fn charge(caller: &mut Caller<'_, WasmiState>, cost: u64) -> Result<(), Error> {
    let in_store = caller.get_fuel()?;
    if cost <= in_store {
        caller.set_fuel(in_store - cost)?;
        return Ok(());
    }
    let from_reserve = cost - in_store;
    caller.set_fuel(0)?;
    let reserve = &mut caller.data_mut().reserve;
    if from_reserve > *reserve {
        *reserve = 0;
        return Err(host_fail(
            caller,
            Reason::FuelExhausted,
            TrapKind::OutOfFuel,
            format!(
                "{}: a host function's work took the last of the fuel",
                TrapCode::OutOfFuel
            ),
        ));
    }
    *reserve -= from_reserve;
    Ok(())
}

/// Fails the call as a timeout when the deadline has passed: built-ins
/// working through a large range check this between chunks.
pub fn check_deadline(caller: &mut Caller<'_, WasmiState>, func: &str) -> Result<(), Error> {
    if Instant::now() < caller.data().deadline {
        return Ok(());
    }
    Err(host_fail(
        caller,
        Reason::Timeout,
        TrapKind::Interrupt,
        format!("{func}: the deadline passed while the host function ran"),
    ))
}
