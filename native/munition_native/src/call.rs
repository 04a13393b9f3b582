//! Calling an export of a live instance: the arguments checked and converted
//! before any guest code runs, then the first slice of the call.

use rustler::{Env, ResourceArc, Term};
use wasmtime::Val;

use crate::engine::FIRST_SLICE;
use crate::error::{MunitionError, MunitionResult};
use crate::execution::{advance, Progress, Step};
use crate::instance::InstanceRef;
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
    let live = slot.idle()?;
    let wasm_instance = live.instance.ok_or_else(|| {
        MunitionError::InvalidState("instance did not finish instantiating".into())
    })?;
    let func = wasm_instance
        .get_func(&mut live.store, &function)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.clone()))?;
    let ty = func.ty(&live.store);

    if params.len() != ty.params().len() {
        return Err(MunitionError::BadArgs(format!(
            "{function} takes {} argument(s) ({:?}), got {}",
            ty.params().len(),
            ty.params().map(|t| val_type_atom(&t)).collect::<Vec<_>>(),
            params.len()
        )));
    }
    let vals = params
        .iter()
        .zip(ty.params())
        .enumerate()
        .map(|(position, (term, ty))| to_val(*term, &ty, &format!("argument {position}")))
        .collect::<MunitionResult<Vec<Val>>>()?;
    // Slots for the results, overwritten by the call: their initial values
    // never reach anyone, so a type without a default gets any placeholder.
    let mut results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();

    slot.start(|mut live| async move {
        let result = func.call_async(&mut live.store, &vals, &mut results).await;
        (live, result.map(|()| Step::Returned(results)))
    })?;
    advance(env, &mut slot, FIRST_SLICE)
}
