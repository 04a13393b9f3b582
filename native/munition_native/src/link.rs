//! What each import of a module is linked to, and the imports built from that.
//!
//! Which import gets which function is decided in Elixir
//! (`Munition.Host.Capabilities`), where the capability table lives; this file
//! links exactly the `links` it is given and refuses every other import, so an
//! import can never reach the host without having been granted.

use std::sync::Arc;

use rustler::Atom;
use wasmtime::{Extern, FuncType, Store, ValType};

use crate::bridge::{elixir_func, HostBridge};
use crate::builtins;
use crate::error::{DeniedImport, MunitionError, MunitionResult};
use crate::module::CompiledModule;
use crate::store::HostState;
use crate::value::{atom_val_type, val_type_atom};

/// What one import is linked to, as decided by the capability gate.
#[derive(rustler::NifMap, Clone)]
pub struct Link {
    pub module: String,
    pub name: String,
    /// A built-in host function by name (`"get_time_ms"`, `"abort"`, ...).
    pub builtin: Option<String>,
    /// Or an Elixir host function: its index in the call's list, with its signature.
    pub host_index: Option<u32>,
    pub params: Vec<Atom>,
    pub results: Vec<Atom>,
}

/// Builds the imports for `module` from `links`, in import order. Any import
/// without a link is refused, all of them listed at once. Elixir host
/// functions are served through `bridge`.
pub fn resolve_imports(
    store: &mut Store<HostState>,
    compiled: &CompiledModule,
    links: &[Link],
    bridge: Option<Arc<HostBridge>>,
) -> MunitionResult<Vec<Extern>> {
    let mut externs = Vec::new();
    let mut denied = Vec::new();
    for import in compiled.module.imports() {
        let link = links
            .iter()
            .find(|l| l.module == import.module() && l.name == import.name());
        let (link, ty) = match (link, import.ty().func()) {
            (Some(link), Some(ty)) => (link, ty.clone()),
            _ => {
                denied.push(DeniedImport {
                    module: import.module().to_string(),
                    name: import.name().to_string(),
                    needs: None,
                });
                continue;
            }
        };
        let (params, results): (Vec<ValType>, Vec<ValType>) = match (&link.builtin, link.host_index)
        {
            (Some(name), _) => {
                let builtin = builtins::find(&link.module, name).ok_or_else(|| {
                    MunitionError::Instantiation(format!("no built-in host function {name:?}"))
                })?;
                (builtin.params.to_vec(), builtin.results.to_vec())
            }
            (None, Some(_)) => (
                link.params
                    .iter()
                    .copied()
                    .filter_map(atom_val_type)
                    .collect(),
                link.results
                    .iter()
                    .copied()
                    .filter_map(atom_val_type)
                    .collect(),
            ),
            (None, None) => {
                return Err(MunitionError::Instantiation(format!(
                    "link for {}.{} names no function",
                    link.module, link.name
                )))
            }
        };
        let wanted: Vec<Atom> = ty.params().map(|t| val_type_atom(&t)).collect();
        let wanted_results: Vec<Atom> = ty.results().map(|t| val_type_atom(&t)).collect();
        let have: Vec<Atom> = params.iter().map(val_type_atom).collect();
        let have_results: Vec<Atom> = results.iter().map(val_type_atom).collect();
        if wanted != have || wanted_results != have_results {
            return Err(MunitionError::Instantiation(format!(
                "import {}.{} has signature {:?} -> {:?}, but the host function is {:?} -> {:?}",
                link.module, link.name, wanted, wanted_results, have, have_results
            )));
        }
        let func = match (&link.builtin, link.host_index) {
            (Some(name), _) => builtins::find(&link.module, name)
                .expect("found above")
                .func(store),
            (None, Some(index)) => {
                let ty = FuncType::new(store.engine(), params, results);
                elixir_func(store, ty, index, link.name.clone(), bridge.clone())
            }
            (None, None) => unreachable!("checked above"),
        };
        externs.push(Extern::Func(func));
    }
    if denied.is_empty() {
        Ok(externs)
    } else {
        Err(MunitionError::CapabilityDenied(denied))
    }
}
