//! Running guest code on Wasmtime: a guest execution (instantiation, then
//! calls) as a future, polled one slice at a time.
//!
//! Guest code runs on a Wasmtime fiber (a stack Munition owns, never the
//! scheduler thread's own small stack) and in slices: the first one, short,
//! on the caller's normal scheduler (`engine::FIRST_SLICE`), then about
//! `engine::SLICE` each on dirty ones (a component's first slice too: its
//! NIFs are all dirty, see `nif::instance`). After a slice the NIF returns
//! `:yielded` with the guest suspended, and the Elixir side calls
//! `instance_resume/1` for the next slice. Between slices the dirty scheduler
//! thread is free for other work, so runaway guests cannot starve the VM.
//!
//! A guest that waits for something outside itself (an Elixir host function,
//! a WASI sleep, a file operation on another thread) ends its slice with
//! `{:waiting, ms}` instead; `host::wakeup` says how it is woken. A guest
//! that calls WASI's `proc_exit` ends its execution with
//! `{:exited, code, meta}`, a result rather than a failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustler::Env;
use wasmtime::{Error, Instance, ModuleExport, Store};

use super::trap::classify;
use crate::engine::instance::{CallMeta, Live, Progress, Returned, Slot};
use crate::engine::types::EngineTypes;
use crate::host::bridge::{BridgeEnv, HostBridge};
use crate::host::state::StoreState;
use crate::host::wakeup::Wakeup;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::trap::Reason;

/// The Wasmtime engine, as a type for the seam (its `Engine` methods are in
/// `engine::wasmtime`).
pub struct Wasmtime;

impl EngineTypes for Wasmtime {
    type Native = wasmtime::Module;
    type Export = ModuleExport;
    type Store = wasmtime::Store<StoreState>;
    type Instance = Instance;
    type Running = Running<Wasmtime>;
    /// The error, with the backtrace and coredump Wasmtime attached.
    type Evidence = wasmtime::Error;
    type Call = crate::engine::call::Call<Wasmtime>;

    fn state(store: &Self::Store) -> &StoreState {
        store.data()
    }

    fn state_mut(store: &mut Self::Store) -> &mut StoreState {
        store.data_mut()
    }

    fn fuel_remaining(store: &Self::Store) -> MunitionResult<u64> {
        fuel_left(store)
    }

    /// Inside its future, where it cannot be read.
    fn running_memory_total(_running: &Self::Running) -> Option<usize> {
        None
    }
}

/// The engines that run on Wasmtime, core modules (`Wasmtime`) and
/// components (`engine::component`): a Wasmtime store with Munition's
/// state, failures as Wasmtime's errors, and executions run here.
pub trait OnWasmtime:
    EngineTypes<Store = Store<StoreState>, Evidence = Error, Running = Running<Self>>
{
}

impl OnWasmtime for Wasmtime {}

/// The fuel left in a store of an engine on Wasmtime.
pub fn fuel_left(store: &Store<StoreState>) -> MunitionResult<u64> {
    store.get_fuel().map_err(|e| {
        MunitionError::RuntimeFailure(format!("cannot read the fuel left: {}", error_chain(&e)))
    })
}

/// Starts `run` (a call, given the instance) on the slot's idle instance,
/// which must have finished instantiating, and runs its first slice, of
/// `slice` (`FIRST_SLICE` on a normal scheduler).
pub fn call<E: OnWasmtime, F, Fut>(
    env: Env,
    slot: &mut Slot<E>,
    slice: Duration,
    run: F,
) -> MunitionResult<Progress>
where
    F: FnOnce(Live<E>, E::Instance) -> Fut,
    Fut: Future<Output = Done<E>> + Send + 'static,
{
    let instance = *slot.idle()?.instantiated()?;
    start(slot, |live| run(live, instance))?;
    advance(env, slot, slice)
}

/// What a guest execution produced when it finished.
pub enum Step<I> {
    Instantiated(I),
    Returned(Returned),
}

type Done<E> = (
    Live<E>,
    wasmtime::Result<Step<<E as EngineTypes>::Instance>>,
);

/// A guest execution in progress. It owns the `Live` (and so the store) until
/// it finishes; dropping it cancels the guest (Wasmtime unwinds the fiber).
pub struct Running<E: EngineTypes> {
    future: Pin<Box<dyn Future<Output = Done<E>> + Send>>,
    bridge: Option<Arc<HostBridge>>,
    wakeup: Arc<Wakeup>,
    /// The store has WASI state: its slices run inside wasmtime-wasi's
    /// Tokio runtime context (see `poll_slice`).
    wasi: bool,
    deadline: Instant,
    elapsed: Duration,
}

/// Starts a guest execution on the idle instance; `advance` runs it.
pub fn start<E: OnWasmtime, F, Fut>(slot: &mut Slot<E>, run: F) -> MunitionResult<()>
where
    F: FnOnce(Live<E>) -> Fut,
    Fut: Future<Output = Done<E>> + Send + 'static,
{
    let live = slot.take_idle()?;
    let state = live.store.data();
    let running = Running {
        bridge: state.bridge.clone(),
        wakeup: state.wakeup.clone(),
        wasi: state.wasi.is_some(),
        deadline: state.deadline,
        elapsed: live.elapsed,
        future: Box::pin(run(live)),
    };
    *slot = Slot::Running(running);
    Ok(())
}

/// How the polls of a slice ended.
enum SlicePoll<E: EngineTypes> {
    Done(Done<E>),
    Yielded,
    Waiting,
}

/// Runs the guest for one slice on this thread: until it finishes, until it
/// has run for `slice`, or until it suspends to wait for something outside
/// itself (see `host::wakeup`).
///
/// The guest also suspends itself every `FUEL_YIELD_INTERVAL` units of
/// fuel; within a slice it is resumed at once, and stops itself there if
/// its deadline has passed (the store's call hook, see `store`).
fn poll_slice<E: EngineTypes>(env: Env, running: &mut Running<E>, slice: Duration) -> SlicePoll<E> {
    let started = Instant::now();
    let Running {
        future,
        bridge,
        wakeup,
        wasi,
        elapsed,
        ..
    } = running;
    let poll = {
        let _bridge = BridgeEnv::enter(env, bridge.clone());
        let waker = Waker::from(wakeup.clone());
        let mut cx = Context::from_waker(&waker);
        let mut poll_loop = || loop {
            wakeup.begin_poll();
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(done) => break SlicePoll::Done(done),
                Poll::Pending if wakeup.pending_ready() => {
                    if started.elapsed() >= slice {
                        break SlicePoll::Yielded;
                    }
                }
                Poll::Pending if wakeup.may_wait() => break SlicePoll::Waiting,
                // Nobody to wake a waiting driver: poll again.
                Poll::Pending => {
                    if started.elapsed() >= slice {
                        break SlicePoll::Yielded;
                    }
                }
            }
        };
        // wasmtime-wasi runs file operations on its Tokio runtime; inside
        // its context nothing it does can find itself without one.
        let poll = if *wasi {
            wasmtime_wasi::runtime::with_ambient_tokio_runtime(poll_loop)
        } else {
            poll_loop()
        };
        wakeup.end_poll();
        poll
    };
    *elapsed += started.elapsed();
    poll
}

/// Runs one slice of the slot's guest execution and reports where it stands.
pub fn advance<E: OnWasmtime>(
    env: Env,
    slot: &mut Slot<E>,
    slice: Duration,
) -> MunitionResult<Progress> {
    let Slot::Running(running) = slot else {
        return Err(MunitionError::InvalidState(
            "no guest execution to resume".into(),
        ));
    };
    let (mut live, result) = match poll_slice(env, running, slice) {
        SlicePoll::Done(done) => done,
        SlicePoll::Yielded => return Ok(Progress::Yielded),
        SlicePoll::Waiting => {
            let until = match running.wakeup.sleep_until() {
                Some(wake) if wake < running.deadline => wake,
                _ => running.deadline,
            };
            return Ok(Progress::waiting(
                until.saturating_duration_since(Instant::now()),
            ));
        }
    };
    live.elapsed = running.elapsed;
    let progress = match result {
        Ok(Step::Instantiated(instance)) => {
            live.instance = Some(instance);
            Progress::Ready
        }
        Ok(Step::Returned(values)) => Progress::Returned(values, CallMeta::of(&live)?),
        Err(error) => match finish(&mut live, error) {
            Ok(progress) => progress,
            Err(overloaded) => {
                *slot = Slot::Idle(Box::new(live));
                return Err(overloaded);
            }
        },
    };
    *slot = Slot::Idle(Box::new(live));
    Ok(progress)
}

/// A guest execution that ended with an error: every instance slot in use
/// (the caller waits for one), `proc_exit` (which unwinds the guest with an
/// error but ends it as the guest wanted: a result), or a failure.
fn finish<E: OnWasmtime>(live: &mut Live<E>, error: Error) -> MunitionResult<Progress> {
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return Err(MunitionError::Overloaded(error_chain(&error)));
    }
    if let Some(code) = live.store.data().exit_code {
        return Ok(Progress::Exited(code, CallMeta::of(live)?));
    }
    // WASI 0.2's `exit`, `wasmtime-wasi`'s own (components).
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Ok(Progress::Exited(exit.0 as u32, CallMeta::of(live)?));
    }
    let failure = classify(&error, live.store.data());
    let reason: Reason = live.fail(failure, Some(error));
    Ok(Progress::Crashed(reason))
}
