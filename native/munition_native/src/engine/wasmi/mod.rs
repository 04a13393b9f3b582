//! The Wasmi engine (`Munition.Runtime.Wasmi`): Wasmi 2, an interpreter in
//! Rust. No JIT and no executable memory; a module is validated when it is
//! compiled and each function is translated to Wasmi's bytecode the first
//! time it runs, so a module run once pays only for the code it runs.
//!
//! The guarantees are kept as on Wasmtime, by other means:
//!
//! - **bounded**: every call is resumable (`Func::call_resumable`); the
//!   store gets its fuel in slices of `config::FUEL_SLICE`, and each time a
//!   slice is used up the call is suspended, the deadline and the slice's
//!   time are checked, and it is resumed or handed back as `:yielded`
//!   (`execution`);
//! - **the schedulers' stacks**: Wasmi's executor keeps wasm frames on a
//!   heap stack of its own (wasm-to-wasm calls never recurse natively) and
//!   bounds it (`config::MAX_RECURSION_DEPTH`): a runaway recursion is a
//!   `:stack_overflow` trap;
//! - **start functions** are moved to an export before compiling
//!   (`munition_core::internals`) and called resumably after instantiating
//!   (`module`);
//! - **dumps** hold every memory and every global, reached through exports
//!   under reserved names added when compiling (`module`, `capture`);
//! - fresh stores, capabilities at import resolution, the built-ins and
//!   Elixir host functions are the shared ones (`store` makes them); a
//!   call of an Elixir host function suspends the guest as a resumable
//!   host trap, which frees the thread until the reply comes.
//!
//! What differs is written in `Munition.Runtime.Wasmi`'s moduledoc.

pub mod capture;
pub mod config;
pub mod context;
pub mod execution;
pub mod module;
pub mod store;
pub mod value;

pub use self::execution::Wasmi;

use std::sync::Arc;
use std::time::Duration;

use rustler::{Env, Term};
use wasmi::Instance;

use self::execution::{advance, classify, instantiation_crashed, start, Execution, Goal};
use self::value::{to_type, to_val};
use crate::engine::call;
use crate::engine::capture::Snapshot;
use crate::engine::instance::{InstanceConfig, Live, Progress, Slot};
use crate::engine::link::imports;
use crate::engine::module::Compiled;
use crate::engine::FIRST_SLICE;
use crate::host::wasi::WasiRun;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::guest_memory::EXPORT_NAME;

engine_impl! { Wasmi {
    /// Validating a binary module this small takes microseconds, less than
    /// a trip to a compile thread.
    const INLINE_COMPILE: usize = 4 * 1024;

    fn convert(module: &Compiled<Self>, function: &str, params: &[Term])
        -> MunitionResult<Self::Call> {
        call::convert(module, function, params)
    }

    fn memory(live: &mut Live<Self>) -> Option<&mut [u8]> {
        let memory = live.instance?.get_memory(&live.store, EXPORT_NAME)?;
        Some(memory.data_mut(&mut live.store))
    }

    fn instantiate(
        env: Env,
        module: Arc<Compiled<Self>>,
        config: &InstanceConfig,
        call: Option<Self::Call>,
    ) -> MunitionResult<(Slot<Self>, Progress)> {
        let wasi = match &config.wasi.0 {
            Some(wasi) => {
                let mut run = WasiRun::new(wasi, config.fuel)?;
                // Wasmi's own descriptors (`wasi::files`); Wasmtime's
                // context opened its own in `WasiRun::new`.
                run.plain
                    .files
                    .preopen(&wasi.preopens)
                    .map_err(MunitionError::Instantiation)?;
                Some(run)
            }
            None => None,
        };
        let mut store = store::new_store(config.store(wasi), config.fuel)?;
        let imports = imports(&mut store, &module, &config.links)?;
        let instantiated = Instance::new(&mut store, &module.native.module, &imports);
        let mut live = Live::new(store, module.clone(), config.fuel);
        let (mut slot, progress) = match instantiated {
            Ok(instance) => {
                live.instance = Some(instance);
                let start_func = module
                    .native
                    .start
                    .then(|| instance.get_func(&live.store, &module.native.internals.start()))
                    .flatten();
                let mut slot = Slot::Idle(Box::new(live));
                match start_func {
                    Some(func) => {
                        let execution = Execution::new(Goal::Start, func, vec![], vec![]);
                        let progress = start(env, &mut slot, execution, FIRST_SLICE)?;
                        (slot, progress)
                    }
                    None => (slot, Progress::Ready),
                }
            }
            // A segment that does not fit, or memory over the limit: the
            // guest's module failed, and its dump says how.
            Err(error) if instantiation_crashed(&error, live.store.data()) => {
                let failure = classify(&error, live.store.data());
                let reason = live.fail(failure, None);
                (Slot::Idle(Box::new(live)), Progress::Crashed(reason))
            }
            Err(error) => return Err(MunitionError::Instantiation(error.to_string())),
        };
        // The call in the same step, when there is one and the instance is
        // ready (else the caller's own call comes later).
        let progress = match (progress, call) {
            (Progress::Ready, Some(call)) => Self::call(env, &mut slot, call)?,
            (progress, _) => progress,
        };
        Ok((slot, progress))
    }

    fn call(env: Env, slot: &mut Slot<Self>, call: Self::Call) -> MunitionResult<Progress> {
        let live = slot.idle()?;
        let func = live
            .instance
            .and_then(|instance| instance.get_func(&live.store, &call.export))
            .ok_or_else(|| MunitionError::FunctionNotFound(call.export.to_string()))?;
        let params = call.params.iter().map(to_val).collect();
        let results = call
            .results
            .iter()
            .map(|ty| wasmi::Val::default_for_ty(to_type(ty)))
            .collect();
        start(
            env,
            slot,
            Execution::new(Goal::Call, func, params, results),
            FIRST_SLICE,
        )
    }

    fn resume(env: Env, slot: &mut Slot<Self>, slice: Duration) -> MunitionResult<Progress> {
        advance(env, slot, slice)
    }

    fn snapshot(live: &mut Live<Self>, full: bool) -> MunitionResult<Snapshot> {
        capture::snapshot(live, full)
    }
}
}
