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
use crate::engine::call::{self, AtOnce, BinaryAbi, Call};
use crate::engine::capture::Snapshot;
use crate::engine::instance::{InstanceConfig, Live, Progress, Returned, Slot};
use crate::engine::link::imports;
use crate::engine::module::Compiled;
use crate::engine::FIRST_SLICE;
use crate::host::wasi::WasiRun;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::guest_memory::{bounds, no_memory, out_of_bounds, EXPORT_NAME, INLINE_COPY};
use crate::vocabulary::trap::{Reason, TrapKind};
use crate::vocabulary::value::Value;

/// Result slots for `results`, overwritten by the call: their initial values
/// never reach anyone, so a type without a default gets any placeholder.
fn result_slots(call: &Call<Wasmtime>) -> Vec<Val> {
    call.results
        .iter()
        .map(|ty| Val::default_for_ty(&value::to_type(ty)).unwrap_or(Val::I32(0)))
        .collect()
}

/// Calls `call` in `instance`, on the guest's fiber: with the binary ABI
/// (`call::BinaryAbi`), its binary arguments copied in first, each where
/// the guest's allocator says, and its binary result read after, in the
/// same guest execution.
async fn run_call(
    mut live: Live<Wasmtime>,
    instance: Instance,
    mut call: Call<Wasmtime>,
) -> (Live<Wasmtime>, wasmtime::Result<Step<Instance>>) {
    let binary = call.binary.take();
    if let Some(BinaryAbi {
        alloc: Some((alloc, name)),
        inputs,
        ..
    }) = &binary
    {
        for (index, bytes) in inputs {
            match copy_in(&mut live, instance, alloc, name, bytes).await {
                Ok(ptr) => call.params[*index] = Value::I32(ptr as i32),
                Err(error) => return (live, Err(error)),
            }
        }
    }
    let func = instance
        .get_module_export(&mut live.store, &call.export)
        .and_then(Extern::into_func);
    let Some(func) = func else {
        let error = wasmtime::Error::msg("the export is not in this instance");
        return (live, Err(error));
    };
    let params: Vec<Val> = call.params.iter().map(to_val).collect();
    let mut results = result_slots(&call);
    if let Err(error) = func
        .call_async(&mut live.store, &params, &mut results)
        .await
    {
        return (live, Err(error));
    }
    let values: Vec<Value> = results.iter().map(from_val).collect();
    if !binary.is_some_and(|binary| binary.result) {
        return (live, Ok(Step::Returned(Returned::Values(values))));
    }
    let (ptr, len) = result_range(&values);
    if len > INLINE_COPY {
        // Read the long way, on a dirty scheduler.
        return (live, Ok(Step::Returned(Returned::Values(values))));
    }
    match guest_range(&mut live, ptr, len) {
        Ok(range) => {
            let bytes =
                exported_memory(&mut live).map_or_else(Vec::new, |data| data[range].to_vec());
            (live, Ok(Step::Returned(Returned::Binary(bytes))))
        }
        Err(message) => {
            let error = fail_out_of_bounds(&mut live, format!("result {message}"));
            (live, Err(error))
        }
    }
}

/// Calls the allocator `alloc` for `bytes` and copies them there: the
/// pointer, or the error that ends the call (the allocator's own, or a
/// pointer whose range is outside memory).
async fn copy_in(
    live: &mut Live<Wasmtime>,
    instance: Instance,
    alloc: &wasmtime::ModuleExport,
    name: &str,
    bytes: &[u8],
) -> wasmtime::Result<u64> {
    let func = instance
        .get_module_export(&mut live.store, alloc)
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::Error::msg("the allocator is not in this instance"))?;
    let mut ptr = [Val::I32(0)];
    func.call_async(&mut live.store, &[Val::I32(bytes.len() as i32)], &mut ptr)
        .await?;
    let ptr = ptr[0].i32().unwrap_or_default() as u32 as u64;
    match guest_range(live, ptr, bytes.len() as u64) {
        Ok(range) => {
            if let Some(data) = exported_memory(live) {
                data[range].copy_from_slice(bytes);
            }
            Ok(ptr)
        }
        Err(message) => Err(fail_out_of_bounds(
            live,
            format!("{name} returned {ptr}: {message}"),
        )),
    }
}

/// The instance's exported memory (`Engine::memory`; a call's instance is
/// the live one).
fn exported_memory(live: &mut Live<Wasmtime>) -> Option<&mut [u8]> {
    let memory = live.instance?.get_memory(&mut live.store, EXPORT_NAME)?;
    Some(memory.data_mut(&mut live.store))
}

/// `[ptr, ptr + len)` of the exported memory, or why it is not there, as
/// the memory NIFs say it (`nif::memory`).
fn guest_range(
    live: &mut Live<Wasmtime>,
    ptr: u64,
    len: u64,
) -> Result<std::ops::Range<usize>, String> {
    let Some(data) = exported_memory(live) else {
        return Err(no_memory().to_string());
    };
    let size = data.len();
    bounds(size, ptr, len).ok_or_else(|| out_of_bounds(ptr, len, size).to_string())
}

/// Ends the call as the binary ABI's range outside memory: a
/// `:memory_out_of_bounds` trap with `message`, as `Munition.Instance.Manager`
/// reports one found the long way.
fn fail_out_of_bounds(live: &mut Live<Wasmtime>, message: String) -> wasmtime::Error {
    let state = live.store.data_mut();
    wasmtime::Error::msg(state.fail(Reason::Trap, TrapKind::MemoryOutOfBounds, message))
}

/// The `(ptr, len)` a binary result names: two i32s, or one i64
/// (`ptr << 32 | len`), as `Munition.Instance.BinaryABI.result_range/1`.
fn result_range(values: &[Value]) -> (u64, u64) {
    match values {
        [Value::I32(ptr), Value::I32(len)] => (*ptr as u32 as u64, *len as u32 as u64),
        [Value::I64(packed)] => ((*packed as u64) >> 32, *packed as u64 & 0xFFFF_FFFF),
        _ => (0, 0),
    }
}

engine_impl! { Wasmtime {
    // Cranelift takes milliseconds for the smallest module: always a
    // compile thread.
    const INLINE_COMPILE: usize = 0;

    fn convert(module: &Compiled<Self>, function: &str, params: &[Term])
        -> MunitionResult<Self::Call> {
        call::convert(module, function, params)
    }

    fn convert_at_once(module: &Compiled<Self>, at_once: &AtOnce) -> MunitionResult<Self::Call> {
        if at_once.binary_result || at_once.has_binary() {
            call::convert_binary(module, at_once)
        } else {
            call::convert(module, at_once.function, &at_once.params)
        }
    }

    fn memory(live: &mut Live<Self>) -> Option<&mut [u8]> {
        exported_memory(live)
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
