//! A live instance as Elixir holds it, for every engine: a fresh store
//! (fuel, deadline, memory limit) with one instance of a compiled module in
//! it, behind a resource, and the state machine of its guest executions
//! (`Slot`: idle between executions, running during one, gone once
//! released). Instances are never reused; each `fire/4` makes one and
//! releases it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use munition_core::guest::releases_inline;
use rustler::{Encoder, Env, LocalPid, Resource, ResourceArc, Term};

use crate::atoms;
use crate::engine::call::AtOnce;
use crate::engine::link::Link;
use crate::engine::module::Compiled;
use crate::engine::reaper;
use crate::engine::settings::MAX_TABLE_ELEMENTS;
use crate::engine::types::EngineTypes;
use crate::host::bridge::HostBridge;
use crate::host::journal::Journal;
use crate::host::state::StoreConfig;
use crate::host::wakeup::Wakeup;
use crate::host::wasi::{WasiConfig, WasiOutput, WasiRun};
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::{OrNil, OwnedBytes};
use crate::vocabulary::trap::{HostFailure, Reason};
use crate::vocabulary::value::{Value, WasmValue};

/// What `instance_new/2` is given: the tuple `Munition.Instance.State.to_native/1`
/// builds, fields in this order. A tuple rather than the State map: decoding
/// eight fields by key from an eighteen-key map was a tenth of a pooled call's
/// native time.
#[derive(rustler::NifTuple)]
#[rustler(decode)]
pub struct InstanceConfig<'a> {
    pub fuel: u64,
    /// Milliseconds from now until the guest is stopped.
    pub timeout: u64,
    pub max_memory: u64,
    pub links: Vec<Link>,
    pub log_limit: u64,
    /// The process that drives the guest and serves its Elixir host functions
    /// and wake-ups, when the call has a driver of its own (it must be the
    /// one making the `instance_*` calls); `nil` when the caller drives it,
    /// whose mailbox is not Munition's.
    pub host_pid: OrNil<LocalPid>,
    /// The call's WASI configuration (`nil`: the call has none, and no WASI
    /// state is made).
    pub wasi: OrNil<WasiConfig>,
    /// `{function, args, release, alloc, binary_result}` to call as soon
    /// as the instance is ready, in the same guest execution (one trip
    /// instead of two for most calls), or `nil` (see `call::AtOnce`). With
    /// `release`, a call that returns within the first slice has its store
    /// released at once (unless its memory is large): nothing of it is
    /// needed after.
    pub call: OrNil<AtOnce<'a>>,
    /// What the store does with its host calls: `{:record, limit}` keeps a
    /// replay log of at most `limit` bytes, `{:replay, log, stop_at}`
    /// answers them from `log`, stopping the guest as at its deadline once
    /// it has consumed `stop_at` fuel (`nil`: never) (see `host::journal`).
    pub journal: JournalConfig,
}

/// The `journal` of an `InstanceConfig`.
pub enum JournalConfig {
    Record(usize),
    Replay(Vec<u8>, Option<u64>),
}

impl<'a> rustler::Decoder<'a> for JournalConfig {
    fn decode(term: Term<'a>) -> rustler::NifResult<Self> {
        let elements = rustler::types::tuple::get_tuple(term)?;
        let tag: rustler::Atom = elements.first().ok_or(rustler::Error::BadArg)?.decode()?;
        match elements[..] {
            [_, limit] if tag == atoms::record() => Ok(JournalConfig::Record(
                usize::try_from(limit.decode::<u64>()?).unwrap_or(usize::MAX),
            )),
            [_, log, stop_at] if tag == atoms::replay() => {
                let log: rustler::Binary = log.decode()?;
                let stop_at: OrNil<u64> = stop_at.decode()?;
                Ok(JournalConfig::Replay(log.as_slice().to_vec(), stop_at.0))
            }
            _ => Err(rustler::Error::BadArg),
        }
    }
}

impl JournalConfig {
    fn journal(&self, fuel: u64) -> Journal {
        match self {
            JournalConfig::Record(limit) => Journal::recording(*limit, fuel),
            JournalConfig::Replay(log, stop_at) => Journal::replaying(log.clone(), *stop_at, fuel),
        }
    }
}

impl InstanceConfig<'_> {
    /// What the store of this call is given, with `wasi` its WASI state.
    pub fn store(&self, wasi: Option<WasiRun>) -> StoreConfig {
        let host_pid = self.host_pid.0;
        StoreConfig {
            timeout: Duration::from_millis(self.timeout),
            max_memory: self.max_memory,
            max_table_elements: MAX_TABLE_ELEMENTS,
            // Only short of 64-bit: a limit over the address space is no limit.
            log_limit: usize::try_from(self.log_limit).unwrap_or(usize::MAX),
            bridge: host_pid.map(|driver| Arc::new(HostBridge::new(driver))),
            // Only a driver of its own may be messaged (see `wakeup`).
            wakeup: Wakeup::new(host_pid),
            wasi,
            instances: 1,
            journal: self.journal.journal(self.fuel),
        }
    }
}

/// An instance between guest executions: its store is here to read.
pub struct Live<E: EngineTypes> {
    pub store: E::Store,
    pub instance: Option<E::Instance>,
    pub module: Arc<Compiled<E>>,
    pub fuel_given: u64,
    pub elapsed: Duration,
    /// Why the last execution failed, for the capture.
    pub failure: Option<HostFailure>,
    /// What the engine kept of that failure besides (a backtrace, a
    /// coredump).
    pub evidence: Option<E::Evidence>,
}

impl<E: EngineTypes> Live<E> {
    /// The instance, once instantiating finished; a call or a snapshot
    /// before that is the caller's misuse of the handle.
    pub fn instantiated(&self) -> MunitionResult<&E::Instance> {
        self.instance.as_ref().ok_or_else(|| {
            MunitionError::InvalidState("instance did not finish instantiating".into())
        })
    }

    pub fn new(store: E::Store, module: Arc<Compiled<E>>, fuel_given: u64) -> Self {
        Live {
            store,
            instance: None,
            module,
            fuel_given,
            elapsed: Duration::ZERO,
            failure: None,
            evidence: None,
        }
    }

    /// Records why the guest failed and returns the reason.
    pub fn fail(&mut self, failure: HostFailure, evidence: Option<E::Evidence>) -> Reason {
        let reason = failure.reason;
        self.failure = Some(failure);
        self.evidence = evidence;
        reason
    }
}

pub enum Slot<E: EngineTypes> {
    Idle(Box<Live<E>>),
    Running(E::Running),
    /// Cleaned up: the store and its memory were released at once instead of
    /// when the garbage collector got to the handle.
    Gone,
}

impl<E: EngineTypes> Slot<E> {
    /// The idle instance, or why it cannot be used now.
    pub fn idle(&mut self) -> MunitionResult<&mut Live<E>> {
        match self {
            Slot::Idle(live) => Ok(live),
            Slot::Running(_) => Err(MunitionError::InvalidState(
                "the guest is still running".into(),
            )),
            Slot::Gone => Err(MunitionError::InvalidState(
                "instance was cleaned up".into(),
            )),
        }
    }

    /// Takes the idle instance out to start an execution on it (the slot is
    /// `Gone` until the engine puts the execution back).
    pub fn take_idle(&mut self) -> MunitionResult<Live<E>> {
        self.idle()?;
        match std::mem::replace(self, Slot::Gone) {
            Slot::Idle(live) => Ok(*live),
            _ => unreachable!("checked by idle() above"),
        }
    }

    /// Whether releasing the store would take too long for a normal
    /// scheduler: all the guest's memories, exported or not, as its limiter
    /// counted them, over `munition_core::guest::INLINE_RELEASE_LIMIT`. A
    /// store whose memory cannot be read mid-execution is taken as large
    /// (only an abandoned guest is cleaned up running, rarely; a dirty hop
    /// costs it nothing that matters).
    pub fn holds_large_memory(&self) -> bool {
        let total = match self {
            Slot::Idle(live) => Some(E::state(&live.store).limits.memory_total),
            Slot::Running(running) => E::running_memory_total(running),
            Slot::Gone => return false,
        };
        !total.is_some_and(releases_inline)
    }
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
    pub fn of<E: EngineTypes>(live: &Live<E>) -> MunitionResult<CallMeta> {
        let fuel_remaining = E::fuel_remaining(&live.store)?;
        let state = E::state(&live.store);
        Ok(CallMeta {
            fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
            fuel_remaining,
            execution_time_us: live.elapsed.as_micros() as u64,
            log: state.log_terms(),
            output: state.output(),
        })
    }
}

/// What a call returned: core values, or values only their engine can
/// make terms of (a component's WIT values, see `engine::component`).
pub enum Returned {
    Values(Vec<Value>),
    /// The bytes a binary result named, read by the engine (`call::BinaryAbi`).
    Binary(Vec<u8>),
    Terms(Box<dyn ToTerms>),
}

/// Values an engine makes terms of itself.
pub trait ToTerms: Send + std::panic::RefUnwindSafe {
    fn to_terms<'a>(&self, env: Env<'a>) -> Vec<Term<'a>>;
}

/// Where a guest execution stands after a slice: finished one way or the
/// other, or yielded (call `instance_resume/1` for the next slice).
pub enum Progress {
    Ready,
    Returned(Returned, CallMeta),
    Crashed(Reason),
    /// The guest called WASI's `proc_exit`: `{:exited, code, meta}`.
    Exited(u32, CallMeta),
    Yielded,
    /// Waiting for something outside the guest: resume on `:munition_wake`,
    /// or after this many milliseconds (its wake time or its deadline) at
    /// the latest.
    Waiting(u64),
}

impl Progress {
    /// Waiting until `left` has passed at most: rounded up, so the driver
    /// does not wake just before the deadline.
    pub fn waiting(left: Duration) -> Progress {
        Progress::Waiting(left.as_millis() as u64 + 1)
    }
}

impl Encoder for Progress {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Progress::Ready => atoms::ready().encode(env),
            Progress::Returned(Returned::Values(values), meta) => {
                let values: Vec<WasmValue> = values.iter().copied().map(WasmValue).collect();
                (atoms::returned(), values, meta).encode(env)
            }
            Progress::Returned(Returned::Binary(bytes), meta) => {
                let bytes = OwnedBytes(bytes.clone());
                (atoms::returned(), (atoms::binary(), bytes), meta).encode(env)
            }
            Progress::Returned(Returned::Terms(values), meta) => {
                (atoms::returned(), values.to_terms(env), meta).encode(env)
            }
            Progress::Crashed(reason) => (atoms::crashed(), reason.atom()).encode(env),
            Progress::Exited(code, meta) => (atoms::exited(), *code, meta).encode(env),
            Progress::Yielded => atoms::yielded().encode(env),
            Progress::Waiting(ms) => (atoms::waiting(), *ms).encode(env),
        }
    }
}

/// An instance as Elixir holds it. One resource type per engine.
pub struct InstanceRef<E: EngineTypes> {
    slot: Mutex<Slot<E>>,
    /// The call made with the instantiation asked for its store to go as
    /// soon as it returns (see `InstanceConfig::call`): a later slice that
    /// sees it return, on a dirty scheduler, releases the store there.
    release_on_return: bool,
}

impl<E: EngineTypes> Resource for InstanceRef<E> {}

// The slot sits behind a mutex whose poisoning we tolerate on purpose: a panic
// mid-call leaves at worst a store that fails its next use.
impl<E: EngineTypes> std::panic::RefUnwindSafe for InstanceRef<E> {}

impl<E: EngineTypes> InstanceRef<E> {
    pub fn new(slot: Slot<E>, release_on_return: bool) -> Self {
        InstanceRef {
            slot: Mutex::new(slot),
            release_on_return,
        }
    }

    pub fn releases_on_return(&self) -> bool {
        self.release_on_return
    }

    pub fn lock(&self) -> MutexGuard<'_, Slot<E>> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handle garbage collected without a cleanup is dropped by whichever
/// thread collects it, a normal scheduler as often as not (the caller's
/// process died, or let go of the handle), and a resource destructor has no
/// process to schedule a dirty NIF from: a store too large to release there
/// goes to the reaper's thread instead (see `reaper`).
impl<E: EngineTypes> Drop for InstanceRef<E> {
    fn drop(&mut self) {
        let slot = self
            .slot
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.holds_large_memory() {
            reaper::release(std::mem::replace(slot, Slot::Gone));
        }
    }
}

/// What `instance_new/2` hands out: the instance, or `:released` when its
/// store is already gone (see `InstanceConfig::call`).
pub enum Handle<E: EngineTypes> {
    Instance(ResourceArc<InstanceRef<E>>),
    Released,
}

impl<E: EngineTypes> Encoder for Handle<E> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Handle::Instance(instance) => instance.encode(env),
            Handle::Released => atoms::released().encode(env),
        }
    }
}
