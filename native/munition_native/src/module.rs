//! Compiling guest modules, the content-addressed cache of compiled modules,
//! and the static facts about a module that the rest of Munition needs
//! (imports, exports, export names of globals and memories, and the
//! complexity figures the fuel policy reads).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use munition_core::scan::{content_hash, scan, MemoryInfo, ModuleStats};
use once_cell::sync::Lazy;
use rustler::{Binary, Resource, ResourceArc};
use wasmtime::{ExternType, Module};

use crate::atoms;
use crate::engine::{self, ENGINE};
use crate::error::{error_chain, MunitionError, MunitionResult};
use crate::value::val_type_atom;

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
    /// Export name of each memory, by memory index (None when not exported).
    pub memory_export_names: Vec<Option<String>>,
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

/// Compiles `bytes` (binary wasm or WAT text) into a module with its facts.
pub fn compile(bytes: &[u8], hash: String) -> MunitionResult<CompiledModule> {
    let wasm = wat::parse_bytes(bytes)
        .map_err(|e| MunitionError::InvalidModule(format!("cannot parse WAT: {e}")))?;
    // Validation errors win over what Munition does not support: a module
    // that is both invalid and too large for a slot is invalid.
    Module::validate(&ENGINE, &wasm).map_err(|e| MunitionError::InvalidModule(error_chain(&e)))?;
    let scan = scan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    // Valid wasm that Munition's instance slots cannot hold (see
    // `engine::pooling`) is refused here, by name, rather than at every call.
    let memories = engine::settings().max_memories_per_module;
    if scan.memories.len() as u64 > memories {
        return Err(MunitionError::Unsupported(format!(
            "the module has {} memories; Munition supports up to {memories} per module \
             (config :munition, max_memories_per_module: n)",
            scan.memories.len()
        )));
    }
    // The module is valid: what Wasmtime refuses now is a limit of the
    // engine (an instance larger than its slot, a function Cranelift cannot
    // encode), not a fault of the module.
    let module =
        Module::new(&ENGINE, &wasm).map_err(|e| MunitionError::Unsupported(error_chain(&e)))?;

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
        memory_export_names: scan.memory_export_names,
    };
    Ok(CompiledModule { module, info })
}

/// Bounded LRU of compiled modules keyed by content hash.
static CACHE: Lazy<Mutex<lru::LruCache<String, Arc<CompiledModule>>>> =
    Lazy::new(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(128).expect("nonzero"))));

/// The cache, locked. A panic while it was held cannot leave it inconsistent
/// in a way that matters (it holds immutable modules by hash; at worst an
/// entry is missing and compiled again), so poisoning is ignored.
fn cache() -> MutexGuard<'static, lru::LruCache<String, Arc<CompiledModule>>> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cache_get(hash: &str, capacity: usize) -> Option<Arc<CompiledModule>> {
    let mut cache = cache();
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
    cache().put(hash, module);
}

/// Modules compiled since the VM started (cache hits excluded).
static COMPILATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Inputs up to this size are looked up in the cache on a normal scheduler:
/// hashing them takes microseconds, less than a trip to a dirty scheduler.
const INLINE_LOOKUP_LIMIT: usize = 64 * 1024;

fn handle(compiled: Arc<CompiledModule>) -> (ResourceArc<ModuleRef>, ModuleInfo) {
    let info = compiled.info.clone();
    (ResourceArc::new(ModuleRef(compiled)), info)
}

/// A compiled module from the cache, without compiling: `{:ok, {handle,
/// info}}`, or `:miss` (also for inputs too large to hash here).
#[rustler::nif]
fn module_lookup(
    bytes: Binary,
    cache_capacity: usize,
) -> Option<(ResourceArc<ModuleRef>, ModuleInfo)> {
    if bytes.len() > INLINE_LOOKUP_LIMIT {
        return None;
    }
    cache_get(&content_hash(bytes.as_slice()), cache_capacity).map(handle)
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
            COMPILATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cache_put(hash, compiled.clone(), cache_capacity);
            compiled
        }
    };
    Ok(handle(compiled))
}

/// `{entries, capacity, compilations}` of the module cache.
#[rustler::nif]
fn module_cache_stats() -> (usize, usize, u64) {
    let cache = cache();
    (
        cache.len(),
        cache.cap().get(),
        COMPILATIONS.load(std::sync::atomic::Ordering::Relaxed),
    )
}

#[rustler::nif]
fn module_cache_clear() -> rustler::Atom {
    cache().clear();
    atoms::ok()
}
