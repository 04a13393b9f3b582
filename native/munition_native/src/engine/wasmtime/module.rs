//! Compiling a measured module with Wasmtime: validation, what Munition
//! does not run, Cranelift (steps 4 to 6 of `engine::compile`), and what
//! the module says of its imports and exports; or, with a cache directory,
//! the code Cranelift compiled before for the same wasm, loaded from it
//! (`engine::compile::disk`).

use munition_core::code_cache::{Key, KeyHasher};
use munition_core::limits::Facts;
use munition_core::scan::{scan, Scan};
use wasmtime::{ExternType, Module, ModuleExport};

use super::config::{ENGINE, ENGINE_KEY};
use super::execution::Wasmtime;
use super::value::from_type;
use crate::engine::compile::disk::{self, Disk};
use crate::engine::compile::supported;
use crate::engine::module::{Compiled, Export, ExternKind, Origin};
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

pub fn compile(
    wasm: &[u8],
    facts: Facts,
    hash: String,
    disk: Option<&Disk>,
) -> MunitionResult<Compiled<Wasmtime>> {
    let Some(disk) = disk else {
        return compile_new(wasm, facts, hash);
    };
    let key = module_key(&disk.wasm_hash);
    if let Some(module) = from_disk(disk, &key) {
        // What a compilation checks after validating, checked again: the
        // settings may have changed since (`max_memories_per_module`).
        // Validation itself is not repeated: the same wasm validated under
        // the same engine configuration (both in the key) before its code
        // was stored.
        supported(&facts)?;
        let scan = scan(wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
        let mut compiled = describe(module, hash, scan, facts);
        compiled.origin = Origin::Disk;
        return Ok(compiled);
    }
    let compiled = compile_new(wasm, facts, hash)?;
    match compiled.native.serialize() {
        Ok(code) => disk::store(disk.dir, &key, &code),
        Err(error) => disk::reject(disk.dir, &key, &error_chain(&error)),
    }
    Ok(compiled)
}

/// A core module's key: the engine's, and the hash of the wasm compiled.
fn module_key(wasm_hash: &str) -> Key {
    KeyHasher::new("munition wasmtime module")
        .part(ENGINE_KEY.bytes())
        .part(wasm_hash)
        .key()
}

/// The module whose code is stored under `key`, if a file passes every
/// check of `code_cache::load` and Wasmtime's own (its version and the
/// engine's configuration, again, and that the module fits the pooling
/// allocator's slots).
fn from_disk(disk: &Disk, key: &Key) -> Option<Module> {
    let payload = disk::load(disk.dir, key)?;
    // SAFETY: `Module::deserialize_open_file` requires a file holding what
    // `Module::serialize` produced (Wasmtime ignores what follows its
    // object: the trailer), unmodified while the module lives. This is the
    // file that `code_cache::load` checked through the same descriptor: in
    // a directory and a file owned by this process's effective uid and
    // writable by nobody else, with the trailer of this key, the length and
    // the digest it was stored with; and only `compile` below stores under
    // a module key, what `serialize` returned. Files are replaced by
    // renaming, never written in place. Only a process of the same uid
    // could write other bytes there, and it could do worse to this process
    // directly: outside what this cache defends against (see
    // `munition_core::code_cache`).
    match unsafe { Module::deserialize_open_file(&ENGINE, payload.into_file()) } {
        Ok(module) => Some(module),
        Err(error) => {
            disk::reject(disk.dir, key, &error_chain(&error));
            None
        }
    }
}

fn compile_new(wasm: &[u8], facts: Facts, hash: String) -> MunitionResult<Compiled<Wasmtime>> {
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
    Ok(describe(module, hash, scan, facts))
}

/// `module` with its imports and exports as Wasmtime lists them.
fn describe(module: Module, hash: String, scan: Scan, facts: Facts) -> Compiled<Wasmtime> {
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
    Compiled::new(module, hash, scan, facts, imports, exports)
}
