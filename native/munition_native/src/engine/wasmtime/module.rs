//! Compiling a measured module with Wasmtime: validation, what Munition
//! does not run, Cranelift (steps 4 to 6 of `engine::compile`), and what
//! the module says of its imports and exports.

use munition_core::limits::Facts;
use munition_core::scan::scan;
use wasmtime::{ExternType, Module, ModuleExport};

use super::config::ENGINE;
use super::execution::Wasmtime;
use super::value::from_type;
use crate::engine::compile::supported;
use crate::engine::module::{Compiled, Export, ExternKind};
use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};

fn kind(ty: &ExternType) -> ExternKind {
    match ty {
        ExternType::Func(f) => ExternKind::Func(
            f.params().map(|t| from_type(&t)).collect(),
            f.results().map(|t| from_type(&t)).collect(),
        ),
        ExternType::Memory(_) => ExternKind::Memory,
        ExternType::Table(_) => ExternKind::Table,
        ExternType::Global(g) => ExternKind::Global(from_type(g.content())),
        ExternType::Tag(_) => ExternKind::Tag,
    }
}

pub fn compile(wasm: &[u8], facts: Facts, hash: String) -> MunitionResult<Compiled<Wasmtime>> {
    // Validation errors win over what Munition does not support: a module
    // that is both invalid and too large for a slot is invalid.
    Module::validate(&ENGINE, wasm).map_err(|e| MunitionError::InvalidModule(error_chain(&e)))?;
    supported(&facts)?;
    let scan = scan(wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    // The module is valid: what Wasmtime refuses now is a limit of the
    // engine (an instance larger than its slot, a function Cranelift cannot
    // encode), not a fault of the module.
    let module =
        Module::new(&ENGINE, wasm).map_err(|e| MunitionError::Unsupported(error_chain(&e)))?;
    let imports = module.imports().map(|import| {
        (
            import.module().to_string(),
            import.name().to_string(),
            kind(&import.ty()),
        )
    });
    let exports = module.exports().map(|export| Export::<ModuleExport> {
        name: export.name().to_string(),
        kind: kind(&export.ty()),
        func: module.get_export_index(export.name()),
    });
    let (imports, exports): (Vec<_>, Vec<_>) = (imports.collect(), exports.collect());
    Ok(Compiled::new(module, hash, scan, facts, imports, exports))
}
