//! A live instance: a fresh store (fuel, deadline, memory limit) with one
//! instance of a compiled module in it. Instances are never reused; each
//! `fire/4` makes one and drops it.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustler::{Atom, LocalPid, Resource, ResourceArc};
use wasmtime::{Error, Instance, ResourceLimiter, Store, Trap, UpdateDeadline};

use crate::atoms;
use crate::engine::{GuestRunning, ENGINE};
use crate::error::{MunitionError, MunitionResult};
use crate::host::{self, BridgeEnv, GuestLog, HostBridge, Link};
use crate::module::{CompiledModule, ModuleRef};

/// Why a guest stopped, in Munition's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    FuelExhausted,
    Trap,
    Timeout,
    MemoryLimit,
    HostError,
}

impl Reason {
    pub fn atom(self) -> Atom {
        match self {
            Reason::FuelExhausted => atoms::fuel_exhausted(),
            Reason::Trap => atoms::trap(),
            Reason::Timeout => atoms::timeout(),
            Reason::MemoryLimit => atoms::memory_limit(),
            Reason::HostError => atoms::host_error(),
        }
    }
}

/// The memory limit of one store. Growing past `max_memory` is a crash with
/// `:memory_limit` rather than wasm's silent `-1`, so a guest cannot probe the
/// limit and the operator sees the attempt.
pub struct GuestLimits {
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub memory_limit_hit: bool,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_limit_hit = true;
            return Err(Error::msg(format!(
                "memory limit: growing linear memory from {current} to {desired} bytes exceeds max_memory of {} bytes",
                self.max_memory
            )));
        }
        Ok(true)
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
        1
    }
    fn tables(&self) -> usize {
        4
    }
}

/// Everything a store carries besides the guest.
pub struct HostState {
    pub limits: GuestLimits,
    pub deadline: Instant,
    pub timed_out: bool,
    pub log: GuestLog,
    /// Set by a host function that failed the call (an `abort`, an Elixir host
    /// function that raised or timed out, a wild pointer): the reason and the
    /// message that go into the dump.
    pub host_failure: Option<(Reason, Atom, String)>,
    pub bridge: Option<Arc<HostBridge>>,
}

/// A failure kept until the capture reads it.
pub struct Failure {
    pub reason: Reason,
    pub trap: Atom,
    pub message: String,
    pub error: Error,
}

pub struct Live {
    pub store: Store<HostState>,
    pub instance: Option<Instance>,
    pub module: Arc<CompiledModule>,
    pub fuel_given: u64,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
}

pub struct InstanceRef {
    /// `None` after cleanup: the store and its memory are released at once
    /// instead of when the garbage collector gets to the handle.
    live: Mutex<Option<Live>>,
}

#[rustler::resource_impl]
impl Resource for InstanceRef {}

// The store sits behind a mutex whose poisoning we tolerate on purpose: a
// panic mid-call leaves at worst a store that fails its next call.
impl std::panic::RefUnwindSafe for InstanceRef {}

impl InstanceRef {
    pub fn lock(&self) -> MutexGuard<'_, Option<Live>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(rustler::NifMap)]
pub struct InstanceConfig {
    pub fuel: u64,
    pub timeout_ms: u64,
    pub max_memory: u64,
    pub links: Vec<Link>,
    pub log_limit: u64,
    /// The process that serves Elixir host functions, when there are any.
    pub host_pid: Option<LocalPid>,
}

/// Polls a Wasmtime future to completion on this thread. The guest runs on a
/// fiber stack Wasmtime allocated (see `engine::FIBER_STACK_SIZE`), not on the
/// dirty scheduler's stack. Nothing in Munition yields, so the first poll
/// normally finishes the work.
pub fn run_on_fiber<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// Maps a failed guest execution to a reason and a trap kind.
pub fn classify(state: &HostState, error: &Error) -> (Reason, Atom, String) {
    let message = crate::error_chain(error);
    if let Some((reason, kind, host_message)) = &state.host_failure {
        return (*reason, *kind, host_message.clone());
    }
    if state.limits.memory_limit_hit {
        return (Reason::MemoryLimit, atoms::memory_limit(), message);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (Reason::FuelExhausted, atoms::out_of_fuel(), message),
        Some(Trap::Interrupt) => (Reason::Timeout, atoms::interrupt(), message),
        Some(trap) => (Reason::Trap, trap_atom(trap), message),
        None if state.timed_out => (Reason::Timeout, atoms::interrupt(), message),
        None => (Reason::Trap, atoms::unknown(), message),
    }
}

pub fn trap_atom(trap: &Trap) -> Atom {
    match trap {
        Trap::StackOverflow => atoms::stack_overflow(),
        Trap::MemoryOutOfBounds => atoms::memory_out_of_bounds(),
        Trap::HeapMisaligned => atoms::heap_misaligned(),
        Trap::TableOutOfBounds => atoms::table_out_of_bounds(),
        Trap::IndirectCallToNull => atoms::indirect_call_to_null(),
        Trap::BadSignature => atoms::bad_signature(),
        Trap::IntegerOverflow => atoms::integer_overflow(),
        Trap::IntegerDivisionByZero => atoms::integer_divide_by_zero(),
        Trap::BadConversionToInteger => atoms::bad_conversion_to_integer(),
        Trap::UnreachableCodeReached => atoms::unreachable(),
        Trap::Interrupt => atoms::interrupt(),
        Trap::OutOfFuel => atoms::out_of_fuel(),
        Trap::NullReference => atoms::null_reference(),
        Trap::AllocationTooLarge => atoms::allocation_too_large(),
        _ => atoms::unknown(),
    }
}

impl Live {
    /// Records a failure of the guest and returns its reason.
    pub fn fail(&mut self, error: Error) -> Reason {
        let (reason, trap, message) = classify(self.store.data(), &error);
        self.failure = Some(Failure {
            reason,
            trap,
            message,
            error,
        });
        reason
    }

    pub fn fuel_remaining(&self) -> u64 {
        self.store.get_fuel().unwrap_or(0)
    }
}

pub enum Instantiated {
    Ready(ResourceArc<InstanceRef>),
    /// The start function failed; the handle is kept for the capture.
    Crashed(Atom, ResourceArc<InstanceRef>),
}

impl rustler::Encoder for Instantiated {
    fn encode<'a>(&self, env: rustler::Env<'a>) -> rustler::Term<'a> {
        match self {
            Instantiated::Ready(handle) => (atoms::ready(), handle).encode(env),
            Instantiated::Crashed(reason, handle) => {
                (atoms::crashed(), *reason, handle).encode(env)
            }
        }
    }
}

fn new_store(
    config: &InstanceConfig,
    bridge: Option<Arc<HostBridge>>,
) -> MunitionResult<Store<HostState>> {
    let state = HostState {
        limits: GuestLimits {
            max_memory: usize::try_from(config.max_memory).unwrap_or(usize::MAX),
            max_table_elements: 1_000_000,
            memory_limit_hit: false,
        },
        deadline: Instant::now() + Duration::from_millis(config.timeout_ms),
        timed_out: false,
        log: GuestLog::new(config.log_limit as usize),
        host_failure: None,
        bridge,
    };
    let mut store = Store::new(&ENGINE, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(config.fuel)
        .map_err(|e| MunitionError::InvalidState(crate::error_chain(&e)))?;
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

/// Checks what can be refused before any guest code runs: memories whose
/// initial size is already over the limit.
fn preflight(module: &CompiledModule, max_memory: u64) -> MunitionResult<()> {
    for (index, memory) in module.info.memories.iter().enumerate() {
        let initial = memory.min_pages.saturating_mul(memory.page_size);
        if initial > max_memory {
            return Err(MunitionError::MemoryLimit(format!(
                "memory {index} starts at {initial} bytes ({} pages), over max_memory of {max_memory} bytes",
                memory.min_pages
            )));
        }
    }
    Ok(())
}

/// Instantiates a module in a fresh store. The start function, if any, runs
/// here under the call's fuel, deadline and memory limit.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_new(
    env: rustler::Env,
    module: ResourceArc<ModuleRef>,
    config: InstanceConfig,
) -> MunitionResult<Instantiated> {
    let compiled = module.0.clone();
    preflight(&compiled, config.max_memory)?;
    let bridge = config.host_pid.map(|pid| Arc::new(HostBridge::new(pid)));
    let mut store = new_store(&config, bridge.clone())?;
    let imports = host::resolve_imports(&mut store, &compiled, &config.links)?;

    let started = Instant::now();
    let result = {
        let _running = GuestRunning::start();
        let _bridge = BridgeEnv::enter(env, bridge);
        run_on_fiber(Instance::new_async(&mut store, &compiled.module, &imports))
    };
    let mut live = Live {
        store,
        instance: None,
        module: compiled,
        fuel_given: config.fuel,
        elapsed: started.elapsed(),
        failure: None,
    };
    match result {
        Ok(instance) => {
            live.instance = Some(instance);
            let handle = ResourceArc::new(InstanceRef {
                live: Mutex::new(Some(live)),
            });
            Ok(Instantiated::Ready(handle))
        }
        Err(error) => {
            // Imports were type-checked in `resolve_imports`, so what fails here
            // is the guest: its start function, or a segment that does not fit.
            let reason = live.fail(error).atom();
            let handle = ResourceArc::new(InstanceRef {
                live: Mutex::new(Some(live)),
            });
            Ok(Instantiated::Crashed(reason, handle))
        }
    }
}

/// Drops the store now. Later use of the handle is `{:error, {:invalid_state, _}}`.
#[rustler::nif]
fn instance_cleanup(instance: ResourceArc<InstanceRef>) -> Atom {
    let live = instance.lock().take();
    drop(live);
    atoms::ok()
}
