//! A live instance as Elixir holds it: a fresh store (fuel, deadline, memory
//! limit) with one instance of a compiled module in it, behind a resource.
//! Instances are never reused; each `fire/4` makes one and releases it.
//!
//! The NIFs here make an instance, run its next slice, and release it; calls
//! (`call`), memory access (`memory`) and forensics (`capture`) take the same
//! handle.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::Instance;

use crate::atoms;
use crate::bridge::HostBridge;
use crate::call::{self, CallArgs};
use crate::engine::{FIRST_SLICE, SLICE};
use crate::error::{MunitionError, MunitionResult};
use crate::execution::{advance, Live, Progress, Slot, Step};
use crate::link::{resolve_imports, Link};
use crate::module::ModuleRef;
use crate::store::new_store;
use crate::term::OrNil;
use crate::wakeup::Wakeup;
use crate::wasi::{WasiConfig, WasiRun};

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
    /// `{function, params, release}` to call as soon as the instance is
    /// ready, in the same guest execution (one trip instead of two for most
    /// calls), or `nil`. With `release`, a call that returns within the
    /// first slice has its store released at once (unless its memory is
    /// large): nothing of it is needed after.
    pub call: OrNil<(&'a str, Vec<Term<'a>>, bool)>,
}

/// What `instance_new/2` hands out: the instance, or `:released` when its
/// store is already gone (see `InstanceConfig::call`).
pub enum Handle {
    Instance(ResourceArc<InstanceRef>),
    Released,
}

impl Encoder for Handle {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Handle::Instance(instance) => instance.encode(env),
            Handle::Released => atoms::released().encode(env),
        }
    }
}

/// Refuses before any guest code runs what can be refused: memories whose
/// initial sizes are already over the limit, which bounds all of them
/// together.
pub fn preflight(
    memories: &[munition_core::scan::MemoryInfo],
    max_memory: u64,
) -> MunitionResult<()> {
    let initial = |memory: &munition_core::scan::MemoryInfo| {
        memory.min_pages.saturating_mul(memory.page_size)
    };
    let total = memories
        .iter()
        .fold(0u64, |total, memory| total.saturating_add(initial(memory)));
    if total <= max_memory {
        return Ok(());
    }
    Err(MunitionError::MemoryLimit(match memories {
        [memory] => format!(
            "memory 0 starts at {total} bytes ({} pages), over max_memory of {max_memory} bytes",
            memory.min_pages
        ),
        _ => format!(
            "the module's {} memories start at {total} bytes together ({}), over max_memory of {max_memory} bytes",
            memories.len(),
            memories
                .iter()
                .enumerate()
                .map(|(index, memory)| format!("memory {index}: {} pages", memory.min_pages))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }))
}

/// Instantiates a module in a fresh store and runs the first slice of its
/// start function, if any, under the call's fuel, deadline and memory limit.
/// Returns the handle with `:ready`, `{:crashed, reason}`, `{:exited, code,
/// meta}` (`proc_exit` in the start function), `:yielded` or `{:waiting,
/// ms}`. On a normal scheduler: the first slice is short (`FIRST_SLICE`);
/// `instance_resume/1` continues on dirty ones.
///
/// With a `call` in the config, the call follows the instantiation in the
/// same guest execution (slices continue through both) and the progress is
/// the call's, as `instance_call/3` would return it. A call that cannot
/// start (no such export, bad arguments) leaves the instance `:ready`: the
/// caller's own `instance_call/3` then reports why, and no guest code ran
/// twice. A call that returned within the first slice, when the config says
/// to release it, comes back with `:released` for the handle: the store is
/// gone already (unless its memory is large, see `instance_cleanup/1`), and
/// neither a resource nor a cleanup was paid for.
#[rustler::nif]
fn instance_new<'a>(
    env: Env<'a>,
    module: ResourceArc<ModuleRef>,
    config: InstanceConfig<'a>,
) -> MunitionResult<(Handle, Progress)> {
    let compiled = module.0.clone();
    preflight(&compiled.info.memories, config.max_memory)?;
    let host_pid = config.host_pid.0;
    let bridge = host_pid.map(|driver| Arc::new(HostBridge::new(driver)));
    // Only a driver of its own may be messaged (see `wakeup`).
    let wakeup = Wakeup::new(host_pid);
    let wasi = config
        .wasi
        .0
        .as_ref()
        .map(|wasi| WasiRun::new(wasi, config.fuel, wakeup.clone()))
        .transpose()?;
    let mut store = new_store(
        config.fuel,
        Duration::from_millis(config.timeout),
        config.max_memory,
        // Only short of 64-bit: a limit over the address space is no limit.
        usize::try_from(config.log_limit).unwrap_or(usize::MAX),
        wasi,
    )?;
    let imports = resolve_imports(&mut store, &compiled, &config.links, bridge.clone())?;

    let mut slot = Slot::Idle(Live {
        store,
        instance: None,
        module: compiled,
        bridge,
        wakeup,
        fuel_given: config.fuel,
        elapsed: Duration::ZERO,
        failure: None,
    });
    // The call, when there is one and it can start, is checked against the
    // module's exports now, so that instantiating and calling are one guest
    // execution: one future, one slice loop, no second trip through the
    // slot. One that cannot start (no such export, bad arguments) is left
    // out: the instance comes back `:ready` and the caller's own call says
    // why.
    let (call, release) = match &config.call.0 {
        Some((function, params, release)) => match call::convert(&module.0, function, params) {
            Ok(args) => (Some(args), *release),
            Err(_) => (None, false),
        },
        None => (None, false),
    };
    // Imports were checked by the Elixir side, so what fails here is the
    // guest (its start function, or a segment that does not fit) or, should
    // that check be bypassed, Wasmtime's own type check of the imports.
    slot.start(|mut live| async move {
        let module = live.module.module.clone();
        let instance = match Instance::new_async(&mut live.store, &module, &imports).await {
            Ok(instance) => instance,
            Err(error) => return (live, Err(error)),
        };
        let Some((args, func)) = call.and_then(|args| {
            let func = args.func(&mut live.store, instance)?;
            Some((args, func))
        }) else {
            return (live, Ok(Step::Instantiated(instance)));
        };
        live.instance = Some(instance);
        let CallArgs {
            params,
            mut results,
            ..
        } = args;
        let result = func
            .call_async(&mut live.store, &params, &mut results)
            .await;
        (live, result.map(|()| Step::Returned(results)))
    })?;
    let progress = advance(env, &mut slot, FIRST_SLICE)?;
    if release && matches!(progress, Progress::Returned(..)) && !holds_large_memory(&slot) {
        drop(slot);
        return Ok((Handle::Released, progress));
    }
    let instance = ResourceArc::new(InstanceRef {
        slot: Mutex::new(slot),
    });
    Ok((Handle::Instance(instance), progress))
}

/// Runs the next slice of a guest execution that yielded.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_resume(env: Env, instance: ResourceArc<InstanceRef>) -> MunitionResult<Progress> {
    advance(env, &mut instance.lock(), SLICE)
}

/// Memory up to which a store is released on a normal scheduler. Releasing
/// costs in proportion to the pages the guest touched, with either engine:
/// about 8 ms for 64 MiB here to reset Wasmtime's pool slot, 5–7.6 ms to
/// unmap Wasmi's memory; too long for a normal scheduler.
const INLINE_RELEASE_LIMIT: usize = 4 * 1024 * 1024;

/// Whether a store whose memories total `memory_total` bytes (as its limiter
/// counted them, exported or not) may be released on a normal scheduler.
/// Both engines' cleanups and their release of a call that returned ask.
pub fn releases_inline(memory_total: usize) -> bool {
    memory_total <= INLINE_RELEASE_LIMIT
}

/// Drops the store now, cancelling a guest that is still mid-execution; later
/// use of the handle is `{:error, {:invalid_state, _}}`. Returns `:ok`, or
/// `:large` without releasing a store whose memory is over
/// `INLINE_RELEASE_LIMIT`: release that one with `instance_cleanup_dirty/1`.
#[rustler::nif]
fn instance_cleanup(instance: ResourceArc<InstanceRef>) -> Atom {
    let mut slot = instance.lock();
    if holds_large_memory(&slot) {
        return atoms::large();
    }
    drop(std::mem::replace(&mut *slot, Slot::Gone));
    atoms::ok()
}

/// Whether releasing the slot's store would take too long for a normal
/// scheduler: all the guest's memories, exported or not, as its limiter
/// counted them, over `INLINE_RELEASE_LIMIT`. A store mid-execution is inside
/// its future, where its memory cannot be read: taken as large (only an
/// abandoned guest is cleaned up running, rarely; a dirty hop costs it
/// nothing that matters).
fn holds_large_memory(slot: &Slot) -> bool {
    match slot {
        Slot::Idle(live) => !releases_inline(live.store.data().limits.memory_total),
        Slot::Running { .. } => true,
        Slot::Gone => false,
    }
}

/// `instance_cleanup/1` for stores with large memories.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_cleanup_dirty(instance: ResourceArc<InstanceRef>) -> Atom {
    drop(std::mem::replace(&mut *instance.lock(), Slot::Gone));
    atoms::ok()
}
