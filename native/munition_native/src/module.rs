//! Compiling guest modules, the content-addressed cache of compiled modules,
//! and the static facts about a module that the rest of Munition needs
//! (imports, exports, export names of globals, and the complexity figures the
//! fuel policy reads).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use once_cell::sync::Lazy;
use rustler::{Binary, Resource, ResourceArc};
use sha2::{Digest, Sha256};
use wasmparser::{Operator, Payload};
use wasmtime::{ExternType, Module, ValType};

use crate::atoms;
use crate::engine::ENGINE;
use crate::error::{MunitionError, MunitionResult};

/// A compiled module and everything Munition learned about it once, at compile
/// time, so no call pays for it again.
pub struct CompiledModule {
    pub module: Module,
    pub info: ModuleInfo,
}

pub struct ModuleRef(pub Arc<CompiledModule>);

#[rustler::resource_impl]
impl Resource for ModuleRef {}

// A panic inside a NIF never leaves a compiled module half-updated: it is
// immutable once built.
impl std::panic::RefUnwindSafe for ModuleRef {}

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
    /// Number of imported globals: defined global `i` has index `imported + i`.
    pub imported_globals: u32,
}

#[derive(Clone, rustler::NifMap)]
pub struct ImportInfo {
    pub module: String,
    pub name: String,
    pub kind: rustler::Atom,
    pub params: Vec<rustler::Atom>,
    pub results: Vec<rustler::Atom>,
}

#[derive(Clone, rustler::NifMap)]
pub struct ExportInfo {
    pub name: String,
    pub kind: rustler::Atom,
    pub params: Vec<rustler::Atom>,
    pub results: Vec<rustler::Atom>,
}

#[derive(Clone, rustler::NifMap)]
pub struct MemoryInfo {
    pub min_pages: u64,
    pub max_pages: Option<u64>,
    pub page_size: u64,
    pub memory64: bool,
    pub imported: bool,
}

/// Static complexity figures, read by `Munition.Fuel.Policy` for `fuel: :auto`.
#[derive(Clone, Default, rustler::NifMap)]
pub struct ModuleStats {
    pub code_size: u64,
    pub function_count: u64,
    pub instruction_count: u64,
    pub loop_count: u64,
    pub max_loop_depth: u64,
    pub call_count: u64,
    pub data_size: u64,
    pub memory_pages: u64,
    pub has_start: bool,
}

pub fn val_type_atom(ty: &ValType) -> rustler::Atom {
    match ty {
        ValType::I32 => atoms::i32(),
        ValType::I64 => atoms::i64(),
        ValType::F32 => atoms::f32(),
        ValType::F64 => atoms::f64(),
        ValType::V128 => atoms::v128(),
        ValType::Ref(_) => atoms::ref_(),
    }
}

fn extern_kind(ty: &ExternType) -> (rustler::Atom, Vec<rustler::Atom>, Vec<rustler::Atom>) {
    match ty {
        ExternType::Func(f) => (
            atoms::func(),
            f.params().map(|t| val_type_atom(&t)).collect(),
            f.results().map(|t| val_type_atom(&t)).collect(),
        ),
        ExternType::Memory(_) => (atoms::memory(), vec![], vec![]),
        ExternType::Table(_) => (atoms::table(), vec![], vec![]),
        ExternType::Global(g) => (atoms::global(), vec![], vec![val_type_atom(g.content())]),
        ExternType::Tag(_) => (atoms::tag(), vec![], vec![]),
    }
}

/// Content hash of a module's bytes, as lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Compiles `bytes` (binary wasm or WAT text) into a module with its facts.
pub fn compile(bytes: &[u8], hash: String) -> MunitionResult<CompiledModule> {
    let wasm = wat::parse_bytes(bytes)
        .map_err(|e| MunitionError::InvalidModule(format!("cannot parse WAT: {e}")))?;
    let module = Module::new(&ENGINE, &wasm)
        .map_err(|e| MunitionError::InvalidModule(crate::error_chain(&e)))?;
    let scan = scan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;

    let imports = module
        .imports()
        .map(|import| {
            let (kind, params, results) = extern_kind(&import.ty());
            ImportInfo {
                module: import.module().to_string(),
                name: import.name().to_string(),
                kind,
                params,
                results,
            }
        })
        .collect();
    let exports = module
        .exports()
        .map(|export| {
            let (kind, params, results) = extern_kind(&export.ty());
            ExportInfo {
                name: export.name().to_string(),
                kind,
                params,
                results,
            }
        })
        .collect();

    let info = ModuleInfo {
        hash,
        imports,
        exports,
        memories: scan.memories,
        stats: scan.stats,
        global_export_names: scan.global_export_names,
        imported_globals: scan.imported_globals,
    };
    Ok(CompiledModule { module, info })
}

struct Scan {
    stats: ModuleStats,
    memories: Vec<MemoryInfo>,
    global_export_names: Vec<Option<String>>,
    imported_globals: u32,
}

/// One pass over the binary for what Wasmtime's `Module` does not tell us.
fn scan(wasm: &[u8]) -> wasmparser::Result<Scan> {
    let mut stats = ModuleStats::default();
    let mut memories = Vec::new();
    let mut global_count = 0u32;
    let mut imported_globals = 0u32;
    let mut global_exports: HashMap<u32, String> = HashMap::new();

    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(reader) => {
                for imports in reader {
                    for import in imports? {
                        let (_, import) = import?;
                        match import.ty {
                            wasmparser::TypeRef::Global(_) => {
                                imported_globals += 1;
                                global_count += 1;
                            }
                            wasmparser::TypeRef::Memory(m) => {
                                memories.push(memory_info(&m, true));
                            }
                            _ => {}
                        }
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    memories.push(memory_info(&memory?, false));
                }
            }
            Payload::GlobalSection(reader) => global_count += reader.count(),
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    if export.kind == wasmparser::ExternalKind::Global {
                        global_exports.insert(export.index, export.name.to_string());
                    }
                }
            }
            Payload::StartSection { .. } => stats.has_start = true,
            Payload::DataSection(reader) => {
                for data in reader {
                    stats.data_size += data?.data.len() as u64;
                }
            }
            Payload::CodeSectionEntry(body) => {
                stats.function_count += 1;
                stats.code_size += body.range().len() as u64;
                scan_body(&body, &mut stats)?;
            }
            _ => {}
        }
    }

    stats.memory_pages = memories.iter().map(|m| m.min_pages).sum();
    let global_export_names = (0..global_count)
        .map(|index| global_exports.remove(&index))
        .collect();
    Ok(Scan {
        stats,
        memories,
        global_export_names,
        imported_globals,
    })
}

fn memory_info(ty: &wasmparser::MemoryType, imported: bool) -> MemoryInfo {
    MemoryInfo {
        min_pages: ty.initial,
        max_pages: ty.maximum,
        page_size: ty.page_size_log2.map_or(65536, |log2| 1u64 << log2),
        memory64: ty.memory64,
        imported,
    }
}

/// Counts instructions, calls and loops (with their deepest nesting) in one body.
fn scan_body(body: &wasmparser::FunctionBody, stats: &mut ModuleStats) -> wasmparser::Result<()> {
    // One entry per open block: whether it is a loop.
    let mut open: Vec<bool> = Vec::new();
    let mut loop_depth = 0u64;
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let op = reader.read()?;
        stats.instruction_count += 1;
        match op {
            Operator::Loop { .. } => {
                open.push(true);
                loop_depth += 1;
                stats.loop_count += 1;
                stats.max_loop_depth = stats.max_loop_depth.max(loop_depth);
            }
            Operator::Block { .. } | Operator::If { .. } | Operator::TryTable { .. } => {
                open.push(false)
            }
            // Every `End` closes a block (the guard pops it); only a loop's lowers the depth.
            Operator::End if open.pop() == Some(true) => loop_depth -= 1,
            Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. } => stats.call_count += 1,
            _ => {}
        }
    }
    Ok(())
}

/// Bounded LRU of compiled modules keyed by content hash.
static CACHE: Lazy<Mutex<lru::LruCache<String, Arc<CompiledModule>>>> =
    Lazy::new(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(128).expect("nonzero"))));

fn cache_get(hash: &str, capacity: usize) -> Option<Arc<CompiledModule>> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(capacity) = NonZeroUsize::new(capacity) {
        if cache.cap() != capacity {
            cache.resize(capacity);
        }
    }
    cache.get(hash).cloned()
}

fn cache_put(hash: String, module: Arc<CompiledModule>, capacity: usize) {
    if capacity == 0 {
        return;
    }
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.put(hash, module);
}

/// Compiles (or fetches from the cache) a module. `cache_capacity` 0 disables
/// the cache for this call.
#[rustler::nif(schedule = "DirtyCpu")]
fn module_compile(
    bytes: Binary,
    cache_capacity: usize,
) -> MunitionResult<(ResourceArc<ModuleRef>, ModuleInfo)> {
    let hash = content_hash(bytes.as_slice());
    let compiled = match cache_get(&hash, cache_capacity) {
        Some(hit) => hit,
        None => {
            let compiled = Arc::new(compile(bytes.as_slice(), hash.clone())?);
            cache_put(hash, compiled.clone(), cache_capacity);
            compiled
        }
    };
    let info = compiled.info.clone();
    Ok((ResourceArc::new(ModuleRef(compiled)), info))
}

/// `{entries, capacity}` of the module cache.
#[rustler::nif]
fn module_cache_stats() -> (usize, usize) {
    let cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (cache.len(), cache.cap().get())
}

#[rustler::nif]
fn module_cache_clear() -> rustler::Atom {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clear();
    atoms::ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scan_counts_nested_loops_and_calls() {
        let wasm = wat::parse_str(
            r#"(module
                 (global $g (mut i32) (i32.const 0))
                 (global (export "counter") (mut i32) (i32.const 0))
                 (memory 2)
                 (data (i32.const 0) "hello")
                 (func $f)
                 (func (export "run")
                   (loop (block (loop (call $f) (br 1))))
                   (loop)))"#,
        )
        .unwrap();
        let scan = scan(&wasm).unwrap();
        assert_eq!(scan.stats.function_count, 2);
        assert_eq!(scan.stats.loop_count, 3);
        assert_eq!(scan.stats.max_loop_depth, 2);
        assert_eq!(scan.stats.call_count, 1);
        assert_eq!(scan.stats.data_size, 5);
        assert_eq!(scan.stats.memory_pages, 2);
        assert_eq!(
            scan.global_export_names,
            vec![None, Some("counter".to_string())]
        );
    }

    #[test]
    fn scan_rejects_garbage() {
        assert!(scan(b"\0asm\x01\0\0\0\x0a\xff").is_err());
    }
}
