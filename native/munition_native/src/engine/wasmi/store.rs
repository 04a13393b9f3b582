//! A fresh Wasmi store for every instance: the memory limit of
//! `munition_core::guest::GuestLimits` as Wasmi's limiter, the budget kept
//! in the state's reserve and put in the store a slice at a time, a store
//! seen from a host function (`Ctx`, the `HostCtx` of this engine), and the
//! imports made in it, from the one table of built-ins and the bridge.

use std::sync::Arc;

use wasmi::{Error, Extern, Func, FuncType, Store, TrapCode};
use wasmi_core::LimiterError;

use super::config::ENGINE;
use super::context::Ctx;
use super::execution::Wasmi;
use super::value::{from_val, to_type, to_val};
use crate::engine::link::Imports;
use crate::engine::settings::{max_memories_per_module, MAX_TABLES_PER_MODULE};
use crate::engine::Engine;
use crate::host::bridge;
use crate::host::builtins::{Builtin, Make};
use crate::host::context::{HostCtx, Stop};
use crate::host::journal;
use crate::host::state::{Limiter, StoreConfig, StoreState};
use crate::host::wasi;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::value::{Value, ValueType, WasmValue};

impl wasmi::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        // The message is kept on the limits for the dump: Wasmi's limiter
        // error carries none.
        self.0
            .memory_growing(current, desired, maximum)
            .map_err(|_| LimiterError::ResourceLimiterDeniedAllocation)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        Ok(self.0.table_growing(desired))
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_MODULE
    }

    fn memories(&self) -> usize {
        max_memories_per_module()
    }
}

/// A fresh store as `config` says, with a budget of `fuel` in its reserve.
pub fn new_store(config: StoreConfig, fuel: u64) -> MunitionResult<Store<StoreState>> {
    let mut state = StoreState::new(config, Wasmi::live_stores());
    state.reserve = fuel;
    let mut store = Store::new(&ENGINE, state);
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(0)
        .map_err(|e| MunitionError::InvalidState(e.to_string()))?;
    Ok(store)
}

/// The error that ends the guest for `stop`.
pub fn error(stop: Stop) -> Error {
    match stop {
        Stop::Failed(message) => Error::new(message),
        Stop::OutOfFuel => Error::from(TrapCode::OutOfFuel),
    }
}

fn func_type(params: &[ValueType], results: &[ValueType]) -> FuncType {
    FuncType::new(params.iter().map(to_type), results.iter().map(to_type))
}

impl Imports for Wasmi {
    type Import = Extern;

    fn builtin(
        store: &mut Store<StoreState>,
        row: &'static Builtin,
        import: u32,
    ) -> MunitionResult<Extern> {
        // Munition's own rows (the built-ins, WASI's clocks, random, exit)
        // are written for every engine; WASI's descriptor functions, which
        // Wasmtime takes from `wasmtime-wasi`, are `wasi::plain`'s here.
        let own = match &row.make {
            Make::Own(own) => *own,
            Make::Wasi(_) => wasi::plain::find(row.name).ok_or_else(|| {
                // Never: every row has one (`wasi::plain::find`).
                MunitionError::RuntimeFailure(format!(
                    "{}.{}: no implementation for Munition.Runtime.Wasmi",
                    row.module, row.name
                ))
            })?,
        };
        let ty = func_type(row.params, row.results);
        Ok(Extern::Func(Func::new(
            store,
            ty,
            move |mut caller, params, results| {
                let values: Vec<Value> = params.iter().map(from_val).collect();
                let mut returned: Vec<Value> = row
                    .results
                    .iter()
                    .map(|ty| Value::default_for(*ty))
                    .collect();
                let ctx = &mut Ctx::of_caller(&mut caller);
                let mark = journal::begin(ctx);
                let outcome = own(ctx, &values, &mut returned);
                if ctx
                    .state()
                    .wasi
                    .as_ref()
                    .is_some_and(|wasi| wasi.sleeping.is_some())
                {
                    // A sleep: it ends in a later slice (`execution`).
                    journal::suspend(ctx, mark, import, row.writes, &values);
                } else {
                    let ending = journal::ending(&outcome);
                    journal::end(ctx, mark, import, row.writes, &values, &returned, ending);
                }
                outcome.map_err(error)?;
                for (slot, value) in results.iter_mut().zip(&returned) {
                    *slot = to_val(value);
                }
                Ok(())
            },
        )))
    }

    /// The Elixir host function at `index` of the call's list, imported as
    /// `name`: sends the call over the bridge and returns a host error, on
    /// which Wasmi suspends the whole execution as a resumable host trap, so no
    /// thread and no stack is held while Elixir works (see `execution`).
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
        let results: Arc<[ValueType]> = results.into();
        Extern::Func(Func::new(store, ty, move |mut caller, params, _| {
            let values: Vec<Value> = params.iter().map(from_val).collect();
            let ctx = &mut Ctx::of_caller(&mut caller);
            let mark = journal::begin(ctx);
            let call = bridge::call(ctx, &name, Some(&results), index, WasmValue::list(&values));
            let pending = match call {
                Ok(pending) => pending,
                Err(stop) => {
                    journal::end(
                        ctx,
                        mark,
                        import,
                        &[],
                        &values,
                        &[],
                        journal::ending_of(&stop),
                    );
                    return Err(error(stop));
                }
            };
            // Its results come when the execution is resumed (`execution`).
            journal::suspend(ctx, mark, import, &[], &values);
            caller.data_mut().pending = Some(pending);
            // Not a failure: Wasmi suspends the execution on it.
            Err(Error::new(format!(
                "{name}: waiting for the Elixir host function"
            )))
        }))
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
            let returned = journal::answered(&mut Ctx::of_caller(&mut caller), import, &types)
                .map_err(error)?;
            for (slot, value) in results.iter_mut().zip(&returned) {
                *slot = to_val(value);
            }
            Ok(())
        }))
    }
}
