//! A fresh store and the state it carries besides the guest: the memory
//! limit, the deadline, the guest's log, a failure a host function
//! recorded, and, for a call with a WASI configuration, its WASI state
//! (`wasi::WasiRun`). Every instance gets its own store, made here, and drops it with
//! the instance; `instance_live_count/0` counts the stores alive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Caller, Error, ResourceLimiter, Store, UpdateDeadline};

use crate::engine::{ENGINE, FUEL_YIELD_INTERVAL, MAX_TABLES_PER_MODULE, MAX_TABLE_ELEMENTS};
use crate::error::{error_chain, MunitionError, MunitionResult};
use crate::term::OwnedBytes;
use crate::trap::{HostFailure, Reason, TrapKind};
use crate::wasi::WasiRun;

/// The memory limit of one store: `max_memory` bounds the bytes of all the
/// guest's memories together, which is what the host pays for. Growing past
/// it is a crash with `:memory_limit` rather than wasm's silent `-1`, so a
/// guest cannot probe the limit and the operator sees the attempt.
pub struct GuestLimits {
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub memory_limit_hit: bool,
    /// Bytes of all the store's memories, as this limiter approved them.
    pub memory_total: usize,
}

impl GuestLimits {
    /// A limit of `max_memory` bytes, nothing grown yet.
    pub fn new(max_memory: u64) -> Self {
        GuestLimits {
            // Only short of 64-bit: a limit over the address space is no limit.
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            max_table_elements: MAX_TABLE_ELEMENTS,
            memory_limit_hit: false,
            memory_total: 0,
        }
    }

    /// Decides a memory growth for either engine's limiter: `Ok(true)` to
    /// allow it (counted), `Ok(false)` for wasm's -1 (past the memory's own
    /// maximum, not counted), `Err(message)` past `max_memory`.
    pub fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, String> {
        // A growth past the memory's own declared maximum fails (wasm's -1)
        // and must not count: refused here, it is never counted.
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        // `current` is what this memory had (0 when it is being created).
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.max_memory {
            self.memory_limit_hit = true;
            let others = self.memory_total.saturating_sub(current);
            let others = if others > 0 {
                format!(" (with {others} bytes in the guest's other memories)")
            } else {
                String::new()
            };
            return Err(format!(
                "memory limit: growing linear memory from {current} to {desired} bytes{others} exceeds max_memory of {} bytes",
                self.max_memory
            ));
        }
        // A growth the system then fails (rare: the pool's slots are
        // reserved) stays counted: the limit errs on the strict side.
        self.memory_total = total;
        Ok(true)
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        GuestLimits::memory_growing(self, current, desired, maximum).map_err(Error::msg)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        crate::engine::settings().max_memories_per_module as usize
    }
    fn tables(&self) -> usize {
        MAX_TABLES_PER_MODULE
    }
}

/// Guest log lines (`munition.log`), capped in total bytes so a guest cannot
/// grow the host's memory through them.
pub struct GuestLog {
    pub lines: Vec<(i32, Vec<u8>)>,
    pub bytes: usize,
    pub limit: usize,
    pub dropped: u64,
}

impl GuestLog {
    pub fn new(limit: usize) -> Self {
        GuestLog {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    pub fn to_terms(&self) -> Vec<(i32, OwnedBytes)> {
        self.lines
            .iter()
            .map(|(level, line)| (*level, OwnedBytes(line.clone())))
            .collect()
    }

    /// Keeps the line if it fits in what is left of the limit; checked
    /// before copying, so a guest logging huge ranges costs no host memory.
    pub fn push(&mut self, level: i32, line: &[u8]) {
        if self.bytes + line.len() > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push((level, line.to_vec()));
    }
}

/// Everything a store carries besides the guest.
pub struct HostState {
    pub limits: GuestLimits,
    pub deadline: Instant,
    pub timed_out: bool,
    pub log: GuestLog,
    /// Set by a host function that failed the call; see `host_fail`.
    pub host_failure: Option<HostFailure>,
    /// The call's WASI state, when it has a WASI configuration. Made fresh
    /// for every store and dropped with it: never shared.
    pub wasi: Option<Box<WasiRun>>,
    /// Set by `proc_exit`: the guest ended itself with this exit code (the
    /// error that unwinds it is then no failure).
    pub exit_code: Option<u32>,
}

impl HostState {
    /// The WASI state of the call. A store is given one whenever a WASI
    /// function is linked; should one be called without (it cannot be), an
    /// empty one (no stdio, no arguments, no environment, no files) serves
    /// rather than a panic.
    pub fn wasi(&mut self) -> &mut WasiRun {
        self.wasi.get_or_insert_with(|| Box::new(WasiRun::empty()))
    }
}

/// Stores alive right now, for tests and operators: every `fire/4` must bring
/// this back to where it was.
static LIVE_STORES: AtomicUsize = AtomicUsize::new(0);

impl Drop for HostState {
    fn drop(&mut self) {
        LIVE_STORES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Number of guest stores currently alive.
#[rustler::nif]
fn instance_live_count() -> usize {
    LIVE_STORES.load(Ordering::Relaxed)
}

/// A fresh store with `fuel`, a deadline `timeout` from now, and a memory
/// limit of `max_memory` bytes (all its memories together), keeping up to `log_limit` bytes of log lines.
pub fn new_store(
    fuel: u64,
    timeout: Duration,
    max_memory: u64,
    log_limit: usize,
    wasi: Option<WasiRun>,
) -> MunitionResult<Store<HostState>> {
    let state = HostState {
        limits: GuestLimits::new(max_memory),
        deadline: Instant::now() + timeout,
        timed_out: false,
        log: GuestLog::new(log_limit),
        host_failure: None,
        wasi: wasi.map(Box::new),
        exit_code: None,
    };
    LIVE_STORES.fetch_add(1, Ordering::Relaxed);
    let mut store = Store::new(&ENGINE, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(fuel)
        .map_err(|e| MunitionError::InvalidState(error_chain(&e)))?;
    // Suspension points for slicing. They come from fuel rather than from
    // epochs because an epoch-driven suspension or interrupt does not write the
    // fuel counter back to the store (Wasmtime 48 keeps it in a register), and
    // the dump of a timed-out guest must say how much fuel it burnt.
    store
        .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
        .map_err(|e| MunitionError::InvalidState(error_chain(&e)))?;
    // The epoch ticker calls back at every tick; the guest is interrupted on
    // the first tick past its wall-clock deadline.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        if Instant::now() >= ctx.data().deadline {
            ctx.data_mut().timed_out = true;
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    Ok(store)
}

/// Records a host-side failure on the store (the first one stands) and
/// returns the error that unwinds the guest.
pub fn host_fail(
    caller: &mut Caller<'_, HostState>,
    reason: Reason,
    trap: TrapKind,
    message: String,
) -> Error {
    let error = Error::msg(message.clone());
    caller.data_mut().host_failure.get_or_insert(HostFailure {
        reason,
        trap,
        message,
    });
    error
}

/// Fails the call as a timeout: a host function found the deadline passed
/// (epoch interruption only reaches wasm code, not the host's).
pub fn host_timeout(caller: &mut Caller<'_, HostState>, message: String) -> Error {
    caller.data_mut().timed_out = true;
    host_fail(caller, Reason::Timeout, TrapKind::Interrupt, message)
}
