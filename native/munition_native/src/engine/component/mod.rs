//! Components (the component model: WIT interfaces, WASI 0.2), on the same
//! Wasmtime engine as core modules: the same fuel and deadline, pooling
//! allocator, fibers and slices (`engine::wasmtime::execution`), each call
//! in a fresh store with a fresh instance of the pre-instantiated component.
//! What differs: compiling and linking once (`module`), WIT values both
//! ways (`value`), the world as Elixir sees it (`wit`), and imports served
//! by Elixir host functions with typed values (`bridge`).

pub mod bridge;
pub mod clock;
pub mod http;
pub mod module;
pub mod snapshot;
pub mod value;
pub mod wit;

use std::sync::Arc;
use std::time::Duration;

use rustler::{Env, Term};
use wasmtime::component::{Instance, Type, Val};
use wasmtime::Store;

use self::module::{Function, Linked};
use self::value::{to_term, to_val};
use crate::engine::capture::Snapshot;
use crate::engine::instance::{InstanceConfig, Live, Progress, Returned, Slot, ToTerms};
use crate::engine::link::Link;
use crate::engine::module::Compiled;
use crate::engine::types::EngineTypes;
use crate::engine::wasmtime::capture::coredump_snapshot;
use crate::engine::wasmtime::execution::{self, advance, start, OnWasmtime, Running, Step};
use crate::engine::wasmtime::store::new_store;
use crate::engine::SLICE;
use crate::host::state::{StoreConfig, StoreState, MAX_CORE_INSTANCES};
use crate::host::wasi::WasiRun;
use crate::vocabulary::error::{MunitionError, MunitionResult};

pub(crate) use crate::engine::wasmtime::config::ENGINE;

/// The component engine, as a type for the seam.
pub struct Component;

/// A call checked against the component's WIT types.
pub struct WitCall {
    function: Arc<Function>,
    params: Vec<Val>,
}

impl EngineTypes for Component {
    type Native = Linked;
    type Export = Arc<Function>;
    type Store = Store<StoreState>;
    type Instance = Instance;
    type Running = Running<Component>;
    type Evidence = wasmtime::Error;
    type Call = WitCall;

    fn state(store: &Self::Store) -> &StoreState {
        store.data()
    }

    fn state_mut(store: &mut Self::Store) -> &mut StoreState {
        store.data_mut()
    }

    fn fuel_remaining(store: &Self::Store) -> MunitionResult<u64> {
        execution::fuel_left(store)
    }

    fn running_memory_total(_running: &Self::Running) -> Option<usize> {
        None
    }
}

impl OnWasmtime for Component {}

/// What a component's function returned, with its types to make terms of.
struct WitValues {
    values: Vec<Val>,
    types: Vec<Type>,
}

impl ToTerms for WitValues {
    fn to_terms<'a>(&self, env: Env<'a>) -> Vec<Term<'a>> {
        self.values
            .iter()
            .zip(&self.types)
            .map(|(value, ty)| to_term(env, value, ty))
            .collect()
    }
}

/// Calls `call` in `instance`, on the guest's fiber.
async fn run_call(
    mut live: Live<Component>,
    instance: Instance,
    call: WitCall,
) -> (Live<Component>, wasmtime::Result<Step<Instance>>) {
    let Some(func) = instance.get_func(&mut live.store, call.function.index) else {
        let error = wasmtime::Error::msg("the export is not in this instance");
        return (live, Err(error));
    };
    let types = call.function.results.clone();
    let mut results: Vec<Val> = types.iter().map(|_| Val::Bool(false)).collect();
    let result = func
        .call_async(&mut live.store, &call.params, &mut results)
        .await;
    let returned = || {
        Returned::Terms(Box::new(WitValues {
            values: results,
            types,
        }))
    };
    (live, result.map(|()| Step::Returned(returned())))
}

/// The export a call names: `name`, `interface#name`, or an interface's
/// function without the interface's version (`wasi:cli/run#run` for
/// `wasi:cli/run@0.2.3#run`) when only one version is exported.
fn find<'a>(module: &'a Compiled<Component>, function: &str) -> Option<&'a Arc<Function>> {
    let functions = &module.native.functions;
    if let Some(exported) = functions.get(function) {
        return Some(exported);
    }
    let (interface, name) = function.split_once('#')?;
    if interface.contains('@') {
        return None;
    }
    let mut matches = functions.iter().filter(|(call, _)| {
        call.split_once('#').is_some_and(|(i, n)| {
            n == name
                && i.split_once('@')
                    .is_some_and(|(unversioned, _)| unversioned == interface)
        })
    });
    let (_, exported) = matches.next()?;
    matches.next().is_none().then_some(exported)
}

/// The Elixir host functions the capability gate linked, by import.
fn component_links(links: &[Link]) -> Vec<(String, String, u32)> {
    links
        .iter()
        .filter_map(|link| match link {
            Link::Elixir {
                module,
                name,
                index,
                ..
            } => Some((module.clone(), name.clone(), *index)),
            Link::Builtin { .. } => None,
        })
        .collect()
}

engine_impl! { Component {
    // Components are large: always a compile thread.
    const INLINE_COMPILE: usize = 0;
    const COMPONENTS: bool = true;

    fn convert(module: &Compiled<Self>, function: &str, params: &[Term])
        -> MunitionResult<Self::Call> {
        let exported = find(module, function)
            .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
        if let Some(why) = &exported.refused {
            return Err(MunitionError::Unsupported(format!("{function} cannot be called: {why}")));
        }
        if params.len() != exported.params.len() {
            return Err(MunitionError::BadArgs(format!(
                "{function} takes {} argument(s) ({}), got {}",
                exported.params.len(),
                exported
                    .params
                    .iter()
                    .map(|(name, ty)| format!("{name}: {}", wit::render(ty)))
                    .collect::<Vec<_>>()
                    .join(", "),
                params.len()
            )));
        }
        let params = params
            .iter()
            .zip(&exported.params)
            .map(|(term, (name, ty))| to_val(*term, ty, &format!("argument {name}")))
            .collect::<Result<Vec<Val>, String>>()
            .map_err(|message| MunitionError::BadArgs(format!("{function}: {message}")))?;
        Ok(WitCall {
            function: exported.clone(),
            params,
        })
    }

    /// A component exports no memory of its own for the binary ABI: its
    /// values cross typed.
    fn memory(_live: &mut Live<Self>) -> Option<&mut [u8]> {
        None
    }

    fn instantiate(
        env: Env,
        module: Arc<Compiled<Self>>,
        config: &InstanceConfig,
        call: Option<Self::Call>,
    ) -> MunitionResult<(Slot<Self>, Progress)> {
        // The preview-2 functions are linked once for every component and
        // reach only what this state holds: a call without a WASI
        // configuration gets an empty one if they are called
        // (`StoreState::wasi`).
        let wasi = config
            .wasi
            .0
            .as_ref()
            .map(|wasi| WasiRun::new(wasi, config.fuel))
            .transpose()?;
        let store_config = StoreConfig {
            instances: MAX_CORE_INSTANCES,
            ..config.store(wasi)
        };
        let mut store = new_store(store_config, config.fuel)?;
        store.data_mut().component_links = component_links(&config.links);
        // WASI 0.2's functions are `wasmtime-wasi`'s own, linked whole, and
        // its resources (streams, descriptors) live in its table, outside
        // the guest: nothing records what they return yet.
        store.data_mut().journal.unavailable(|| {
            "components are not recorded yet: WASI 0.2's host calls are wasmtime-wasi's own".into()
        });
        let mut slot = Slot::Idle(Box::new(Live::new(store, module, config.fuel)));
        start(&mut slot, |mut live| async move {
            let pre = live.module.native.pre.clone();
            let instance = match pre.instantiate_async(&mut live.store).await {
                Ok(instance) => instance,
                Err(error) => return (live, Err(error)),
            };
            let Some(call) = call else {
                return (live, Ok(Step::Instantiated(instance)));
            };
            live.instance = Some(instance);
            run_call(live, instance, call).await
        })?;
        // Made on a dirty scheduler (see `nif::instance`): a whole slice.
        let progress = advance(env, &mut slot, SLICE)?;
        Ok((slot, progress))
    }

    fn call(env: Env, slot: &mut Slot<Self>, call: Self::Call) -> MunitionResult<Progress> {
        execution::call(env, slot, SLICE, |live, instance| run_call(live, instance, call))
    }

    fn resume(env: Env, slot: &mut Slot<Self>, slice: Duration) -> MunitionResult<Progress> {
        advance(env, slot, slice)
    }

    /// Every core instance's memories and globals, from the coredump
    /// Wasmtime attaches to a trap (a component's core instances are all
    /// in its store), and the backtrace, which names the core functions
    /// the component's toolchain wrote.
    fn snapshot(live: &mut Live<Self>, full: bool) -> MunitionResult<Snapshot> {
        coredump_snapshot(&mut live.store, live.evidence.as_ref(), full)
    }
}
}
