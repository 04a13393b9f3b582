//! What a store carries besides the guest, on every engine: the memory
//! limit, the deadline, the guest's log, a failure a host function
//! recorded, the fuel not yet put in the store, the bridge to the process
//! serving Elixir host functions, and, for a call with a WASI
//! configuration, its WASI state. Every instance gets a fresh store with
//! a fresh one of these, dropped with it; each engine counts its stores
//! alive here (`LiveStores`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use munition_core::guest::{GuestLimits, GuestLog};

use crate::host::bridge::channel::{HostBridge, Pending};
use crate::host::journal::Journal;
use crate::host::wakeup::Wakeup;
use crate::host::wasi::run::{WasiOutput, WasiRun};
use crate::vocabulary::term::OwnedBytes;
use crate::vocabulary::trap::{HostFailure, Reason, TrapKind};

/// The stores of one engine alive right now, for tests and operators:
/// every `fire/4` must bring this back to where it was.
pub struct LiveStores(AtomicUsize);

impl LiveStores {
    pub const fn new() -> Self {
        LiveStores(AtomicUsize::new(0))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for LiveStores {
    fn default() -> Self {
        Self::new()
    }
}

/// The memory limit of a store (`munition_core::guest::GuestLimits`), as
/// each engine's limiter: the engines implement their limiter traits on
/// this. The second field is how many core instances the store may hold:
/// one for a core module, up to `MAX_CORE_INSTANCES` for a component, whose
/// core instances share the limit on memory.
pub struct Limiter(pub GuestLimits, pub usize);

/// The most core instances a component's store may hold (componentize-py's
/// plugins have 14).
pub const MAX_CORE_INSTANCES: usize = 64;

impl std::ops::Deref for Limiter {
    type Target = GuestLimits;

    fn deref(&self) -> &GuestLimits {
        &self.0
    }
}

impl std::ops::DerefMut for Limiter {
    fn deref_mut(&mut self) -> &mut GuestLimits {
        &mut self.0
    }
}

/// What a new store is given.
pub struct StoreConfig {
    pub timeout: Duration,
    pub max_memory: u64,
    pub max_table_elements: usize,
    pub log_limit: usize,
    pub bridge: Option<Arc<HostBridge>>,
    pub wakeup: Arc<Wakeup>,
    pub wasi: Option<WasiRun>,
    /// Core instances the store may hold (see `Limiter`).
    pub instances: usize,
    /// Records the store's host calls, or answers them in a replay.
    pub journal: Journal,
}

/// Everything a store carries besides the guest.
pub struct StoreState {
    pub limits: Limiter,
    /// When the store was made: the origin of `get_monotonic_ns`.
    pub origin: Instant,
    pub deadline: Instant,
    pub timed_out: bool,
    pub log: GuestLog,
    /// Set by a host function that failed the call; see `fail`.
    pub host_failure: Option<HostFailure>,
    /// Fuel of the budget not yet put in the store, for an engine that
    /// gives it in slices (Wasmi): what is left is this plus the store's.
    pub reserve: u64,
    /// The connection to the process serving the guest's Elixir host
    /// functions, when it has any.
    pub bridge: Option<Arc<HostBridge>>,
    /// The Elixir host call a suspended guest waits for, for an engine that
    /// suspends the whole execution on it (Wasmi).
    pub pending: Option<Pending>,
    /// The waker of the guest's slices, shared with its host functions.
    pub wakeup: Arc<Wakeup>,
    /// The call's WASI state, when it has a WASI configuration. Made fresh
    /// for every store and dropped with it: never shared.
    pub wasi: Option<Box<WasiRun>>,
    /// Set by `proc_exit`: the guest ended itself with this exit code (the
    /// error that unwinds it is then no failure).
    pub exit_code: Option<u32>,
    /// For a component: `{interface, function, index}` of each import an
    /// Elixir host function serves, as the capability gate linked it.
    pub component_links: Vec<(String, String, u32)>,
    /// The record of every host call, or the log a replay answers them
    /// from (see `host::journal`).
    pub journal: Journal,
    live: &'static LiveStores,
}

impl StoreState {
    /// The state of a new store of the engine whose stores `live` counts.
    pub fn new(config: StoreConfig, live: &'static LiveStores) -> Self {
        live.0.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        StoreState {
            limits: Limiter(
                GuestLimits::new(config.max_memory, config.max_table_elements),
                config.instances,
            ),
            origin: now,
            deadline: now + config.timeout,
            timed_out: false,
            log: GuestLog::new(config.log_limit),
            host_failure: None,
            reserve: 0,
            bridge: config.bridge,
            pending: None,
            wakeup: config.wakeup,
            wasi: config.wasi.map(Box::new),
            exit_code: None,
            component_links: Vec::new(),
            journal: config.journal,
            live,
        }
    }

    /// Records a host-side failure (the first one stands) and returns its
    /// message, for the error that unwinds the guest.
    pub fn fail(&mut self, reason: Reason, trap: TrapKind, message: String) -> String {
        self.host_failure.get_or_insert(HostFailure {
            reason,
            trap,
            message: message.clone(),
        });
        message
    }

    /// Fails the call as a timeout: a host function found the deadline
    /// passed (an engine's own interruption reaches only wasm code).
    pub fn time_out(&mut self, message: String) -> String {
        self.timed_out = true;
        self.fail(Reason::Timeout, TrapKind::Interrupt, message)
    }

    /// The WASI state of the call. A store is given one whenever a WASI
    /// function is linked; should one be called without (it cannot be), an
    /// empty one (no stdio, no arguments, no environment, no files) serves
    /// rather than a panic.
    pub fn wasi(&mut self) -> &mut WasiRun {
        self.wasi.get_or_insert_with(|| Box::new(WasiRun::empty()))
    }

    /// The guest's log lines, as terms.
    pub fn log_terms(&self) -> Vec<(i32, OwnedBytes)> {
        self.log
            .lines
            .iter()
            .map(|(level, line)| (*level, OwnedBytes(line.clone())))
            .collect()
    }

    /// What the guest wrote to its WASI stdout and stderr, when it has WASI.
    pub fn output(&self) -> Option<WasiOutput> {
        self.wasi.as_ref().map(|wasi| wasi.output())
    }
}

impl Drop for StoreState {
    fn drop(&mut self) {
        self.live.0.fetch_sub(1, Ordering::Relaxed);
    }
}
