//! Running a guest on Wasmi in slices: the state machine of an instance
//! between and during its executions (its start function, then calls).
//!
//! Every execution is a resumable call. The store holds at most
//! `FUEL_SLICE` units of fuel at a time; when they are used up, Wasmi
//! suspends the call (its frames stay on Wasmi's own stack, on the heap),
//! and the loop here checks the deadline and the slice's time before it
//! puts more fuel in and resumes. A slice ends when the execution does, at
//! `slice` (`:yielded`, the Elixir side resumes it in a new NIF call, on a
//! dirty scheduler), or when the guest waits for an Elixir host function
//! (`{:waiting, ms}`, see `store::elixir` and `host::bridge`). So a guest never runs more than one fuel
//! slice past its deadline, and never holds a scheduler for more than a
//! slice.

use std::time::{Duration, Instant};

use munition_core::journal::Ending;
use rustler::Env;
use std::sync::Arc;
use wasmi::errors::{ErrorKind, InstantiationError, MemoryError};

use wasmi::{
    Error, Func, Instance, ResumableCall, ResumableCallHostTrap, ResumableCallOutOfFuel, Store,
    TrapCode, Val,
};

use super::config::FUEL_SLICE;
use super::context::Ctx;
use super::module::WasmiModule;
use super::value::{from_val, to_val};
use crate::engine::instance::{CallMeta, Live, Progress, Returned, Slot};
use crate::engine::types::EngineTypes;
use crate::host::bridge::{self, BridgeEnv, Served};
use crate::host::context::Stop;
use crate::host::journal;
use crate::host::state::StoreState;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::trap::{HostFailure, Reason, TrapKind};
use crate::vocabulary::value::Value;

/// The Wasmi engine, as a type for the seam (its `Engine` methods are in
/// `engine::wasmi`).
pub struct Wasmi;

impl EngineTypes for Wasmi {
    type Native = WasmiModule;
    /// Wasmi finds an export by name.
    type Export = Arc<str>;
    type Store = wasmi::Store<StoreState>;
    type Instance = Instance;
    type Running = Running;
    /// Wasmi's errors carry no backtrace: nothing to keep.
    type Evidence = ();
    type Call = crate::engine::call::Call<Wasmi>;

    fn state(store: &Self::Store) -> &StoreState {
        store.data()
    }

    fn state_mut(store: &mut Self::Store) -> &mut StoreState {
        store.data_mut()
    }

    /// The store's and the reserve's.
    fn fuel_remaining(store: &Self::Store) -> MunitionResult<u64> {
        let in_store = store.get_fuel().map_err(|e| {
            MunitionError::RuntimeFailure(format!("cannot read the fuel left: {e}"))
        })?;
        Ok(in_store.saturating_add(store.data().reserve))
    }

    fn running_memory_total(running: &Self::Running) -> Option<usize> {
        Some(running.0.store.data().limits.memory_total)
    }
}

/// What finishing an execution means.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The start function: the instance is then ready.
    Start,
    /// An export: its results are returned.
    Call,
}

/// Where an execution goes on from.
enum Next {
    Begin(Func, Vec<Val>),
    OutOfFuel(ResumableCallOutOfFuel),
    HostCall(ResumableCallHostTrap),
}

pub struct Execution {
    goal: Goal,
    results: Vec<Val>,
    next: Option<Next>,
}

impl Execution {
    pub fn new(goal: Goal, func: Func, params: Vec<Val>, results: Vec<Val>) -> Self {
        Execution {
            goal,
            results,
            next: Some(Next::Begin(func, params)),
        }
    }
}

/// An execution in progress, with its instance.
pub type Running = Box<(Live<Wasmi>, Execution)>;

/// How the slices of an execution ended this time.
enum Outcome {
    Finished,
    Failed(HostFailure),
    Yielded,
    Waiting(Duration),
}

/// The one-line failure of a deadline that passed while the guest ran.
fn timed_out() -> HostFailure {
    HostFailure {
        reason: Reason::Timeout,
        trap: TrapKind::Interrupt,
        message: "interrupt: the guest was still running at its deadline".into(),
    }
}

fn fuel_exhausted() -> HostFailure {
    HostFailure {
        reason: Reason::FuelExhausted,
        trap: TrapKind::OutOfFuel,
        message: TrapCode::OutOfFuel.to_string(),
    }
}

fn trap_kind(code: TrapCode) -> TrapKind {
    match code {
        TrapCode::UnreachableCodeReached => TrapKind::Unreachable,
        TrapCode::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        TrapCode::TableOutOfBounds => TrapKind::TableOutOfBounds,
        TrapCode::IndirectCallToNull => TrapKind::IndirectCallToNull,
        TrapCode::IntegerDivisionByZero => TrapKind::IntegerDivideByZero,
        TrapCode::IntegerOverflow => TrapKind::IntegerOverflow,
        TrapCode::BadConversionToInteger => TrapKind::BadConversionToInteger,
        TrapCode::StackOverflow => TrapKind::StackOverflow,
        TrapCode::BadSignature => TrapKind::BadSignature,
        TrapCode::OutOfFuel => TrapKind::OutOfFuel,
        TrapCode::GrowthOperationLimited | TrapCode::OutOfSystemMemory => {
            TrapKind::AllocationTooLarge
        }
    }
}

/// Classifies a failed execution, given what its store noticed: a failure a
/// host function recorded, a growth past the memory limit; then the trap.
pub fn classify(error: &Error, state: &StoreState) -> HostFailure {
    if let Some(failure) = &state.host_failure {
        return failure.clone();
    }
    if state.limits.memory_limit_hit {
        return HostFailure {
            reason: Reason::MemoryLimit,
            trap: TrapKind::MemoryLimit,
            message: state
                .limits
                .message
                .clone()
                .unwrap_or_else(|| error.to_string()),
        };
    }
    if state.pending.is_some() {
        // Only a tail call (`return_call`) of an Elixir host function gets
        // here: Wasmi cannot suspend one.
        return HostFailure {
            reason: Reason::HostError,
            trap: TrapKind::HostError,
            message: format!(
                "{error}: a tail call of an Elixir host function cannot wait for its reply on Wasmi"
            ),
        };
    }
    // A segment that does not fit is reported by Wasmi as an instantiation
    // or memory error; Wasmtime (and the spec) call it a trap.
    let segment = match error.kind() {
        ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit { .. }) => {
            Some(TrapKind::TableOutOfBounds)
        }
        ErrorKind::Memory(MemoryError::OutOfBoundsAccess) => Some(TrapKind::MemoryOutOfBounds),
        _ => None,
    };
    if let Some(trap) = segment {
        return HostFailure {
            reason: Reason::Trap,
            trap,
            message: error.to_string(),
        };
    }
    match error.as_trap_code() {
        Some(TrapCode::OutOfFuel) => fuel_exhausted(),
        Some(code) => HostFailure {
            reason: Reason::Trap,
            trap: trap_kind(code),
            message: error.to_string(),
        },
        None => HostFailure {
            reason: Reason::Trap,
            trap: TrapKind::Unknown,
            message: error.to_string(),
        },
    }
}

/// Whether a failed instantiation is the guest's module failing (a trap, a
/// segment that does not fit, memory over the limit: a crash with a dump)
/// rather than imports that cannot be linked.
pub fn instantiation_crashed(error: &Error, state: &StoreState) -> bool {
    error.as_trap_code().is_some()
        || state.limits.memory_limit_hit
        || matches!(
            error.kind(),
            ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit { .. })
                | ErrorKind::Memory(MemoryError::OutOfBoundsAccess)
        )
}

/// Puts fuel in the store for the next stretch of guest code: at least
/// `required` (what Wasmi says its next step needs), `FUEL_SLICE` when the
/// reserve allows. `Ok(false)` when the budget cannot cover `required`, an
/// error when the store's fuel cannot be read or set.
fn refill(store: &mut Store<StoreState>, required: u64) -> Result<bool, String> {
    let in_store = store.get_fuel().map_err(|e| e.to_string())?;
    let reserve = store.data().reserve;
    if in_store.saturating_add(reserve) < required.max(1) {
        return Ok(false);
    }
    if in_store >= required.max(1) {
        return Ok(true);
    }
    let give = reserve.min(FUEL_SLICE.max(required - in_store));
    store.data_mut().reserve -= give;
    store.set_fuel(in_store + give).map_err(|e| e.to_string())?;
    Ok(true)
}

/// The failure of a store whose fuel cannot be read or set: never the
/// guest's doing.
fn fuel_unreadable(message: String) -> HostFailure {
    HostFailure {
        reason: Reason::HostError,
        trap: TrapKind::Unknown,
        message: format!("cannot read the fuel left: {message}"),
    }
}

/// Serves what arrived for the guest's pending Elixir host call (see
/// `host::bridge::serve`).
fn serve(
    store: &mut Store<StoreState>,
    live_instance: Option<wasmi::Instance>,
) -> Result<Served, HostFailure> {
    let Some(pending) = store.data_mut().pending.take() else {
        return Err(HostFailure {
            reason: Reason::HostError,
            trap: TrapKind::HostError,
            message: "the guest waits for no host call".into(),
        });
    };
    let served = bridge::serve(&mut Ctx::of_store(store, live_instance), &pending);
    if let Served::Waiting = served {
        store.data_mut().pending = Some(pending);
    }
    Ok(served)
}

/// Whether the guest is suspended in a sleeping WASI `poll_oneoff`.
fn sleeping(state: &StoreState) -> bool {
    state
        .wasi
        .as_ref()
        .is_some_and(|wasi| wasi.sleeping.is_some())
}

/// A sleeping `poll_oneoff` resumed: still asleep (`Err` with the time
/// left, at most until the deadline), or its errno once the events due are
/// written; past the deadline while asleep, a timeout.
fn wake(
    store: &mut Store<StoreState>,
    instance: Option<wasmi::Instance>,
) -> Result<Result<i32, Duration>, HostFailure> {
    let now = Instant::now();
    let deadline = store.data().deadline;
    let wasi = store.data_mut().wasi();
    let until = wasi.sleeping.as_ref().map_or(now, |sleep| sleep.until);
    if now < until {
        if now < deadline {
            return Ok(Err(until.min(deadline) - now));
        }
        wasi.sleeping = None;
        let message = store
            .data_mut()
            .time_out("poll_oneoff: the deadline passed while the guest slept".into());
        return Err(recorded(store.data(), Stop::Failed(message)));
    }
    let Some(sleep) = wasi.sleeping.take() else {
        return Ok(Ok(0));
    };
    sleep
        .poll
        .finish(&mut Ctx::of_store(store, instance), vec![])
        .map(Ok)
        .map_err(|stop| recorded(store.data(), stop))
}

/// The failure the store recorded when the bridge stopped the guest.
fn recorded(state: &StoreState, stop: Stop) -> HostFailure {
    state.host_failure.clone().unwrap_or_else(|| HostFailure {
        reason: Reason::HostError,
        trap: TrapKind::HostError,
        message: match stop {
            Stop::Failed(message) => message,
            Stop::OutOfFuel => TrapCode::OutOfFuel.to_string(),
        },
    })
}

/// Runs the execution until it finishes, fails, uses up `slice`, or waits.
fn run(live: &mut Live<Wasmi>, execution: &mut Execution, slice: Duration) -> Outcome {
    let started = Instant::now();
    loop {
        let store = &mut live.store;
        let results = &mut execution.results;
        let Some(next) = execution.next.take() else {
            return Outcome::Failed(HostFailure {
                reason: Reason::HostError,
                trap: TrapKind::Unknown,
                message: "no guest execution to resume".into(),
            });
        };
        // A guest waiting for a host function is timed out by `serve`, which
        // names the function.
        let waiting = matches!(next, Next::HostCall(_));
        if !waiting && Instant::now() >= store.data().deadline {
            return Outcome::Failed(timed_out());
        }
        let result = match next {
            Next::Begin(func, params) => match refill(store, 0) {
                Ok(true) => func.call_resumable(&mut *store, &params, results),
                Ok(false) => return Outcome::Failed(fuel_exhausted()),
                Err(message) => return Outcome::Failed(fuel_unreadable(message)),
            },
            Next::OutOfFuel(call) => match refill(store, call.required_fuel()) {
                Ok(true) => call.resume(&mut *store, results),
                Ok(false) => return Outcome::Failed(fuel_exhausted()),
                Err(message) => return Outcome::Failed(fuel_unreadable(message)),
            },
            // The host call the guest is suspended in ends here: recorded
            // here for a replay (`journal::resume`).
            Next::HostCall(call) if sleeping(store.data()) => match wake(store, live.instance) {
                Err(failure) => {
                    let ending = Ending::Failed(failure.message.clone());
                    journal::resume(&mut Ctx::of_store(store, live.instance), &[], ending);
                    return Outcome::Failed(failure);
                }
                Ok(Err(left)) => {
                    execution.next = Some(Next::HostCall(call));
                    return Outcome::Waiting(left);
                }
                Ok(Ok(errno)) => {
                    let ctx = &mut Ctx::of_store(store, live.instance);
                    journal::resume(ctx, &[Value::I32(errno)], Ending::Returned);
                    call.resume(&mut *store, &[Val::I32(errno)], results)
                }
            },
            Next::HostCall(call) => match serve(store, live.instance) {
                Err(failure) => return Outcome::Failed(failure),
                Ok(Served::Reply(values)) => {
                    let ctx = &mut Ctx::of_store(store, live.instance);
                    journal::resume(ctx, &values, Ending::Returned);
                    let values: Vec<Val> = values.iter().map(to_val).collect();
                    call.resume(&mut *store, &values, results)
                }
                Ok(Served::Stopped(stop)) => {
                    let ctx = &mut Ctx::of_store(store, live.instance);
                    journal::resume(ctx, &[], journal::ending_of(&stop));
                    return Outcome::Failed(recorded(store.data(), stop));
                }
                // `serve` fails a core call answered untyped.
                Ok(Served::Saved(_)) => unreachable!("a core call's reply is decoded"),
                Ok(Served::Waiting) => {
                    execution.next = Some(Next::HostCall(call));
                    let left = store
                        .data()
                        .deadline
                        .saturating_duration_since(Instant::now());
                    return Outcome::Waiting(left);
                }
            },
        };
        match result {
            Ok(ResumableCall::Finished) => return Outcome::Finished,
            Ok(ResumableCall::OutOfFuel(call)) => {
                execution.next = Some(Next::OutOfFuel(call));
                if started.elapsed() >= slice {
                    return Outcome::Yielded;
                }
            }
            Ok(ResumableCall::HostTrap(call)) => {
                let state = live.store.data();
                let suspended = state.pending.is_some() || sleeping(state);
                if suspended && state.host_failure.is_none() {
                    // Served at once: the reply cannot be there yet (or the
                    // sleep is not over), so this ends the slice waiting.
                    execution.next = Some(Next::HostCall(call));
                } else {
                    return Outcome::Failed(classify(call.host_error(), state));
                }
            }
            Err(error) => return Outcome::Failed(classify(&error, live.store.data())),
        }
    }
}

/// Starts `execution` on the idle instance and runs its first slice.
pub fn start(
    env: Env,
    slot: &mut Slot<Wasmi>,
    execution: Execution,
    slice: Duration,
) -> MunitionResult<Progress> {
    let live = slot.take_idle()?;
    *slot = Slot::Running(Box::new((live, execution)));
    advance(env, slot, slice)
}

/// Runs one slice of the slot's execution and reports where it stands.
pub fn advance(env: Env, slot: &mut Slot<Wasmi>, slice: Duration) -> MunitionResult<Progress> {
    let Slot::Running(running) = std::mem::replace(slot, Slot::Gone) else {
        return Err(MunitionError::InvalidState(
            "no guest execution to resume".into(),
        ));
    };
    let (mut live, mut execution) = *running;
    let started = Instant::now();
    let outcome = {
        let _bridge = BridgeEnv::enter(env, live.store.data().bridge.clone());
        run(&mut live, &mut execution, slice)
    };
    live.elapsed += started.elapsed();
    let progress = match outcome {
        Outcome::Yielded => {
            *slot = Slot::Running(Box::new((live, execution)));
            return Ok(Progress::Yielded);
        }
        Outcome::Waiting(left) => {
            *slot = Slot::Running(Box::new((live, execution)));
            return Ok(Progress::waiting(left));
        }
        // `proc_exit`: the guest ended itself, a result whatever the code.
        Outcome::Failed(_) if live.store.data().exit_code.is_some() => {
            let code = live.store.data().exit_code.unwrap_or_default();
            Progress::Exited(code, CallMeta::of(&live)?)
        }
        Outcome::Failed(failure) => Progress::Crashed(live.fail(failure, None)),
        Outcome::Finished => match execution.goal {
            Goal::Start => Progress::Ready,
            Goal::Call => {
                let values = execution.results.iter().map(from_val).collect();
                Progress::Returned(Returned::Values(values), CallMeta::of(&live)?)
            }
        },
    };
    *slot = Slot::Idle(Box::new(live));
    Ok(progress)
}
