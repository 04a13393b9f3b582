//! Running guest code: the state machine of an instance between and during
//! guest executions (instantiation, then calls), one slice at a time.
//!
//! Guest code runs on a Wasmtime fiber (a stack Munition owns, never the
//! scheduler thread's own small stack) and in slices: the first one, short,
//! on the caller's normal scheduler (`engine::FIRST_SLICE`), then about
//! `engine::SLICE` each on dirty ones. After a slice the NIF returns
//! `:yielded` with the guest suspended, and the Elixir side calls
//! `instance_resume/1` for the next slice. Between slices the dirty scheduler
//! thread is free for other work, so runaway guests cannot starve the VM.
//!
//! A guest that waits for something outside itself (an Elixir host function,
//! a WASI sleep, a file operation on another thread) ends its slice with
//! `{:waiting, ms}` instead; `wakeup` says how it is woken. A guest that
//! calls WASI's `proc_exit` ends its execution with `{:exited, code, meta}`,
//! a result rather than a failure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustler::{Encoder, Env, Term};
use wasmtime::{Error, Instance, Memory, Store, Val};

use crate::atoms;
use crate::bridge::{BridgeEnv, HostBridge};
use crate::engine::GuestRunning;
use crate::error::{error_chain, MunitionError, MunitionResult};
use crate::guest_memory;
use crate::module::CompiledModule;
use crate::store::HostState;
use crate::term::OwnedBytes;
use crate::trap::{classify, Failure, Reason};
use crate::value::WasmValue;
use crate::wakeup::Wakeup;
use crate::wasi::WasiOutput;

/// An instance between guest executions: its store is here to read.
pub struct Live {
    pub store: Store<HostState>,
    pub instance: Option<Instance>,
    pub module: Arc<CompiledModule>,
    /// The connection to the process serving the guest's Elixir host
    /// functions, when it has any.
    pub bridge: Option<Arc<HostBridge>>,
    /// The waker of its slices, shared with its host functions.
    pub wakeup: Arc<Wakeup>,
    pub fuel_given: u64,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
}

impl Live {
    /// Records a failure of the guest and returns its reason.
    pub fn fail(&mut self, error: Error) -> Reason {
        let state = self.store.data();
        let failure = classify(
            error,
            state.host_failure.as_ref(),
            state.limits.memory_limit_hit,
            state.timed_out,
        );
        let reason = failure.reason;
        self.failure = Some(failure);
        reason
    }

    /// Fuel left in the store.
    pub fn fuel_remaining(&self) -> MunitionResult<u64> {
        self.store.get_fuel().map_err(|e| {
            MunitionError::RuntimeFailure(format!("cannot read the fuel left: {}", error_chain(&e)))
        })
    }

    /// The guest's exported memory, once it is instantiated.
    pub fn exported_memory(&mut self) -> Option<Memory> {
        guest_memory::from_instance(&mut self.store, self.instance?)
    }
}

/// What a guest execution produced when it finished.
pub enum Step {
    Instantiated(Instance),
    Returned(Vec<Val>),
    /// The guest called WASI's `proc_exit` with this code.
    Exited(u32),
}

/// A guest execution in progress. It owns the `Live` (and so the store) until
/// it finishes; dropping it cancels the guest (Wasmtime unwinds the fiber).
type GuestFuture = Pin<Box<dyn Future<Output = (Live, wasmtime::Result<Step>)> + Send>>;

pub enum Slot {
    Idle(Live),
    Running {
        future: GuestFuture,
        bridge: Option<Arc<HostBridge>>,
        wakeup: Arc<Wakeup>,
        /// The store has WASI state: its slices run inside wasmtime-wasi's
        /// Tokio runtime context (see `poll_slice`).
        wasi: bool,
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
        let bridge = live.bridge.clone();
        let wakeup = live.wakeup.clone();
        let wasi = live.store.data().wasi.is_some();
        let elapsed = live.elapsed;
        let deadline = live.store.data().deadline;
        *self = Slot::Running {
            future: Box::pin(run(live)),
            bridge,
            wakeup,
            wasi,
            deadline,
            elapsed,
        };
        Ok(())
    }

    /// Runs the guest for one slice on this thread: until it finishes (the
    /// slot is idle again, with the step or the failure), until it has run for
    /// `slice`, or until it suspends to wait for something outside itself
    /// (see `wakeup`).
    ///
    /// The guest also suspends itself every `FUEL_YIELD_INTERVAL` units of
    /// fuel; within a slice it is resumed at once.
    fn poll_slice(&mut self, env: Env, slice: Duration) -> MunitionResult<SliceEnd> {
        let Slot::Running {
            future,
            bridge,
            wakeup,
            wasi,
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
        let (mut live, result) = match poll {
            SlicePoll::Done(done) => done,
            SlicePoll::Yielded => return Ok(SliceEnd::Yielded),
            SlicePoll::Waiting => {
                let now = Instant::now();
                let until = match wakeup.sleep_until() {
                    Some(wake) if wake < *deadline => wake,
                    _ => *deadline,
                };
                return Ok(SliceEnd::Waiting(until.saturating_duration_since(now)));
            }
        };
        live.elapsed = *elapsed;
        if let Err(error) = &result {
            if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                let message = error_chain(error);
                *self = Slot::Idle(live);
                return Err(MunitionError::Overloaded(message));
            }
        }
        // `proc_exit` unwinds the guest with an error, but ends it as the
        // guest wanted: a result, not a failure.
        let outcome = match (result, live.store.data().exit_code) {
            (Err(_), Some(code)) => Ok(Step::Exited(code)),
            (result, _) => result.map_err(|error| live.fail(error)),
        };
        *self = Slot::Idle(live);
        Ok(SliceEnd::Done(outcome))
    }
}

/// How the polls of a slice ended.
enum SlicePoll {
    Done((Live, wasmtime::Result<Step>)),
    Yielded,
    Waiting,
}

/// How a slice ended.
enum SliceEnd {
    Done(Result<Step, Reason>),
    /// Ran out its time; resume at once.
    Yielded,
    /// Suspended until woken (see `wakeup`), at most this long.
    Waiting(Duration),
}

/// The metadata of a call that returned.
#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct CallMeta {
    pub fuel_consumed: u64,
    pub fuel_remaining: u64,
    pub execution_time_us: u64,
    pub log: Vec<(i32, OwnedBytes)>,
    /// What the guest wrote to its WASI stdout and stderr, when the call has
    /// a WASI configuration.
    pub output: Option<WasiOutput>,
}

impl CallMeta {
    fn of(live: &Live) -> MunitionResult<CallMeta> {
        let fuel_remaining = live.fuel_remaining()?;
        let state = live.store.data();
        Ok(CallMeta {
            fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
            fuel_remaining,
            execution_time_us: live.elapsed.as_micros() as u64,
            log: state.log.to_terms(),
            output: state.wasi.as_ref().map(|wasi| wasi.output()),
        })
    }
}

/// Where a guest execution stands after a slice: finished one way or the
/// other, or yielded (call `instance_resume/1` for the next slice).
pub enum Progress {
    Ready,
    Returned(Vec<Val>, CallMeta),
    Crashed(Reason),
    /// The guest called WASI's `proc_exit`: `{:exited, code, meta}`.
    Exited(u32, CallMeta),
    Yielded,
    /// Waiting for something outside the guest: resume on `:munition_wake`,
    /// or after this many milliseconds (its wake time or its deadline) at
    /// the latest.
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
            Progress::Crashed(reason) => (atoms::crashed(), reason.atom()).encode(env),
            Progress::Exited(code, meta) => (atoms::exited(), *code, meta).encode(env),
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
        SliceEnd::Done(Err(reason)) => Progress::Crashed(reason),
        SliceEnd::Done(Ok(Step::Instantiated(instance))) => {
            slot.idle()?.instance = Some(instance);
            Progress::Ready
        }
        SliceEnd::Done(Ok(Step::Returned(values))) => {
            Progress::Returned(values, CallMeta::of(slot.idle()?)?)
        }
        SliceEnd::Done(Ok(Step::Exited(code))) => {
            Progress::Exited(code, CallMeta::of(slot.idle()?)?)
        }
    })
}
