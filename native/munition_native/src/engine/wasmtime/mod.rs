//! The Wasmtime engine (Wasmtime 48, Cranelift): one process-wide engine
//! with fuel (its one instrument) and a pooling allocator (`config`);
//! compiling (`module`); a fresh store per instance and the imports made in
//! it (`store`); running a guest on a fiber in slices (`execution`); and
//! what a failed store gives its dump (`trap`, `capture`). `value` converts
//! Wasmtime's values to Munition's. Everything else is written once, above
//! the seam (`engine::Engine`).

pub mod capture;
pub mod config;
pub mod execution;
pub mod module;
pub mod snapshot;
pub mod store;
pub mod trap;
pub mod value;

pub use self::execution::Wasmtime;

use std::sync::Arc;
use std::time::Duration;

use rustler::{Env, Term};
use wasmtime::{Extern, Instance, Val};

use self::execution::{advance, start, Step};
use self::value::{from_val, to_val};
use crate::engine::call::{self, Call};
use crate::engine::capture::Snapshot;
use crate::engine::instance::{InstanceConfig, Live, Progress, Returned, Slot};
use crate::engine::link::imports;
use crate::engine::module::Compiled;
use crate::engine::FIRST_SLICE;
use crate::host::wasi::WasiRun;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::guest_memory::EXPORT_NAME;

/// Result slots for `results`, overwritten by the call: their initial values
/// never reach anyone, so a type without a default gets any placeholder.
fn result_slots(call: &Call<Wasmtime>) -> Vec<Val> {
    call.results
        .iter()
        .map(|ty| Val::default_for_ty(&value::to_type(ty)).unwrap_or(Val::I32(0)))
        .collect()
}

/// Calls `call` in `instance`, on the guest's fiber.
async fn run_call(
    mut live: Live<Wasmtime>,
    instance: Instance,
    call: Call<Wasmtime>,
) -> (Live<Wasmtime>, wasmtime::Result<Step<Instance>>) {
    let func = instance
        .get_module_export(&mut live.store, &call.export)
        .and_then(Extern::into_func);
    let Some(func) = func else {
        let error = wasmtime::Error::msg("the export is not in this instance");
        return (live, Err(error));
    };
    let params: Vec<Val> = call.params.iter().map(to_val).collect();
    let mut results = result_slots(&call);
    let result = func
        .call_async(&mut live.store, &params, &mut results)
        .await;
    let returned = || Returned::Values(results.iter().map(from_val).collect());
    (live, result.map(|()| Step::Returned(returned())))
}

engine_impl! { Wasmtime {
    // Cranelift takes milliseconds for the smallest module: always a
    // compile thread.
    const INLINE_COMPILE: usize = 0;

    fn convert(module: &Compiled<Self>, function: &str, params: &[Term])
        -> MunitionResult<Self::Call> {
        call::convert(module, function, params)
    }

    fn memory(live: &mut Live<Self>) -> Option<&mut [u8]> {
        let memory = live.instance?.get_memory(&mut live.store, EXPORT_NAME)?;
        Some(memory.data_mut(&mut live.store))
    }

    fn instantiate(
        env: Env,
        module: Arc<Compiled<Self>>,
        config: &InstanceConfig,
        call: Option<Self::Call>,
    ) -> MunitionResult<(Slot<Self>, Progress)> {
        let wasi = config
            .wasi
            .0
            .as_ref()
            .map(|wasi| WasiRun::new(wasi, config.fuel))
            .transpose()?;
        let mut store = store::new_store(config.store(wasi), config.fuel)?;
        let imports = imports(&mut store, &module, &config.links)?;
        let mut slot = Slot::Idle(Box::new(Live::new(store, module, config.fuel)));
        // Imports were checked by the Elixir side, so what fails here is the
        // guest (its start function, or a segment that does not fit) or,
        // should that check be bypassed, Wasmtime's own type check of the
        // imports. With a call, instantiating and calling are one guest
        // execution: one future, one slice loop.
        start(&mut slot, |mut live| async move {
            let native = live.module.native.clone();
            let instance = match Instance::new_async(&mut live.store, &native, &imports).await {
                Ok(instance) => instance,
                Err(error) => return (live, Err(error)),
            };
            let Some(call) = call else {
                return (live, Ok(Step::Instantiated(instance)));
            };
            live.instance = Some(instance);
            run_call(live, instance, call).await
        })?;
        let progress = advance(env, &mut slot, FIRST_SLICE)?;
        Ok((slot, progress))
    }

    fn call(env: Env, slot: &mut Slot<Self>, call: Self::Call) -> MunitionResult<Progress> {
        execution::call(env, slot, FIRST_SLICE, |live, instance| run_call(live, instance, call))
    }

    fn resume(env: Env, slot: &mut Slot<Self>, slice: Duration) -> MunitionResult<Progress> {
        advance(env, slot, slice)
    }

    fn snapshot(live: &mut Live<Self>, full: bool) -> MunitionResult<Snapshot> {
        capture::snapshot(live, full)
    }
}
}
