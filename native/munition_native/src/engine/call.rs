//! Calling an export, for every engine: the function found among the
//! module's exports and the arguments checked and converted before any
//! guest code runs, so that every engine refuses the same calls with the
//! same errors.

use rustler::Term;

use crate::engine::module::Compiled;
use crate::engine::types::EngineTypes;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::value::{to_value, type_atom, Value, ValueType};

/// A call checked against the module's types, before there is an instance:
/// the export to call in whichever instance of the module, the converted
/// arguments, and the types of its results.
pub struct Call<E: EngineTypes> {
    pub export: E::Export,
    pub params: Vec<Value>,
    pub results: Vec<ValueType>,
}

/// Finds `function` among the module's exports and converts `params` to its
/// parameter types (`:function_not_found`, `:bad_args`).
pub fn convert<E: EngineTypes>(
    module: &Compiled<E>,
    function: &str,
    params: &[Term],
) -> MunitionResult<Call<E>> {
    let exported = module
        .functions
        .get(function)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
    if params.len() != exported.params.len() {
        return Err(MunitionError::BadArgs(format!(
            "{function} takes {} argument(s) ({:?}), got {}",
            exported.params.len(),
            exported.params.iter().map(type_atom).collect::<Vec<_>>(),
            params.len()
        )));
    }
    let params = params
        .iter()
        .zip(&exported.params)
        .enumerate()
        .map(|(position, (term, ty))| to_value(*term, *ty, "argument", position))
        .collect::<MunitionResult<Vec<Value>>>()?;
    Ok(Call {
        export: exported.export.clone(),
        params,
        results: exported.results.clone(),
    })
}
