//! A live instance: a fresh store (fuel, deadline, memory limit) with one
//! instance of a compiled module in it. Instances are never reused; each
//! `fire/4` makes one and drops it.
//!
//! Guest code runs on a Wasmtime fiber (a stack Munition owns, never the
//! scheduler thread's own small stack) and in slices: the first one, short,
//! on the caller's normal scheduler (`engine::FIRST_SLICE`), then about
//! `engine::SLICE` each on dirty ones. After a slice the NIF returns
//! `:yielded` with the guest suspended, and the
//! Elixir side calls `instance_resume/1` for the next slice. Between slices the
//! dirty scheduler thread is free for other work, so runaway guests cannot
//! starve the VM.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustler::{Atom, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::{Error, Instance, ResourceLimiter, Store, Trap, UpdateDeadline, Val};

use crate::atoms;
use crate::call::{CallMeta, WasmValue};
use crate::engine::{GuestRunning, ENGINE, FIRST_SLICE, FUEL_YIELD_INTERVAL, SLICE};
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
    /// function that raised or timed out, a wild pointer): the reason, trap
    /// kind and message that go into the dump.
    pub host_failure: Option<(Reason, Atom, String)>,
    pub bridge: Option<Arc<HostBridge>>,
}

/// Stores alive right now, for tests and operators: every `fire/4` must bring
/// this back to where it was.
static LIVE_STORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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

/// A failure kept until the capture reads it.
pub struct Failure {
    pub reason: Reason,
    pub trap: Atom,
    pub message: String,
    pub error: Error,
}

/// An instance between guest executions: its store is here to read.
pub struct Live {
    pub store: Store<HostState>,
    pub instance: Option<Instance>,
    pub module: Arc<CompiledModule>,
    pub fuel_given: u64,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
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

/// What a guest execution produced when it finished.
pub enum Step {
    Instantiated(Instance),
    Returned(Vec<Val>),
}

/// A guest execution in progress. It owns the `Live` (and so the store) until
/// it finishes; dropping it cancels the guest (Wasmtime unwinds the fiber).
type GuestFuture = Pin<Box<dyn Future<Output = (Live, wasmtime::Result<Step>)> + Send>>;

pub enum Slot {
    Idle(Live),
    Running {
        future: GuestFuture,
        bridge: Option<Arc<HostBridge>>,
        deadline: Instant,
        elapsed: Duration,
    },
    /// Cleaned up: the store and its memory were released at once instead of
    /// when the garbage collector got to the handle.
    Gone,
}

impl Slot {
    /// The idle instance, or why it cannot be used now.
    pub fn idle(&mut self) -> MunitionResult<&mut Live> {
        match self {
            Slot::Idle(live) => Ok(live),
            Slot::Running { .. } => Err(MunitionError::InvalidState(
                "the guest is still running".into(),
            )),
            Slot::Gone => Err(MunitionError::InvalidState(
                "instance was cleaned up".into(),
            )),
        }
    }

    /// Starts a guest execution on the idle instance; `advance` runs it.
    pub fn start<F, Fut>(&mut self, run: F) -> MunitionResult<()>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = (Live, wasmtime::Result<Step>)> + Send + 'static,
    {
        self.idle()?;
        let Slot::Idle(live) = std::mem::replace(self, Slot::Gone) else {
            unreachable!("checked by idle() above")
        };
        let bridge = live.store.data().bridge.clone();
        let elapsed = live.elapsed;
        let deadline = live.store.data().deadline;
        *self = Slot::Running {
            future: Box::pin(run(live)),
            bridge,
            deadline,
            elapsed,
        };
        Ok(())
    }

    /// Runs the guest for one slice on this thread: until it finishes (the
    /// slot is idle again, with the step or the failure), until it has run for
    /// `SLICE`, or until it suspends to wait for an Elixir host function.
    ///
    /// The guest also suspends itself every `FUEL_YIELD_INTERVAL` units of
    /// fuel; within a slice it is resumed at once.
    fn poll_slice(&mut self, env: Env, slice: Duration) -> MunitionResult<SliceEnd> {
        let Slot::Running {
            future,
            bridge,
            deadline,
            elapsed,
        } = self
        else {
            return Err(MunitionError::InvalidState(
                "no guest execution to resume".into(),
            ));
        };
        let started = Instant::now();
        let poll = {
            let _running = GuestRunning::start();
            let _bridge = BridgeEnv::enter(env, bridge.clone());
            let mut cx = Context::from_waker(Waker::noop());
            loop {
                match future.as_mut().poll(&mut cx) {
                    Poll::Pending if bridge.as_ref().is_some_and(|b| b.waiting()) => {
                        break Poll::Pending
                    }
                    Poll::Pending if started.elapsed() < slice => continue,
                    poll => break poll,
                }
            }
        };
        *elapsed += started.elapsed();
        let Poll::Ready((mut live, result)) = poll else {
            return Ok(match bridge {
                Some(bridge) if bridge.waiting() => {
                    SliceEnd::Waiting(deadline.saturating_duration_since(Instant::now()))
                }
                _ => SliceEnd::Yielded,
            });
        };
        live.elapsed = *elapsed;
        if let Err(error) = &result {
            if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                let message = crate::error_chain(error);
                *self = Slot::Idle(live);
                return Err(MunitionError::Overloaded(message));
            }
        }
        let outcome = result.map_err(|error| live.fail(error));
        *self = Slot::Idle(live);
        Ok(SliceEnd::Done(outcome))
    }
}

/// How a slice ended.
enum SliceEnd {
    Done(Result<Step, Reason>),
    /// Ran out its time; resume at once.
    Yielded,
    /// Suspended until an Elixir host function answers, at most this long.
    Waiting(Duration),
}

pub struct InstanceRef {
    slot: Mutex<Slot>,
}

#[rustler::resource_impl]
impl Resource for InstanceRef {}

// The slot sits behind a mutex whose poisoning we tolerate on purpose: a panic
// mid-call leaves at worst a store that fails its next use.
impl std::panic::RefUnwindSafe for InstanceRef {}

impl InstanceRef {
    pub fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where a guest execution stands after a slice: finished one way or the
/// other, or yielded (call `instance_resume/1` for the next slice).
pub enum Progress {
    Ready,
    Returned(Vec<Val>, CallMeta),
    Crashed(Atom),
    Yielded,
    /// Waiting for an Elixir host function: resume on `:munition_wake`, or
    /// after this many milliseconds (the deadline) at the latest.
    Waiting(u64),
}

impl Encoder for Progress {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Progress::Ready => atoms::ready().encode(env),
            Progress::Returned(values, meta) => {
                let values: Vec<WasmValue> = values.iter().cloned().map(WasmValue).collect();
                (atoms::returned(), values, meta).encode(env)
            }
            Progress::Crashed(reason) => (atoms::crashed(), *reason).encode(env),
            Progress::Yielded => atoms::yielded().encode(env),
            Progress::Waiting(ms) => (atoms::waiting(), *ms).encode(env),
        }
    }
}

/// Runs one slice of the slot's guest execution and reports where it stands.
pub fn advance(env: Env, slot: &mut Slot, slice: Duration) -> MunitionResult<Progress> {
    Ok(match slot.poll_slice(env, slice)? {
        SliceEnd::Yielded => Progress::Yielded,
        // Rounded up, so the driver does not wake just before the deadline.
        SliceEnd::Waiting(left) => Progress::Waiting(left.as_millis() as u64 + 1),
        SliceEnd::Done(Err(reason)) => Progress::Crashed(reason.atom()),
        SliceEnd::Done(Ok(Step::Instantiated(instance))) => {
            slot.idle()?.instance = Some(instance);
            Progress::Ready
        }
        SliceEnd::Done(Ok(Step::Returned(values))) => {
            let live = slot.idle()?;
            let fuel_remaining = live.fuel_remaining();
            let meta = CallMeta {
                fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
                fuel_remaining,
                execution_time_us: live.elapsed.as_micros() as u64,
                log: live.store.data().log.to_terms(),
            };
            Progress::Returned(values, meta)
        }
    })
}

#[derive(rustler::NifMap)]
pub struct InstanceConfig {
    pub fuel: u64,
    pub timeout: u64,
    pub max_memory: u64,
    pub links: Vec<Link>,
    pub log_limit: u64,
    /// The process that drives the guest and serves its Elixir host functions,
    /// when there are any (it must be the one making the `instance_*` calls).
    pub host_pid: Option<LocalPid>,
}

/// Maps a failed guest execution to a reason, a trap kind and a message.
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

fn new_store(
    config: &InstanceConfig,
    bridge: Option<Arc<HostBridge>>,
) -> MunitionResult<Store<HostState>> {
    let state = HostState {
        limits: GuestLimits {
            max_memory: usize::try_from(config.max_memory).unwrap_or(usize::MAX),
            max_table_elements: crate::engine::MAX_TABLE_ELEMENTS,
            memory_limit_hit: false,
        },
        deadline: Instant::now() + Duration::from_millis(config.timeout),
        timed_out: false,
        log: GuestLog::new(config.log_limit as usize),
        host_failure: None,
        bridge,
    };
    LIVE_STORES.fetch_add(1, Ordering::Relaxed);
    let mut store = Store::new(&ENGINE, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(config.fuel)
        .map_err(|e| MunitionError::InvalidState(crate::error_chain(&e)))?;
    // Suspension points for slicing. They come from fuel rather than from
    // epochs because an epoch-driven suspension or interrupt does not write the
    // fuel counter back to the store (Wasmtime 48 keeps it in a register), and
    // the dump of a timed-out guest must say how much fuel it burnt.
    store
        .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
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

/// Refuses before any guest code runs what can be refused: memories whose
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

/// Instantiates a module in a fresh store and runs the first slice of its
/// start function, if any, under the call's fuel, deadline and memory limit.
/// Returns the handle with `:ready`, `{:crashed, reason}`, `:yielded` or
/// `{:waiting, ms}`. On a normal scheduler: the first slice is short
/// (`FIRST_SLICE`); `instance_resume/1` continues on dirty ones.
#[rustler::nif]
fn instance_new(
    env: Env,
    module: ResourceArc<ModuleRef>,
    config: InstanceConfig,
) -> MunitionResult<(ResourceArc<InstanceRef>, Progress)> {
    let compiled = module.0.clone();
    preflight(&compiled, config.max_memory)?;
    let bridge = config
        .host_pid
        .map(|driver| Arc::new(HostBridge::new(driver)));
    let mut store = new_store(&config, bridge)?;
    let imports = host::resolve_imports(&mut store, &compiled, &config.links)?;

    let mut slot = Slot::Idle(Live {
        store,
        instance: None,
        module: compiled,
        fuel_given: config.fuel,
        elapsed: Duration::ZERO,
        failure: None,
    });
    // Imports were type-checked in `resolve_imports`, so what fails here is
    // the guest: its start function, or a segment that does not fit.
    slot.start(|mut live| async move {
        let module = live.module.module.clone();
        let result = Instance::new_async(&mut live.store, &module, &imports).await;
        (live, result.map(Step::Instantiated))
    })?;
    let progress = advance(env, &mut slot, FIRST_SLICE)?;
    Ok((
        ResourceArc::new(InstanceRef {
            slot: Mutex::new(slot),
        }),
        progress,
    ))
}

/// Runs the next slice of a guest execution that yielded.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_resume(env: Env, instance: ResourceArc<InstanceRef>) -> MunitionResult<Progress> {
    advance(env, &mut instance.lock(), SLICE)
}

/// Memory up to which a store is released on a normal scheduler. Releasing
/// resets the memory's pool slot, which costs in proportion to the pages the
/// guest touched: about 8 ms for 64 MiB here, too long for a normal scheduler.
const INLINE_RELEASE_LIMIT: usize = 4 * 1024 * 1024;

/// Drops the store now, cancelling a guest that is still mid-execution; later
/// use of the handle is `{:error, {:invalid_state, _}}`. Returns `:ok`, or
/// `:large` without releasing a store whose memory is over
/// `INLINE_RELEASE_LIMIT`: release that one with `instance_cleanup_dirty/1`.
#[rustler::nif]
fn instance_cleanup(instance: ResourceArc<InstanceRef>) -> Atom {
    let mut slot = instance.lock();
    let large = match &mut *slot {
        Slot::Idle(live) => live.instance.is_some_and(|i| {
            i.get_memory(&mut live.store, "memory")
                .is_some_and(|m| m.data_size(&live.store) > INLINE_RELEASE_LIMIT)
        }),
        _ => false,
    };
    if large {
        return atoms::large();
    }
    drop(std::mem::replace(&mut *slot, Slot::Gone));
    atoms::ok()
}

/// `instance_cleanup/1` for stores with large memories.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_cleanup_dirty(instance: ResourceArc<InstanceRef>) -> Atom {
    drop(std::mem::replace(&mut *instance.lock(), Slot::Gone));
    atoms::ok()
}
