//! Compiling a measured module with Wasmi (steps 4 to 6 of
//! `engine::compile`): the start section moved to an export first (see
//! `munition_core::start`), then Wasmi validates every function now and
//! translates each one when it first runs, so compiling is about as cheap
//! as validating.

use std::sync::Arc;

use munition_core::limits::Facts;
use munition_core::scan::scan;
use munition_core::start::{exported_start, START_EXPORT};
use wasmi::{ExternType, Module};

use super::config::ENGINE;
use super::execution::Wasmi;
use super::value::from_type;
use crate::engine::compile::supported;
use crate::engine::module::{Compiled, Export, ExternKind};
use crate::vocabulary::error::{MunitionError, MunitionResult};

fn kind(ty: &ExternType) -> ExternKind {
    let types = |types: &[wasmi::ValType]| types.iter().map(from_type).collect();
    match ty {
        ExternType::Func(f) => ExternKind::Func(types(f.params()), types(f.results())),
        ExternType::Memory(_) => ExternKind::Memory,
        ExternType::Table(_) => ExternKind::Table,
        ExternType::Global(g) => ExternKind::Global(from_type(&g.content())),
    }
}

pub fn compile(wasm: &[u8], facts: Facts, hash: String) -> MunitionResult<Compiled<Wasmi>> {
    let scan = scan(wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    let start = scan.stats.has_start;
    // Validation errors win over what Munition does not support, as on the
    // Wasmtime side. A start section that cannot be moved is in a module
    // that does not validate: compiling the original bytes says why.
    let runnable = match start.then(|| exported_start(wasm)).flatten() {
        Some(moved) => moved,
        None => wasm.to_vec(),
    };
    let module = Module::new(&ENGINE, &runnable[..])
        .map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    supported(&facts)?;
    if start && module.get_export(START_EXPORT).is_none() {
        return Err(MunitionError::Unsupported(
            "the module's start function cannot be made resumable".into(),
        ));
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
        .filter(|export| export.name() != START_EXPORT)
        .map(|export| Export::<Arc<str>> {
            name: export.name().to_string(),
            kind: kind(export.ty()),
            func: Some(export.name().into()),
        })
        .collect();
    let mut compiled = Compiled::new(module, hash, scan, facts, imports, exports);
    compiled.start = start;
    Ok(compiled)
}
