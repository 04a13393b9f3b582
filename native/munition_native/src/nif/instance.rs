//! The NIFs on live instances, for each engine: make one (and, in the same
//! step, call it), call an export, run the next slice, release it, and
//! count the stores alive. Written once over the seam.

use munition_core::guest::preflight;
use rustler::{Atom, Env, ResourceArc, Term};

use crate::atoms;
use crate::engine::component::Component;
use crate::engine::instance::{Handle, InstanceConfig, InstanceRef, Progress, Returned, Slot};
use crate::engine::module::ModuleRef;
use crate::engine::wasmi::Wasmi;
use crate::engine::wasmtime::Wasmtime;
use crate::engine::{give_way, reaper, Engine, SLICE};
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// Makes the instance and runs its first slice. `dirty`: this runs on a
/// dirty scheduler, where a store with a large memory may be released too.
fn new<'a, E: Engine>(
    env: Env<'a>,
    module: &ModuleRef<E>,
    config: InstanceConfig<'a>,
    dirty: bool,
) -> MunitionResult<(Handle<E>, Progress)> {
    let compiled = module.0.clone();
    preflight(&compiled.info.memories, config.max_memory).map_err(MunitionError::MemoryLimit)?;
    // The call, when there is one and it can start, is checked against the
    // module's exports now, so that instantiating and calling are one step.
    // One that cannot start (no such export, bad arguments) is left out: the
    // instance comes back `:ready` and the caller's own call says why.
    let (call, release, binary_result) = match &config.call.0 {
        Some(at_once) => match E::convert_at_once(&compiled, at_once) {
            Ok(call) => (Some(call), at_once.release, at_once.binary_result),
            Err(_) => (None, false, false),
        },
        None => (None, false, false),
    };
    let (slot, progress) = E::instantiate(env, compiled, &config, call)?;
    // A binary result the engine did not read itself (a large one, or an
    // engine that does not, see `Engine::convert_at_once`) is read after:
    // its store stays.
    let returned = match &progress {
        Progress::Returned(Returned::Binary(_), _) => true,
        Progress::Returned(_, _) => !binary_result,
        _ => false,
    };
    if release && returned && (dirty || !slot.holds_large_memory()) {
        drop(slot);
        return Ok((Handle::Released, progress));
    }
    Ok((
        Handle::Instance(ResourceArc::new(InstanceRef::new(
            slot,
            release && !binary_result,
        ))),
        progress,
    ))
}

/// Instantiates a module in a fresh store and runs the first slice of
/// its start function, if any, under the call's fuel, deadline and
/// memory limit. Returns the handle with `:ready`, `{:crashed, reason}`,
/// `{:exited, code, meta}` (`proc_exit` in the start function),
/// `:yielded` or `{:waiting, ms}`. On a normal scheduler: the first
/// slice is short (`FIRST_SLICE`); `instance_resume/1` continues on
/// dirty ones. Wasmi refuses a WASI configuration by name.
///
/// With a `call` in the config, the call follows the instantiation in
/// the same step and the progress is the call's, as `instance_call/3`
/// would return it. A call that cannot start (no such export, bad
/// arguments) leaves the instance `:ready`: the caller's own
/// `instance_call/3` then reports why, and no guest code ran twice. A
/// call that returned within the first slice, when the config says to
/// release it, comes back with `:released` for the handle: the store is
/// gone already (unless its memory is large, see `instance_cleanup/1`),
/// and neither a resource nor a cleanup was paid for.
#[rustler::nif]
fn instance_new<'a>(
    env: Env<'a>,
    module: ResourceArc<ModuleRef<Wasmtime>>,
    config: InstanceConfig<'a>,
) -> MunitionResult<(Handle<Wasmtime>, Progress)> {
    new(env, &module, config, false)
}

/// A component's instance is made on a dirty scheduler: a slice ends only
/// at a fuel yield, and instantiating a component burns almost none (a
/// componentize-py plugin's took 0.6-1.1 ms of a normal scheduler), nor
/// does the canonical ABI's copying of a call's values. Being there, its
/// first slice is a whole `SLICE` (see `Component::instantiate`), and a
/// call that returned within it is released there, however large its
/// memory: one trip to a dirty scheduler instead of three (JavaScript
/// plugins hold more than the inline release limit).
#[rustler::nif(schedule = "DirtyCpu")]
fn component_instance_new<'a>(
    env: Env<'a>,
    module: ResourceArc<ModuleRef<Component>>,
    config: InstanceConfig<'a>,
) -> MunitionResult<(Handle<Component>, Progress)> {
    let made = new(env, &module, config, true)?;
    give_way::after_slice(&made.1);
    Ok(made)
}

#[rustler::nif]
fn wasmi_instance_new<'a>(
    env: Env<'a>,
    module: ResourceArc<ModuleRef<Wasmi>>,
    config: InstanceConfig<'a>,
) -> MunitionResult<(Handle<Wasmi>, Progress)> {
    new(env, &module, config, false)
}
fn call<E: Engine>(
    env: Env,
    instance: &InstanceRef<E>,
    function: &str,
    params: &[Term],
) -> MunitionResult<Progress> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    live.instantiated()?;
    let call = E::convert(&live.module, function, params)?;
    E::call(env, &mut slot, call)
}

/// Calls `function` with `params` and runs the first slice of it.
/// Argument errors come back as `{:error, {:bad_args, _}}` before any
/// guest code runs.
#[rustler::nif]
fn instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmtime>>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    call(env, &instance, &function, &params)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn component_instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Component>>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    let progress = call(env, &instance, &function, &params)?;
    give_way::after_slice(&progress);
    Ok(progress)
}

#[rustler::nif]
fn wasmi_instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmi>>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    call(env, &instance, &function, &params)
}
/// Runs the next slice of a guest execution that yielded or waited, on a
/// dirty scheduler. A call made with its instantiation that returns in
/// it has its store released here when it asked to be (whatever its
/// memory: this is a dirty scheduler), so its cleanup costs no trip. A
/// guest still running lets the VM's other threads have the core first
/// when the machine is oversubscribed (`engine::give_way`).
fn resume<E: Engine>(env: Env, instance: &InstanceRef<E>) -> MunitionResult<Progress> {
    let progress = {
        let mut slot = instance.lock();
        let progress = E::resume(env, &mut slot, SLICE)?;
        if instance.releases_on_return() && matches!(progress, Progress::Returned(..)) {
            drop(std::mem::replace(&mut *slot, Slot::Gone));
        }
        progress
    };
    give_way::after_slice(&progress);
    Ok(progress)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn instance_resume(
    env: Env,
    instance: ResourceArc<InstanceRef<Wasmtime>>,
) -> MunitionResult<Progress> {
    resume(env, &instance)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn component_instance_resume(
    env: Env,
    instance: ResourceArc<InstanceRef<Component>>,
) -> MunitionResult<Progress> {
    resume(env, &instance)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_resume(
    env: Env,
    instance: ResourceArc<InstanceRef<Wasmi>>,
) -> MunitionResult<Progress> {
    resume(env, &instance)
}

/// Drops the store now, cancelling a guest that is still mid-execution;
/// later use of the handle is `{:error, {:invalid_state, _}}`. `:ok`, or
/// `:large` without releasing a store whose memory is too large to release
/// on a normal scheduler: release that one with the dirty cleanup.
fn cleanup<E: Engine>(instance: &InstanceRef<E>) -> Atom {
    let mut slot = instance.lock();
    if slot.holds_large_memory() {
        return atoms::large();
    }
    drop(std::mem::replace(&mut *slot, Slot::Gone));
    atoms::ok()
}

fn cleanup_dirty<E: Engine>(instance: &InstanceRef<E>) -> Atom {
    drop(std::mem::replace(&mut *instance.lock(), Slot::Gone));
    atoms::ok()
}

per_engine! {
    #[rustler::nif]
    fn [instance_cleanup, wasmi_instance_cleanup, component_instance_cleanup](instance: ResourceArc<InstanceRef<E>>) -> Atom {
        cleanup(&instance)
    }
}

per_engine! {
    /// The cleanup of a store with a large memory, on a dirty scheduler.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [instance_cleanup_dirty, wasmi_instance_cleanup_dirty, component_instance_cleanup_dirty](
        instance: ResourceArc<InstanceRef<E>>,
    ) -> Atom {
        cleanup_dirty(&instance)
    }
}

per_engine! {
    /// Number of the engine's stores currently alive.
    #[rustler::nif]
    fn [instance_live_count, wasmi_live_count, component_live_count]() -> usize {
        E::live_stores().count()
    }
}

/// `{handed, released}`: stores too large for a normal scheduler whose
/// handles were collected without a cleanup, handed to the reaper's thread
/// since the VM started, and released there (both engines).
#[rustler::nif]
fn instance_reaped() -> (u64, u64) {
    reaper::stats()
}

/// The pauses dirty scheduler threads made after a guest's slice, to give
/// an oversubscribed machine's cores to the VM's other threads
/// (`engine::give_way`), since the VM started (every engine).
#[rustler::nif]
fn instance_slice_pauses() -> u64 {
    give_way::pauses()
}
