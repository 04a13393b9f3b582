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
//! (`{:waiting, ms}`, see `host`). So a guest never runs more than one fuel
//! slice past its deadline, and never holds a scheduler for more than a
//! slice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustler::Env;
use wasmi::errors::{ErrorKind, InstantiationError, MemoryError};
use wasmi::{
    Error, Func, Instance, ResumableCall, ResumableCallHostTrap, ResumableCallOutOfFuel, Store,
    TrapCode, Val,
};

use super::engine::FUEL_SLICE;
use super::host::{serve, Answer};
use super::module::WasmiModule;
use super::store::{fuel_left, WasmiState};
use super::value::to_shared;
use crate::error::{MunitionError, MunitionResult};
use crate::execution::{CallMeta, Progress};
use crate::trap::{HostFailure, Reason, TrapKind};

/// An instance between executions: its store is here to read.
pub struct Live {
    pub store: Store<WasmiState>,
    pub instance: Option<Instance>,
    pub module: Arc<WasmiModule>,
    pub fuel_given: u64,
    pub elapsed: Duration,
    /// Why the last execution failed, for the capture.
    pub failure: Option<HostFailure>,
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

pub enum Slot {
    Idle(Box<Live>),
    Running(Box<(Live, Execution)>),
    /// Cleaned up: the store was released at once.
    Gone,
}

impl Slot {
    /// The idle instance, or why it cannot be used now.
    pub fn idle(&mut self) -> MunitionResult<&mut Live> {
        match self {
            Slot::Idle(live) => Ok(&mut **live),
            Slot::Running(_) => Err(MunitionError::InvalidState(
                "the guest is still running".into(),
            )),
            Slot::Gone => Err(MunitionError::InvalidState(
                "instance was cleaned up".into(),
            )),
        }
    }
}

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
pub fn classify(error: &Error, state: &WasmiState) -> HostFailure {
    if let Some(failure) = &state.host_failure {
        return failure.clone();
    }
    if state.limits.limits.memory_limit_hit {
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
pub fn instantiation_crashed(error: &Error, state: &WasmiState) -> bool {
    error.as_trap_code().is_some()
        || state.limits.limits.memory_limit_hit
        || matches!(
            error.kind(),
            ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit { .. })
                | ErrorKind::Memory(MemoryError::OutOfBoundsAccess)
        )
}

/// Puts fuel in the store for the next stretch of guest code: at least
/// `required` (what Wasmi says its next step needs), `FUEL_SLICE` when the
/// reserve allows. `false` when the budget cannot cover `required`.
fn refill(store: &mut Store<WasmiState>, required: u64) -> bool {
    let in_store = store.get_fuel().unwrap_or(0);
    let reserve = store.data().reserve;
    if in_store.saturating_add(reserve) < required.max(1) {
        return false;
    }
    if in_store >= required.max(1) {
        return true;
    }
    let give = reserve.min(FUEL_SLICE.max(required - in_store));
    store.data_mut().reserve -= give;
    store.set_fuel(in_store + give).is_ok()
}

/// Runs the execution until it finishes, fails, uses up `slice`, or waits.
fn run(env: Env, live: &mut Live, execution: &mut Execution, slice: Duration) -> Outcome {
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
            Next::Begin(func, params) => {
                if !refill(store, 0) {
                    return Outcome::Failed(fuel_exhausted());
                }
                func.call_resumable(&mut *store, &params, results)
            }
            Next::OutOfFuel(call) => {
                if !refill(store, call.required_fuel()) {
                    return Outcome::Failed(fuel_exhausted());
                }
                call.resume(&mut *store, results)
            }
            Next::HostCall(call) => match serve(env, store, live.instance) {
                Answer::Values(values) => call.resume(&mut *store, &values, results),
                Answer::Failed(failure) => return Outcome::Failed(failure),
                Answer::Waiting => {
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
                if state.pending.is_some() && state.host_failure.is_none() {
                    // Served at once: the reply cannot be there yet, so this
                    // ends the slice waiting.
                    execution.next = Some(Next::HostCall(call));
                } else {
                    return Outcome::Failed(classify(call.host_error(), state));
                }
            }
            Err(error) => return Outcome::Failed(classify(&error, live.store.data())),
        }
    }
}

/// Clears the NIF environment of the guest's host calls when the NIF call
/// that set it returns.
struct EnvGuard<'a>(&'a std::sync::atomic::AtomicPtr<rustler::sys::ErlNifEnv>);

impl Drop for EnvGuard<'_> {
    fn drop(&mut self) {
        self.0.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// The metadata of an execution that returned.
fn call_meta(live: &Live) -> CallMeta {
    let fuel_remaining = fuel_left(&live.store);
    CallMeta {
        fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
        fuel_remaining,
        execution_time_us: live.elapsed.as_micros() as u64,
        log: live.store.data().log.to_terms(),
        output: None,
    }
}

/// Starts `execution` on the idle instance and runs its first slice.
pub fn start(
    env: Env,
    slot: &mut Slot,
    execution: Execution,
    slice: Duration,
) -> MunitionResult<Progress> {
    slot.idle()?;
    let Slot::Idle(live) = std::mem::replace(slot, Slot::Gone) else {
        unreachable!("checked by idle() above")
    };
    *slot = Slot::Running(Box::new((*live, execution)));
    advance(env, slot, slice)
}

/// Runs one slice of the slot's execution and reports where it stands.
pub fn advance(env: Env, slot: &mut Slot, slice: Duration) -> MunitionResult<Progress> {
    let Slot::Running(running) = std::mem::replace(slot, Slot::Gone) else {
        return Err(MunitionError::InvalidState(
            "no guest execution to resume".into(),
        ));
    };
    let (mut live, mut execution) = *running;
    let started = Instant::now();
    let outcome = {
        let env_slot = live.store.data().env.clone();
        env_slot.store(env.as_c_arg(), Ordering::Release);
        let _guard = EnvGuard(&env_slot);
        run(env, &mut live, &mut execution, slice)
    };
    live.elapsed += started.elapsed();
    let progress = match outcome {
        Outcome::Yielded => {
            *slot = Slot::Running(Box::new((live, execution)));
            return Ok(Progress::Yielded);
        }
        Outcome::Waiting(left) => {
            *slot = Slot::Running(Box::new((live, execution)));
            // Rounded up, so the driver does not wake just before the deadline.
            return Ok(Progress::Waiting(left.as_millis() as u64 + 1));
        }
        Outcome::Failed(failure) => {
            let reason = failure.reason;
            live.failure = Some(failure);
            Progress::Crashed(reason)
        }
        Outcome::Finished => match execution.goal {
            Goal::Start => Progress::Ready,
            Goal::Call => {
                let values = execution.results.iter().map(to_shared).collect();
                Progress::Returned(values, call_meta(&live))
            }
        },
    };
    *slot = Slot::Idle(Box::new(live));
    Ok(progress)
}
