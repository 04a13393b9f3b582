//! The NIFs on a live Wasmi instance: make one in a fresh store, call an
//! export, run the next slice, read and write its memory, release it. The
//! handle is the Wasmi side's own resource: a Wasmtime handle given here
//! (or the reverse) is a `badarg`, and `Munition.Options` refuses a module
//! of one engine for a call on the other before it gets this far.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustler::{Atom, Binary, Encoder, Env, NewBinary, Resource, ResourceArc, Term};
use wasmi::{Extern, Instance, Memory};

use super::builtins;
use super::execution::{
    advance, classify, instantiation_crashed, start, Execution, Goal, Live, Slot,
};
use super::host::elixir_func;
use super::module::{WasmiModule, WasmiModuleRef};
use super::start::START_EXPORT;
use super::store::{new_store, WasmiState};
use super::value::{default_for, from_shared, type_to_shared};
use crate::atoms;
use crate::engine::{FIRST_SLICE, SLICE};
use crate::error::{MunitionError, MunitionResult};
use crate::execution::Progress;
use crate::guest_memory::{bounds, out_of_bounds, EXPORT_NAME};
use crate::instance::{preflight, releases_inline, InstanceConfig};
use crate::link::{refuse_unlinked, Link};
use crate::value::{to_val, val_type_atom};

pub struct WasmiInstanceRef {
    slot: Mutex<Slot>,
}

#[rustler::resource_impl]
impl Resource for WasmiInstanceRef {}

// As for Wasmtime's instances: a panic mid-call leaves at worst a store
// that fails its next use.
impl std::panic::RefUnwindSafe for WasmiInstanceRef {}

impl WasmiInstanceRef {
    pub fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The imports of `module` from `links`, in import order: built-ins from
/// the one table, Elixir host functions over the bridge. An import without
/// a link is refused (the capability gate never asks for one), and so is a
/// WASI function, by name: Munition's WASI is Wasmtime's.
fn resolve_imports(
    store: &mut wasmi::Store<WasmiState>,
    module: &WasmiModule,
    links: &[Link],
) -> MunitionResult<Vec<Extern>> {
    let mut externs = Vec::new();
    let mut unlinked = Vec::new();
    for import in module.module.imports() {
        let (import_module, import_name) = (import.module(), import.name());
        let link = links.iter().find(|link| match link {
            Link::Builtin { module, name } | Link::Elixir { module, name, .. } => {
                module == import_module && name == import_name
            }
        });
        let func = match link {
            None => {
                unlinked.push(format!("{import_module}.{import_name}"));
                continue;
            }
            Some(Link::Builtin { module, name }) => {
                let row = crate::builtins::find(module, name).ok_or_else(|| {
                    MunitionError::Instantiation(format!(
                        "no built-in host function {module}.{name}"
                    ))
                })?;
                builtins::make(store, row).ok_or_else(|| {
                    MunitionError::Unsupported(format!(
                        "{module}.{name}: Munition.Runtime.Wasmi does not run WASI \
                         (Munition's WASI is Wasmtime's); use Munition.Runtime.Wasmtime"
                    ))
                })?
            }
            Some(Link::Elixir {
                name,
                index,
                params,
                results,
                ..
            }) => elixir_func(store, params, results, *index, name),
        };
        externs.push(Extern::Func(func));
    }
    refuse_unlinked(&unlinked)?;
    Ok(externs)
}

/// Instantiates a module in a fresh store and runs the first slice of its
/// start function, if any, and the config's `call` when it can start: the
/// same contract as `instance_new/2`.
#[rustler::nif]
fn wasmi_instance_new<'a>(
    env: Env<'a>,
    module: ResourceArc<WasmiModuleRef>,
    config: InstanceConfig<'a>,
) -> MunitionResult<(WasmiHandle, Progress)> {
    if config.wasi.0.is_some() {
        return Err(MunitionError::Unsupported(
            "Munition.Runtime.Wasmi does not run WASI (the :wasi option; Munition's WASI is \
             Wasmtime's); use Munition.Runtime.Wasmtime"
                .into(),
        ));
    }
    let compiled = module.0.clone();
    preflight(&compiled.info.memories, config.max_memory)?;
    let mut store = new_store(
        config.fuel,
        Duration::from_millis(config.timeout),
        config.max_memory,
        // Only short of 64-bit: a limit over the address space is no limit.
        usize::try_from(config.log_limit).unwrap_or(usize::MAX),
        config.host_pid.0,
    )?;
    let imports = resolve_imports(&mut store, &compiled, &config.links)?;
    let instantiated = Instance::new(&mut store, &compiled.module, &imports);
    let mut live = Live {
        store,
        instance: None,
        module: compiled.clone(),
        fuel_given: config.fuel,
        elapsed: Duration::ZERO,
        failure: None,
    };
    let progress;
    let mut slot = match instantiated {
        Ok(instance) => {
            live.instance = Some(instance);
            match instance.get_func(&live.store, START_EXPORT) {
                Some(func) if compiled.start => {
                    let mut slot = Slot::Idle(Box::new(live));
                    progress = start(
                        env,
                        &mut slot,
                        Execution::new(Goal::Start, func, vec![], vec![]),
                        FIRST_SLICE,
                    )?;
                    slot
                }
                _ => {
                    progress = Progress::Ready;
                    Slot::Idle(Box::new(live))
                }
            }
        }
        // A segment that does not fit, or memory over the limit: the
        // guest's module failed, and its dump says how.
        Err(error) if instantiation_crashed(&error, live.store.data()) => {
            let failure = classify(&error, live.store.data());
            progress = Progress::Crashed(failure.reason);
            live.failure = Some(failure);
            Slot::Idle(Box::new(live))
        }
        Err(error) => return Err(MunitionError::Instantiation(error.to_string())),
    };
    // The call in the same step, when the manager gives one and it can
    // start (else `:ready`, and the caller's own call says why).
    let mut progress = progress;
    if let (Progress::Ready, Some((function, params, release))) = (&progress, &config.call.0) {
        if let Ok(execution) = prepare(slot.idle()?, function, params) {
            progress = start(env, &mut slot, execution, FIRST_SLICE)?;
            if *release && matches!(progress, Progress::Returned(..)) && !holds_large_memory(&slot)
            {
                return Ok((WasmiHandle::Released, progress));
            }
        }
    }
    let handle = ResourceArc::new(WasmiInstanceRef {
        slot: Mutex::new(std::mem::replace(&mut slot, Slot::Gone)),
    });
    Ok((WasmiHandle::Instance(handle), progress))
}

/// What `wasmi_instance_new/2` hands out: the instance, or `:released` when
/// its store is gone already (a call made at once that returned, see
/// `Munition.Runtime`'s `instantiate/2`).
pub enum WasmiHandle {
    Instance(ResourceArc<WasmiInstanceRef>),
    Released,
}

impl Encoder for WasmiHandle {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            WasmiHandle::Instance(instance) => instance.encode(env),
            WasmiHandle::Released => atoms::released().encode(env),
        }
    }
}

/// The call of `function` with `params` on the idle `live` instance, checked
/// and converted, ready to start: `function_not_found` or `bad_args` before
/// any guest code runs.
fn prepare(live: &Live, function: &str, params: &[Term]) -> MunitionResult<Execution> {
    let wasm_instance = live.instance.ok_or_else(|| {
        MunitionError::InvalidState("instance did not finish instantiating".into())
    })?;
    let func = Some(function)
        .filter(|name| *name != START_EXPORT)
        .and_then(|name| wasm_instance.get_func(&live.store, name))
        .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
    let ty = func.ty(&live.store);
    if params.len() != ty.params().len() {
        return Err(MunitionError::BadArgs(format!(
            "{function} takes {} argument(s) ({:?}), got {}",
            ty.params().len(),
            ty.params()
                .iter()
                .map(|t| val_type_atom(&type_to_shared(t)))
                .collect::<Vec<_>>(),
            params.len()
        )));
    }
    let vals = params
        .iter()
        .zip(ty.params())
        .enumerate()
        .map(|(position, (term, ty))| {
            to_val(*term, &type_to_shared(ty), "argument", position).and_then(|v| from_shared(&v))
        })
        .collect::<MunitionResult<Vec<_>>>()?;
    let results = ty.results().iter().map(default_for).collect();
    Ok(Execution::new(Goal::Call, func, vals, results))
}

/// Calls `function` with `params` and runs the first slice, as
/// `instance_call/3`.
#[rustler::nif]
fn wasmi_instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<WasmiInstanceRef>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    let mut slot = instance.lock();
    let execution = prepare(slot.idle()?, &function, &params)?;
    start(env, &mut slot, execution, FIRST_SLICE)
}

/// Runs the next slice of an execution that yielded or waited.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_resume(
    env: Env,
    instance: ResourceArc<WasmiInstanceRef>,
) -> MunitionResult<Progress> {
    advance(env, &mut instance.lock(), SLICE)
}

/// Releases the store now (a guest mid-execution is dropped with it), as
/// `instance_cleanup/1`: `:ok`, or `:large` without releasing a store whose
/// memory is too large to release on a normal scheduler (see
/// `releases_inline`): release that one with `wasmi_instance_cleanup_dirty/1`.
#[rustler::nif]
fn wasmi_instance_cleanup(instance: ResourceArc<WasmiInstanceRef>) -> Atom {
    let mut slot = instance.lock();
    if holds_large_memory(&slot) {
        return atoms::large();
    }
    drop(std::mem::replace(&mut *slot, Slot::Gone));
    atoms::ok()
}

/// `wasmi_instance_cleanup/1` for stores with large memories.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_cleanup_dirty(instance: ResourceArc<WasmiInstanceRef>) -> Atom {
    drop(std::mem::replace(&mut *instance.lock(), Slot::Gone));
    atoms::ok()
}

/// Whether the slot's store, idle or mid-execution, holds too much memory to
/// be released on a normal scheduler.
fn holds_large_memory(slot: &Slot) -> bool {
    let live = match slot {
        Slot::Idle(live) => &**live,
        Slot::Running(running) => &running.0,
        Slot::Gone => return false,
    };
    !releases_inline(live.store.data().limits.limits.memory_total)
}

fn exported_memory(live: &Live) -> MunitionResult<Memory> {
    live.instance
        .and_then(|instance| instance.get_memory(&live.store, EXPORT_NAME))
        .ok_or_else(|| {
            MunitionError::OutOfBounds(format!("the guest exports no memory named {EXPORT_NAME:?}"))
        })
}

fn checked(data: &[u8], ptr: u64, len: u64) -> MunitionResult<std::ops::Range<usize>> {
    bounds(data.len(), ptr, len).ok_or_else(|| out_of_bounds(ptr, len, data.len()))
}

/// Reads guest memory for the binary ABI, as `instance_memory_read/3`.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<WasmiInstanceRef>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = exported_memory(live)?;
    let data = memory.data(&live.store);
    let bytes = &data[checked(data, ptr, len)?];
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Ok(binary.into())
}

/// Writes a binary argument into guest memory, as `instance_memory_write/3`.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_memory_write(
    instance: ResourceArc<WasmiInstanceRef>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<Atom> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = exported_memory(live)?;
    let range = checked(memory.data(&live.store), ptr, bytes.len() as u64)?;
    memory.data_mut(&mut live.store)[range].copy_from_slice(bytes.as_slice());
    Ok(atoms::ok())
}
