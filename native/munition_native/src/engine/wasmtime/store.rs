//! A fresh Wasmtime store for every instance: fuel, its suspension points,
//! the deadline checked on every return into wasm (a call hook), the
//! memory limit of `munition_core::guest::GuestLimits` as Wasmtime's
//! limiter, and the imports made in it, from the one table of built-ins and
//! the bridge (`engine::link` says which import gets which).

use std::sync::Arc;
use std::time::Instant;

use munition_core::journal::Ending;
use wasmtime::{CallHook, Error, Extern, Func, FuncType, ResourceLimiter, Store, Trap, Val};

use super::config::{ENGINE, FUEL_YIELD_INTERVAL};
use super::execution::Wasmtime;
use super::trap::DeadlinePassed;
use super::value::{from_val, to_type, to_val};
use crate::engine::link::Imports;
use crate::engine::settings::{max_memories_per_module, MAX_TABLES_PER_MODULE};
use crate::engine::Engine;
use crate::host::bridge::{self, Served};
use crate::host::builtins::{Builtin, Make};
use crate::host::journal;
use crate::host::state::{Limiter, StoreConfig, StoreState};
use crate::host::wakeup::SuspendOnce;
use crate::host::wasi::caller::error;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::value::{Value, ValueType, WasmValue};

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.0
            .memory_growing(current, desired, maximum)
            .map_err(Error::msg)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.0.table_growing(desired))
    }

    fn instances(&self) -> usize {
        self.1
    }
    fn memories(&self) -> usize {
        max_memories_per_module() * self.1
    }
    fn tables(&self) -> usize {
        MAX_TABLES_PER_MODULE * self.1
    }
}

/// A fresh store as `config` says, with `fuel`.
pub fn new_store(config: StoreConfig, fuel: u64) -> MunitionResult<Store<StoreState>> {
    let mut store = Store::new(&ENGINE, StoreState::new(config, Wasmtime::live_stores()));
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(fuel)
        .map_err(|e| MunitionError::InvalidState(error_chain(&e)))?;
    // Suspension points, where a slice ends and the deadline is checked.
    // They write the fuel counter back to the store (compiled code keeps it
    // in a register between them), so the dump of a timed-out guest says how
    // much fuel it burnt.
    store
        .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
        .map_err(|e| MunitionError::InvalidState(error_chain(&e)))?;
    // The deadline, checked on every way back into wasm from the host: from
    // a libcall, which includes `out_of_gas` and so every fuel yield (with
    // the `call-hook` feature Wasmtime wraps libcalls as it wraps host
    // functions: `traphandlers::HostResult::maybe_catch_unwind`), and from a
    // host function, which may have waited past the deadline (an Elixir
    // host function, a WASI sleep, a response). The engine has no epoch
    // interruption (see `config`); this is the guest's deadline. It stops
    // the guest inside wasm, so the trap keeps Wasmtime's evidence
    // (backtrace, coredump), as an epoch interruption did. A host function
    // that failed the call itself (`StoreState::time_out`) keeps its own
    // reason (`trap::classify`).
    //
    // A replay of a call stopped at its deadline in wasm code stops where
    // it was stopped, by fuel (`Journal::stops_at`), whatever the time.
    store.call_hook(|mut ctx, hook| match hook {
        CallHook::ReturningFromHost if Instant::now() >= ctx.data().deadline => {
            Err(Error::new(DeadlinePassed))
        }
        CallHook::ReturningFromHost
            if ctx.data().journal.is_replaying()
                && ctx.data().journal.stops_at(|| ctx.get_fuel().unwrap_or(0)) =>
        {
            ctx.data_mut().timed_out = true;
            Err(Error::new(DeadlinePassed))
        }
        _ => Ok(()),
    });
    Ok(store)
}

fn func_type(params: &[ValueType], results: &[ValueType]) -> FuncType {
    FuncType::new(
        &ENGINE,
        params.iter().map(to_type),
        results.iter().map(to_type),
    )
}

/// The most parameters or results a built-in has (`path_open`).
const MAX_BUILTIN_VALUES: usize = 9;

/// Wasmtime's values as Munition's, on the stack: a built-in call allocates
/// nothing for its values. At most `MAX_BUILTIN_VALUES` of them.
fn on_stack(values: &[Val]) -> ([Value; MAX_BUILTIN_VALUES], usize) {
    let mut converted = [Value::Ref; MAX_BUILTIN_VALUES];
    for (slot, value) in converted.iter_mut().zip(values) {
        *slot = from_val(value);
    }
    (converted, values.len().min(MAX_BUILTIN_VALUES))
}

impl Imports for Wasmtime {
    type Import = Extern;

    /// The built-in of `row`, made in `store` as import `import`:
    /// Munition's own function over the caller, or a WASI function, each
    /// host call recorded for a replay (`journal`).
    fn builtin(
        store: &mut Store<StoreState>,
        row: &'static Builtin,
        import: u32,
    ) -> MunitionResult<Extern> {
        let ty = func_type(row.params, row.results);
        let own = match &row.make {
            Make::Own(own) => *own,
            Make::Wasi(wasi) => {
                let wasi = *wasi;
                return Ok(Extern::Func(Func::new_async(
                    store,
                    ty,
                    move |mut caller, params, results| {
                        Box::new(async move {
                            let mark = journal::begin(&mut caller);
                            let outcome = wasi(&mut caller, params, results).await;
                            if mark.is_some() {
                                let ending = match &outcome {
                                    Ok(()) => Ending::Returned,
                                    Err(e) if e.downcast_ref() == Some(&Trap::OutOfFuel) => {
                                        Ending::OutOfFuel
                                    }
                                    Err(e) => Ending::Failed(error_chain(e)),
                                };
                                let (params, count) = on_stack(params);
                                let (results, outputs) = on_stack(results);
                                journal::end(
                                    &mut caller,
                                    mark,
                                    import,
                                    row.writes,
                                    &params[..count],
                                    &results[..outputs],
                                    ending,
                                );
                            }
                            outcome
                        })
                    },
                )));
            }
        };
        Ok(Extern::Func(Func::new(
            store,
            ty,
            move |mut caller, params, results| {
                let (values, count) = on_stack(params);
                let outputs = results.len();
                let mut returned = [Value::Ref; MAX_BUILTIN_VALUES];
                for (slot, ty) in returned.iter_mut().zip(row.results) {
                    *slot = Value::default_for(*ty);
                }
                let mark = journal::begin(&mut caller);
                let outcome = own(&mut caller, &values[..count], &mut returned[..outputs]);
                let ending = journal::ending(&outcome);
                journal::end(
                    &mut caller,
                    mark,
                    import,
                    row.writes,
                    &values[..count],
                    &returned[..outputs],
                    ending,
                );
                outcome.map_err(error)?;
                for (slot, value) in results.iter_mut().zip(returned.iter()) {
                    *slot = to_val(value);
                }
                Ok(())
            },
        )))
    }

    /// Import `import` of this signature answered from the replay log.
    fn replayed(
        store: &mut Store<StoreState>,
        import: u32,
        params: &[ValueType],
        results: &[ValueType],
    ) -> Extern {
        let ty = func_type(params, results);
        let types: Arc<[ValueType]> = results.into();
        Extern::Func(Func::new(store, ty, move |mut caller, _, results| {
            let returned = journal::answered(&mut caller, import, &types).map_err(error)?;
            for (slot, value) in results.iter_mut().zip(&returned) {
                *slot = to_val(value);
            }
            Ok(())
        }))
    }

    /// The Elixir host function at `index` of the call's list, imported as
    /// `name`: sends the call over the bridge, then waits for the reply with
    /// the guest's fiber parked (no thread held), serving the Elixir side's
    /// memory requests each time it is resumed.
    fn elixir(
        store: &mut Store<StoreState>,
        name: &str,
        index: u32,
        params: &[ValueType],
        results: &[ValueType],
        import: u32,
    ) -> Extern {
        let ty = func_type(params, results);
        let name: Arc<str> = name.into();
        let result_types: Arc<[ValueType]> = results.into();
        Extern::Func(Func::new_async(
            store,
            ty,
            move |mut caller, params, results| {
                let (name, result_types) = (name.clone(), result_types.clone());
                Box::new(async move {
                    let params: Vec<Value> = params.iter().map(from_val).collect();
                    let mark = journal::begin(&mut caller);
                    let outcome = async {
                        let pending = bridge::call(
                            &mut caller,
                            &name,
                            Some(&result_types),
                            index,
                            WasmValue::list(&params),
                        )?;
                        loop {
                            match bridge::serve(&mut caller, &pending) {
                                Served::Reply(values) => return Ok(values),
                                // `serve` fails a core call answered untyped.
                                Served::Saved(_) => unreachable!("a core call's reply is decoded"),
                                Served::Waiting => SuspendOnce(false).await,
                                Served::Stopped(stop) => return Err(stop),
                            }
                        }
                    }
                    .await;
                    let (returned, ending) = match outcome {
                        Ok(values) => (values, Ok(())),
                        Err(stop) => (Vec::new(), Err(stop)),
                    };
                    let ending_of = journal::ending(&ending);
                    journal::end(
                        &mut caller,
                        mark,
                        import,
                        &[],
                        &params,
                        &returned,
                        ending_of,
                    );
                    ending.map_err(error)?;
                    for (slot, value) in results.iter_mut().zip(&returned) {
                        *slot = to_val(value);
                    }
                    Ok(())
                })
            },
        ))
    }
}
