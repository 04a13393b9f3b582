//! A compiled module, whichever engine compiled it, and the static facts
//! about it that the rest of Munition needs: imports, exports, export names
//! of globals and memories, the complexity figures the fuel policy reads,
//! and the exported functions with their signatures, found once at compile
//! time so that no call pays for them again.

use std::collections::HashMap;
use std::sync::Arc;

use munition_core::limits::Facts;
use munition_core::scan::{MemoryInfo, ModuleStats, Scan};
use rustler::{Atom, Resource, ResourceArc};

use crate::atoms;
use crate::engine::types::EngineTypes;
use crate::vocabulary::value::{type_atom, ValueType};

/// A compiled module and everything Munition learned about it once.
pub struct Compiled<E: EngineTypes> {
    pub native: E::Native,
    pub info: ModuleInfo,
    /// The exported functions by name, with where to find each in an
    /// instance and its signature.
    pub functions: HashMap<String, ExportedFunc<E::Export>>,
    /// What the pre-scan measured: a cache hit is checked against the
    /// caller's limits with these, as a compilation would have been.
    pub facts: Facts,
    /// Whether the engine compiled it or loaded its code from the disk.
    pub origin: Origin,
}

/// Where a compiled module's code came from: only `Compiled` counts as a
/// compilation in the cache's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    /// The persistent cache of compiled code (`engine::compile::disk`).
    Disk,
}

// A panic inside a NIF never leaves a compiled module half-updated: it is
// immutable once built.
impl<E: EngineTypes> std::panic::RefUnwindSafe for Compiled<E> {}

/// An exported function: where to find it in any instance of its module,
/// and its signature.
pub struct ExportedFunc<X> {
    pub export: X,
    pub params: Vec<ValueType>,
    pub results: Vec<ValueType>,
}

/// What kind of thing an import or export is, in the engine's terms made
/// Munition's.
pub enum ExternKind {
    Func(Vec<ValueType>, Vec<ValueType>),
    Memory,
    Table,
    Global(ValueType),
    Tag,
}

/// One export as an engine lists it: its name, kind, and (for a function)
/// where to find it in an instance.
pub struct Export<X> {
    pub name: String,
    pub kind: ExternKind,
    pub func: Option<X>,
}

#[derive(Clone, rustler::NifMap)]
pub struct ModuleInfo {
    /// Lowercase hex SHA-256 of the bytes the caller gave (wasm or WAT).
    pub hash: String,
    pub imports: Vec<ImportInfo>,
    pub exports: Vec<ExportInfo>,
    pub memories: Vec<MemoryInfo>,
    pub stats: ModuleStats,
    /// Export name of each global, by global index (None when not exported).
    pub global_export_names: Vec<Option<String>>,
    /// Export name of each memory, by memory index (None when not exported).
    pub memory_export_names: Vec<Option<String>>,
    /// A component's world (`None` for a core module).
    pub component: Option<crate::engine::component::module::ComponentInfo>,
}

#[derive(Clone, rustler::NifMap)]
pub struct ImportInfo {
    pub module: String,
    pub name: String,
    pub kind: Atom,
    pub params: Vec<Atom>,
    pub results: Vec<Atom>,
}

#[derive(Clone, rustler::NifMap)]
pub struct ExportInfo {
    pub name: String,
    pub kind: Atom,
    pub params: Vec<Atom>,
    pub results: Vec<Atom>,
}

fn atoms_of(types: &[ValueType]) -> Vec<Atom> {
    types.iter().map(type_atom).collect()
}

fn describe(kind: &ExternKind) -> (Atom, Vec<Atom>, Vec<Atom>) {
    match kind {
        ExternKind::Func(params, results) => (atoms::func(), atoms_of(params), atoms_of(results)),
        ExternKind::Memory => (atoms::memory(), vec![], vec![]),
        ExternKind::Table => (atoms::table(), vec![], vec![]),
        ExternKind::Global(ty) => (atoms::global(), vec![], vec![type_atom(ty)]),
        ExternKind::Tag => (atoms::tag(), vec![], vec![]),
    }
}

impl<E: EngineTypes> Compiled<E> {
    /// The module `native` with what the scan and the pre-scan found, and
    /// its imports (`(module, name, kind)`) and exports as the engine lists
    /// them.
    pub fn new(
        native: E::Native,
        hash: String,
        scan: Scan,
        facts: Facts,
        imports: Vec<(String, String, ExternKind)>,
        exports: Vec<Export<E::Export>>,
    ) -> Self {
        let imports = imports
            .into_iter()
            .map(|(module, name, kind)| {
                let (kind, params, results) = describe(&kind);
                ImportInfo {
                    module,
                    name,
                    kind,
                    params,
                    results,
                }
            })
            .collect();
        let mut functions = HashMap::new();
        let mut export_infos = Vec::new();
        for export in exports {
            let (kind, params, results) = describe(&export.kind);
            if let (ExternKind::Func(params, results), Some(func)) = (export.kind, export.func) {
                functions.insert(
                    export.name.clone(),
                    ExportedFunc {
                        export: func,
                        params,
                        results,
                    },
                );
            }
            export_infos.push(ExportInfo {
                name: export.name,
                kind,
                params,
                results,
            });
        }
        Compiled {
            native,
            info: ModuleInfo {
                hash,
                imports,
                exports: export_infos,
                memories: scan.memories,
                stats: scan.stats,
                global_export_names: scan.global_export_names,
                memory_export_names: scan.memory_export_names,
                component: None,
            },
            functions,
            facts,
            origin: Origin::Compiled,
        }
    }
}

/// A compiled module as Elixir holds it. One resource type per engine: a
/// module of one engine given to the other's NIF is a `badarg`.
pub struct ModuleRef<E: EngineTypes>(pub Arc<Compiled<E>>);

impl<E: EngineTypes> Resource for ModuleRef<E> {}

/// `{handle, info}`, as every NIF that hands out a module answers.
pub fn handle<E: EngineTypes>(
    compiled: &Arc<Compiled<E>>,
) -> (ResourceArc<ModuleRef<E>>, ModuleInfo) {
    (
        ResourceArc::new(ModuleRef(compiled.clone())),
        compiled.info.clone(),
    )
}
