//! Calling an export, for every engine: the function found among the
//! module's exports and the arguments checked and converted before any
//! guest code runs, so that every engine refuses the same calls with the
//! same errors.

use rustler::{Binary, Term};

use crate::engine::module::Compiled;
use crate::engine::types::EngineTypes;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::guest_memory::INLINE_COPY;
use crate::vocabulary::value::{to_value, type_atom, Value, ValueType};

/// A call checked against the module's types, before there is an instance:
/// the export to call in whichever instance of the module, the converted
/// arguments, and the types of its results.
pub struct Call<E: EngineTypes> {
    pub export: E::Export,
    pub params: Vec<Value>,
    pub results: Vec<ValueType>,
    /// Binary arguments to copy in first (see `convert_binary`).
    pub binary: Option<BinaryAbi<E>>,
}

/// A call's binary arguments and result, in Munition's binary ABI (see
/// `Munition.Instance.BinaryABI`): each binary argument is copied into
/// memory the guest's allocator gave, and passed as `(ptr, len)`; a binary
/// result names its bytes with `(ptr, len)` or one i64. Done in the same
/// guest execution as the call by an engine that can
/// (`Engine::convert_at_once`).
pub struct BinaryAbi<E: EngineTypes> {
    /// The allocator export and its name, for a message (`None` without
    /// binary arguments).
    pub alloc: Option<(E::Export, String)>,
    /// `(index of the ptr parameter, bytes)` of each binary argument.
    pub inputs: Vec<(usize, Vec<u8>)>,
    /// Whether the result names bytes to read.
    pub result: bool,
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
        binary: None,
    })
}

/// `convert` for a call in Munition's binary ABI made with the
/// instantiation (`at_once`): binary arguments become `(ptr, len)`, `ptr`
/// filled in when the allocator has run (`BinaryAbi`). Anything the Elixir
/// side did not check already (`Munition.Instance.BinaryABI.check/1`) is an
/// error, and the call is then made the long way, which says why.
pub fn convert_binary<E: EngineTypes>(
    module: &Compiled<E>,
    at_once: &AtOnce,
) -> MunitionResult<Call<E>> {
    let function = at_once.function;
    let exported = module
        .functions
        .get(function)
        .ok_or_else(|| MunitionError::FunctionNotFound(function.to_string()))?;
    // A name that is not UTF-8 names no export.
    let alloc_name = std::str::from_utf8(at_once.alloc.as_slice()).ok();
    let alloc = alloc_name
        .and_then(|name| module.functions.get(name))
        .filter(|alloc| alloc.params == [ValueType::I32] && alloc.results == [ValueType::I32]);
    let mismatch = || MunitionError::BadArgs(format!("{function}: not a call of the binary ABI"));
    // More is copied on a dirty scheduler, the long way. Counted before
    // anything is copied: a 1 MiB argument copied here only to be refused
    // cost a fresh allocation's page faults and its `munmap` (0.5 ms of a
    // 2.1 ms call of a hash of 1 MiB).
    let copied: usize = at_once
        .params
        .iter()
        .filter_map(|term| term.decode::<Binary>().ok())
        .map(|binary| binary.len())
        .sum();
    if copied as u64 > INLINE_COPY {
        return Err(MunitionError::BadArgs(format!(
            "{function}: {copied} bytes to copy in"
        )));
    }
    let mut params = Vec::new();
    let mut inputs = Vec::new();
    let mut types = exported.params.iter();
    for (position, term) in at_once.params.iter().enumerate() {
        if let Ok(binary) = term.decode::<Binary>() {
            match (types.next(), types.next()) {
                (Some(ValueType::I32), Some(ValueType::I32)) => {}
                _ => return Err(mismatch()),
            }
            let len = i32::try_from(binary.len()).map_err(|_| mismatch())?;
            inputs.push((params.len(), binary.as_slice().to_vec()));
            params.extend([Value::I32(0), Value::I32(len)]);
        } else {
            let ty = types.next().ok_or_else(mismatch)?;
            params.push(to_value(*term, *ty, "argument", position)?);
        }
    }
    if types.next().is_some() {
        return Err(mismatch());
    }
    let result = at_once.binary_result;
    if result
        && !matches!(
            exported.results[..],
            [ValueType::I32, ValueType::I32] | [ValueType::I64]
        )
    {
        return Err(mismatch());
    }
    let alloc = match (alloc, inputs.is_empty()) {
        (_, true) => None,
        (Some(alloc), false) => Some((
            alloc.export.clone(),
            alloc_name.unwrap_or_default().to_string(),
        )),
        (None, false) => return Err(mismatch()),
    };
    Ok(Call {
        export: exported.export.clone(),
        params,
        results: exported.results.clone(),
        binary: Some(BinaryAbi {
            alloc,
            inputs,
            result,
        }),
    })
}

/// The call made with an instantiation, as `Munition.Instance.State`'s
/// `:call` says: `{function, args, release, alloc, binary_result}`, the
/// arguments as given (binaries included).
#[derive(rustler::NifTuple)]
#[rustler(decode)]
pub struct AtOnce<'a> {
    pub function: &'a str,
    pub params: Vec<Term<'a>>,
    /// Release the store as soon as the call returns (nothing is read
    /// after; a binary result is read by an engine that reads it itself).
    pub release: bool,
    /// The allocator's name, as given (any binary: `:alloc` is not checked
    /// to be UTF-8).
    pub alloc: Binary<'a>,
    pub binary_result: bool,
}

impl AtOnce<'_> {
    /// Whether the call has a binary argument.
    pub fn has_binary(&self) -> bool {
        self.params.iter().any(|term| term.is_binary())
    }
}
