//! Calling an export of a live instance: the arguments checked and converted
//! before any guest code runs, then the first slice of the call.

use rustler::{Env, ResourceArc, Term};
use wasmtime::{AsContextMut, Extern, Func, Instance, ModuleExport, Val};

use crate::engine::FIRST_SLICE;
use crate::error::{MunitionError, MunitionResult};
use crate::execution::{advance, Live, Progress, Slot, Step};
use crate::instance::InstanceRef;
use crate::module::CompiledModule;
use crate::value::{to_val, val_type_atom};

/// Calls `function` with `params` and runs the first slice of it. Argument
/// errors come back as `{:error, {:bad_args, _}}` before any guest code runs.
#[rustler::nif]
fn instance_call<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef>,
    function: String,
    params: Vec<Term<'a>>,
) -> MunitionResult<Progress> {
    let mut slot = instance.lock();
    let call = prepare(slot.idle()?, &function, &params)?;
    start(env, &mut slot, call)
}

/// An export and its arguments, checked and converted: nothing of the guest
/// has run yet.
pub struct PreparedCall {
    func: Func,
    params: Vec<Val>,
    results: Vec<Val>,
}

/// Finds `function` in the instance and converts `params` to its parameter
/// types. Errors (`:function_not_found`, `:bad_args`) leave the instance as
/// it was.
pub fn prepare(live: &mut Live, function: &str, params: &[Term]) -> MunitionResult<PreparedCall> {
    let wasm_instance = live.instance.ok_or_else(|| {
        MunitionError::InvalidState("instance did not finish instantiating".into())
    })?;
    let args = convert(&live.module, function, params)?;
    let func = args
        .func(&mut live.store, wasm_instance)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
    let CallArgs {
        params, results, ..
    } = args;
    Ok(PreparedCall {
        func,
        params,
        results,
    })
}

/// A call checked against the module's types, before there is an instance:
/// the export to call in whichever instance of the module, the converted
/// arguments, and slots for the results.
pub struct CallArgs {
    pub export: ModuleExport,
    pub params: Vec<Val>,
    pub results: Vec<Val>,
}

impl CallArgs {
    /// The export in `instance`, an instance of the module the call was
    /// converted for.
    pub fn func(&self, store: impl AsContextMut, instance: Instance) -> Option<Func> {
        instance
            .get_module_export(store, &self.export)
            .and_then(Extern::into_func)
    }
}

/// Finds `function` among the module's exports and converts `params` to its
/// parameter types (`:function_not_found`, `:bad_args`).
pub fn convert(
    module: &CompiledModule,
    function: &str,
    params: &[Term],
) -> MunitionResult<CallArgs> {
    let exported = module
        .functions
        .get(function)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
    if params.len() != exported.params.len() {
        return Err(MunitionError::BadArgs(format!(
            "{function} takes {} argument(s) ({:?}), got {}",
            exported.params.len(),
            exported
                .params
                .iter()
                .map(val_type_atom)
                .collect::<Vec<_>>(),
            params.len()
        )));
    }
    let params = params
        .iter()
        .zip(&exported.params)
        .enumerate()
        .map(|(position, (term, ty))| to_val(*term, ty, "argument", position))
        .collect::<MunitionResult<Vec<Val>>>()?;
    // Slots for the results, overwritten by the call: their initial values
    // never reach anyone, so a type without a default gets any placeholder.
    let results: Vec<Val> = exported
        .results
        .iter()
        .map(|t| Val::default_for_ty(t).unwrap_or(Val::I32(0)))
        .collect();
    Ok(CallArgs {
        export: exported.export,
        params,
        results,
    })
}

/// Starts a prepared call on the idle instance and runs its first slice.
pub fn start(env: Env, slot: &mut Slot, call: PreparedCall) -> MunitionResult<Progress> {
    let PreparedCall {
        func,
        params,
        mut results,
    } = call;
    slot.start(|mut live| async move {
        let result = func
            .call_async(&mut live.store, &params, &mut results)
            .await;
        (live, result.map(|()| Step::Returned(results)))
    })?;
    advance(env, slot, FIRST_SLICE)
}
