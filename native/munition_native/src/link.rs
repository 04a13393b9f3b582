//! What each import of a module is linked to, and the imports built from that.
//!
//! Which import gets which function is decided in Elixir
//! (`Munition.Host.Capabilities.resolve/3`), where capabilities are granted
//! and signatures compared. This file links exactly the links it is given: an
//! import without one is refused, so an import can never reach the host
//! without having been granted. Signatures are not compared again here:
//! Wasmtime checks every import's type when it instantiates.

use std::sync::Arc;

use rustler::types::tuple::get_tuple;
use rustler::{Atom, Decoder, NifResult, Term};
use wasmtime::{Extern, FuncType, Store, ValType};

use crate::atoms;
use crate::bridge::{elixir_func, HostBridge};
use crate::builtins;
use crate::error::{MunitionError, MunitionResult};
use crate::module::CompiledModule;
use crate::store::HostState;
use crate::value::atom_val_type;

/// What one import is linked to, as decided by the capability gate.
pub enum Link {
    /// `{:builtin, module, name}`: the built-in host function of that import
    /// name (see `builtins::BUILTINS`).
    Builtin { module: String, name: String },
    /// `{:elixir, module, name, index, params, results}`: the Elixir host
    /// function at `index` in the call's list, with its signature.
    Elixir {
        module: String,
        name: String,
        index: u32,
        params: Vec<ValType>,
        results: Vec<ValType>,
    },
}

impl Link {
    fn links(&self, import_module: &str, import_name: &str) -> bool {
        let (module, name) = match self {
            Link::Builtin { module, name } | Link::Elixir { module, name, .. } => (module, name),
        };
        module == import_module && name == import_name
    }
}

/// Decodes the two tuples above; anything else (another shape, a type that is
/// not `:i32`, `:i64`, `:f32` or `:f64`) is a `badarg`, which Rustler reports
/// as "Could not decode field links on InstanceConfig" of `instance_new/2`.
impl<'a> Decoder<'a> for Link {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let types = |list: Term<'a>| -> NifResult<Vec<ValType>> {
            list.decode::<Vec<Atom>>()?
                .into_iter()
                .map(|atom| atom_val_type(atom).ok_or(rustler::Error::BadArg))
                .collect()
        };
        let elements = get_tuple(term)?;
        let tag: Atom = elements.first().ok_or(rustler::Error::BadArg)?.decode()?;
        match elements[..] {
            [_, module, name] if tag == atoms::builtin() => Ok(Link::Builtin {
                module: module.decode()?,
                name: name.decode()?,
            }),
            [_, module, name, index, params, results] if tag == atoms::elixir() => {
                Ok(Link::Elixir {
                    module: module.decode()?,
                    name: name.decode()?,
                    index: index.decode()?,
                    params: types(params)?,
                    results: types(results)?,
                })
            }
            _ => Err(rustler::Error::BadArg),
        }
    }
}

/// Builds the imports of `module` from `links`, in import order. Elixir host
/// functions are served through `bridge`. An import without a link, or a link
/// to a built-in that does not exist, is refused (all imports without a link
/// named at once): the Elixir side never asks for either.
pub fn resolve_imports(
    store: &mut Store<HostState>,
    compiled: &CompiledModule,
    links: &[Link],
    bridge: Option<Arc<HostBridge>>,
) -> MunitionResult<Vec<Extern>> {
    let mut externs = Vec::new();
    let mut unlinked = Vec::new();
    for import in compiled.module.imports() {
        let Some(link) = links
            .iter()
            .find(|link| link.links(import.module(), import.name()))
        else {
            unlinked.push(format!("{}.{}", import.module(), import.name()));
            continue;
        };
        let func = match link {
            Link::Builtin { module, name } => builtins::find(module, name)
                .ok_or_else(|| {
                    MunitionError::Instantiation(format!(
                        "no built-in host function {module}.{name}"
                    ))
                })?
                .func(store)?,
            Link::Elixir {
                name,
                index,
                params,
                results,
                ..
            } => {
                let ty = FuncType::new(store.engine(), params.clone(), results.clone());
                elixir_func(store, ty, *index, name.clone(), bridge.clone())
            }
        };
        externs.push(Extern::Func(func));
    }
    refuse_unlinked(&unlinked)?;
    Ok(externs)
}

/// Refuses, all named at once, imports (`module.name`) that no link links:
/// the Elixir side never asks for one, whichever engine.
pub fn refuse_unlinked(unlinked: &[String]) -> MunitionResult<()> {
    if unlinked.is_empty() {
        return Ok(());
    }
    Err(MunitionError::Instantiation(format!(
        "import(s) with no link: {}",
        unlinked.join(", ")
    )))
}
