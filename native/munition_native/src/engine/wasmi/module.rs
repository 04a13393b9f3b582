//! Compiling a measured module with Wasmi (steps 4 to 6 of
//! `engine::compile`): its internals exported under reserved names first
//! (see `munition_core::internals`: the start function, to be called
//! resumably, and every memory and global, for dumps), then Wasmi validates
//! every function now and translates each one when it first runs, so
//! compiling is about as cheap as validating. The reserved exports are
//! left out of the module's exports: no caller sees or calls them.

use std::sync::Arc;

use munition_core::internals::{expose, Reserved};
use munition_core::limits::Facts;
use munition_core::scan::scan;
use wasmi::{ExternType, Module};

use super::config::ENGINE;
use super::execution::Wasmi;
use super::value::from_type;
use crate::engine::compile::disk::Disk;
use crate::engine::compile::supported;
use crate::engine::module::{Compiled, Export, ExternKind};
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// A module as Wasmi compiled it, with the names its internals are
/// exported under.
pub struct WasmiModule {
    pub module: Module,
    pub internals: Reserved,
    /// The module has a start function, run as a call after instantiating
    /// (exported as `internals.start()`) rather than inside instantiation.
    pub start: bool,
}

fn kind(ty: &ExternType) -> ExternKind {
    let types = |types: &[wasmi::ValType]| types.iter().map(from_type).collect();
    match ty {
        ExternType::Func(f) => ExternKind::Func(types(f.params()), types(f.results())),
        ExternType::Memory(_) => ExternKind::Memory,
        ExternType::Table(_) => ExternKind::Table,
        ExternType::Global(g) => ExternKind::Global(from_type(&g.content())),
    }
}

/// `_disk` is always `None`: Wasmi keeps no compiled code on disk (see
/// `engine::compile::disk`).
pub fn compile(
    wasm: &[u8],
    facts: Facts,
    hash: String,
    _disk: Option<&Disk>,
) -> MunitionResult<Compiled<Wasmi>> {
    let scan = scan(wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    let start = scan.stats.has_start;
    // Validation errors win over what Munition does not support, as on the
    // Wasmtime side. Sections that cannot be read are in a module that does
    // not validate: compiling the original bytes says why.
    let exposed = expose(
        wasm,
        scan.memories.len() as u32,
        scan.global_export_names.len() as u32,
    );
    let (runnable, internals) = match &exposed {
        Some(exposed) => (&exposed.wasm[..], exposed.names.clone()),
        None => (wasm, Reserved::avoiding([])),
    };
    let module =
        Module::new(&ENGINE, runnable).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    supported(&facts)?;
    match module.get_export(&internals.start()) {
        None if start => {
            return Err(MunitionError::Unsupported(
                "the module's start function cannot be made resumable".into(),
            ))
        }
        // Exported, the start function's type is no longer checked as a start
        // function's: one with parameters or results makes the module
        // invalid, as Wasmi says of the original bytes.
        Some(ExternType::Func(ty)) if !ty.params().is_empty() || !ty.results().is_empty() => {
            let error = Module::new(&ENGINE, wasm).err().map_or(
                "the start function must take and return nothing".into(),
                |e| e.to_string(),
            );
            return Err(MunitionError::InvalidModule(error));
        }
        _ => {}
    }
    let imports: Vec<_> = module
        .imports()
        .map(|import| {
            (
                import.module().to_string(),
                import.name().to_string(),
                kind(import.ty()),
            )
        })
        .collect();
    let exports: Vec<_> = module
        .exports()
        .filter(|export| !internals.is_reserved(export.name()))
        .map(|export| Export::<Arc<str>> {
            name: export.name().to_string(),
            kind: kind(export.ty()),
            func: Some(export.name().into()),
        })
        .collect();
    let native = WasmiModule {
        module,
        internals,
        start,
    };
    Ok(Compiled::new(native, hash, scan, facts, imports, exports))
}
