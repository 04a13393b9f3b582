//! Compiling for Wasmi, and its cache of compiled modules.
//!
//! The same steps as the Wasmtime side (`crate::module`) refuse what they
//! refuse, in the same order and with the same limits: size, WAT, the
//! pre-scan against the compile limits, validation, what Munition does not
//! run. Then Wasmi compiles lazily: it validates every function now and
//! translates each one when it first runs, so compiling is about as cheap
//! as validating.
//!
//! Where it runs: a cache hit, and a miss on a binary of up to
//! `INLINE_COMPILE` bytes (tens of microseconds), on the caller's
//! scheduler; anything larger on Wasmi's compile threads (never a
//! scheduler; `max_concurrent_compiles` of them, a queue behind), whose
//! result is sent to the caller as `{tag, result}`.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use crossbeam_channel::Sender;
use munition_core::limits::{prescan, Facts, Limits};
use munition_core::scan::{content_hash, scan};
use once_cell::sync::{Lazy, OnceCell};
use rustler::env::OwnedEnv;
use rustler::{Binary, Encoder, Env, Resource, ResourceArc, Term};
use wasmi::{ExternType, Module};

use super::engine::ENGINE;
use super::start::{exported_start, START_EXPORT};
use super::value::type_to_shared;
use crate::atoms;
use crate::engine;
use crate::error::{MunitionError, MunitionResult};
use crate::module::{
    express, limit_error, measure, panic_message, precheck, resized_get, supported, ExportInfo,
    ImportInfo, ModuleInfo, INLINE_LOOKUP_LIMIT,
};
use crate::value::val_type_atom;

/// A module compiled for Wasmi, with what Munition learned about it.
pub struct WasmiModule {
    pub module: Module,
    pub info: ModuleInfo,
    pub facts: Facts,
    /// It has a start function, exported as `START_EXPORT` (see `start`).
    pub start: bool,
}

impl std::panic::RefUnwindSafe for WasmiModule {}

pub struct WasmiModuleRef(pub Arc<WasmiModule>);

#[rustler::resource_impl]
impl Resource for WasmiModuleRef {}

/// Binary modules up to this size are compiled on the caller's scheduler:
/// validating them takes microseconds.
const INLINE_COMPILE: usize = 4 * 1024;

/// Stack of a compile thread: the WAT parser recurses on nesting.
const COMPILE_STACK_SIZE: usize = 8 << 20;

fn shared_types(types: &[wasmi::ValType]) -> Vec<rustler::Atom> {
    types
        .iter()
        .map(|t| val_type_atom(&type_to_shared(t)))
        .collect()
}

fn extern_kind(ty: &ExternType) -> (rustler::Atom, Vec<rustler::Atom>, Vec<rustler::Atom>) {
    match ty {
        ExternType::Func(f) => (
            atoms::func(),
            shared_types(f.params()),
            shared_types(f.results()),
        ),
        ExternType::Memory(_) => (atoms::memory(), vec![], vec![]),
        ExternType::Table(_) => (atoms::table(), vec![], vec![]),
        ExternType::Global(g) => (atoms::global(), vec![], shared_types(&[g.content()])),
    }
}

/// Compiles `bytes` (wasm or WAT) for Wasmi under `limits`.
pub fn compile(bytes: &[u8], hash: String, limits: &Limits) -> MunitionResult<WasmiModule> {
    let (wasm, facts) = measure(bytes, limits)?;
    let scan = scan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    let start = scan.stats.has_start;
    // Validation errors win over what Munition does not support, as on the
    // Wasmtime side. A start section that cannot be moved is in a module
    // that does not validate: compiling the original bytes says why.
    let runnable = if start {
        exported_start(&wasm).unwrap_or_else(|| wasm.to_vec())
    } else {
        wasm.to_vec()
    };
    let module = Module::new(&ENGINE, &runnable[..])
        .map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    supported(&facts)?;
    if start && module.get_export(START_EXPORT).is_none() {
        return Err(MunitionError::Unsupported(
            "the module's start function cannot be made resumable".into(),
        ));
    }

    let imports = module
        .imports()
        .map(|import| {
            let (kind, params, results) = extern_kind(import.ty());
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
        .filter(|export| export.name() != START_EXPORT)
        .map(|export| {
            let (kind, params, results) = extern_kind(export.ty());
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
    Ok(WasmiModule {
        module,
        info,
        facts,
        start,
    })
}

type Cache = lru::LruCache<String, Arc<WasmiModule>>;

/// Bounded LRU of Wasmi modules by content hash, apart from Wasmtime's: a
/// module compiled for one engine cannot run on the other.
static CACHE: Lazy<Mutex<Cache>> =
    Lazy::new(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(128).expect("nonzero"))));

/// Modules compiled since the VM started (cache hits excluded).
static COMPILATIONS: AtomicU64 = AtomicU64::new(0);

/// The cache, locked; poisoning is ignored as for Wasmtime's cache (it
/// holds immutable modules: at worst one is compiled again).
fn cache() -> MutexGuard<'static, Cache> {
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cache_get(hash: &str, capacity: usize) -> Option<Arc<WasmiModule>> {
    resized_get(&mut cache(), hash, capacity)
}

/// Compiles, counts and caches; a panic in Wasmi is a runtime failure.
fn compile_and_cache(
    bytes: &[u8],
    hash: String,
    limits: &Limits,
    capacity: usize,
) -> MunitionResult<Arc<WasmiModule>> {
    let compiled = panic::catch_unwind(AssertUnwindSafe(|| compile(bytes, hash.clone(), limits)))
        .unwrap_or_else(|panic| {
            Err(MunitionError::RuntimeFailure(format!(
                "compiling panicked: {}",
                panic_message(panic.as_ref())
            )))
        })
        .map(Arc::new)?;
    COMPILATIONS.fetch_add(1, Ordering::Relaxed);
    if capacity > 0 {
        cache().put(hash, compiled.clone());
    }
    Ok(compiled)
}

fn handle(compiled: &Arc<WasmiModule>) -> (ResourceArc<WasmiModuleRef>, ModuleInfo) {
    (
        ResourceArc::new(WasmiModuleRef(compiled.clone())),
        compiled.info.clone(),
    )
}

/// What a lookup found (the same shape as the Wasmtime side's lookup).
pub enum Lookup {
    Found(Arc<WasmiModule>),
    Miss(String),
    Large,
    Refused(MunitionError),
}

impl Encoder for Lookup {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Lookup::Found(compiled) => (atoms::ok(), handle(compiled)).encode(env),
            Lookup::Miss(hash) => (atoms::miss(), hash).encode(env),
            Lookup::Large => atoms::large().encode(env),
            Lookup::Refused(error) => (atoms::error(), error).encode(env),
        }
    }
}

fn lookup(bytes: &[u8], capacity: usize, limits: &Limits) -> Lookup {
    if let Err(exceeded) = limits.check_size(bytes.len()) {
        return Lookup::Refused(limit_error(exceeded));
    }
    let hash = content_hash(bytes);
    if let Some(hit) = cache_get(&hash, capacity) {
        return match limits.check(&hit.facts) {
            Ok(()) => Lookup::Found(hit),
            Err(exceeded) => Lookup::Refused(limit_error(exceeded)),
        };
    }
    if let Err(error) = precheck(bytes, limits) {
        return Lookup::Refused(error);
    }
    let small = bytes.starts_with(b"\0asm")
        && bytes.len() <= INLINE_COMPILE
        && prescan(bytes).is_ok_and(|facts| express(&facts));
    if !small {
        return Lookup::Miss(hash);
    }
    match compile_and_cache(bytes, hash, limits, capacity) {
        Ok(compiled) => Lookup::Found(compiled),
        Err(error) => Lookup::Refused(error),
    }
}

/// A compiled module from the cache, or compiled here when it is a small
/// binary: `{:ok, {handle, info}}`, `{:miss, hash}` (compile it with
/// `wasmi_module_compile_start/5`), `:large` (ask
/// `wasmi_module_lookup_dirty/3`), or `{:error, {kind, message}}`.
#[rustler::nif]
fn wasmi_module_lookup(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup {
    if bytes.len() > INLINE_LOOKUP_LIMIT && limits.check_size(bytes.len()).is_ok() {
        return Lookup::Large;
    }
    lookup(bytes.as_slice(), cache_capacity, &limits)
}

/// `wasmi_module_lookup/3` for inputs too large to hash on a normal scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_module_lookup_dirty(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup {
    lookup(bytes.as_slice(), cache_capacity, &limits)
}

/// Where a compilation stands, for the caller waiting for it.
struct Claim {
    /// The caller still waits for the answer.
    wanted: bool,
    /// A compile thread has taken it.
    started: bool,
}

/// A caller's claim on a compilation's answer. Cancelled, no answer is sent
/// (the lock makes "still wanted? then send" one step); a compilation not
/// started yet is dropped, one running finishes and lands in the cache, so
/// a retry finds it.
pub struct WasmiTicket {
    claim: Mutex<Claim>,
}

#[rustler::resource_impl]
impl Resource for WasmiTicket {}

impl WasmiTicket {
    fn claim(&self) -> MutexGuard<'_, Claim> {
        self.claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The queue of Wasmi compilations, served by `max_concurrent_compiles`
/// threads of their own (the same bound as Wasmtime's bulk lane, apart
/// from it), started with the first compilation that needs one.
static QUEUE: OnceCell<Sender<Job>> = OnceCell::new();

fn queue() -> MunitionResult<&'static Sender<Job>> {
    QUEUE.get_or_try_init(|| {
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let threads = engine::settings().max_concurrent_compiles.max(1);
        for index in 0..threads {
            let receiver = receiver.clone();
            thread::Builder::new()
                .name(format!("munition-wasmi-compile-{index}"))
                .stack_size(COMPILE_STACK_SIZE)
                .spawn(move || {
                    for job in receiver {
                        // `compile_and_cache` catches Wasmi's panics; this
                        // catches the rest, so the thread keeps serving.
                        let _ = panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| {
                    MunitionError::RuntimeFailure(format!("cannot start a compile thread: {e}"))
                })?;
        }
        Ok(sender)
    })
}

/// Queues `bytes` for a compile thread and returns `{:started, ticket}` at
/// once; the result comes to the caller as `{tag, {:ok, {handle, info}}}`
/// or `{tag, {:error, {kind, message}}}`, unless the ticket is cancelled
/// first (`wasmi_module_compile_cancel/1`).
#[rustler::nif]
fn wasmi_module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> MunitionResult<(rustler::Atom, ResourceArc<WasmiTicket>)> {
    let size = bytes
        .decode::<Binary>()
        .map_err(|_| MunitionError::BadArgs("wasm must be a binary".into()))?
        .len();
    limits.check_size(size).map_err(limit_error)?;
    let pid = env.pid();
    let ticket = ResourceArc::new(WasmiTicket {
        claim: Mutex::new(Claim {
            wanted: true,
            started: false,
        }),
    });
    let claim = ticket.clone();
    let mut owned = OwnedEnv::new();
    let saved = owned.save((bytes, tag));
    let job: Job = Box::new(move || {
        {
            let mut state = claim.claim();
            if !state.wanted {
                // Nobody waits: not compiled at all.
                return;
            }
            state.started = true;
        }
        let result = owned.run(|env| {
            let bytes: Binary = saved.load(env).decode::<(Binary, Term)>().ok()?.0;
            Some(compile_and_cache(
                bytes.as_slice(),
                hash,
                &limits,
                cache_capacity,
            ))
        });
        let state = claim.claim();
        if !state.wanted {
            return;
        }
        // The caller may be gone; nobody is left to tell.
        let _ = owned.send_and_clear(&pid, |env| {
            let tag: Term = match saved.load(env).decode::<(Term, Term)>() {
                Ok((_, tag)) => tag,
                Err(_) => return atoms::error().encode(env),
            };
            match result {
                Some(Ok(compiled)) => (tag, (atoms::ok(), handle(&compiled))).encode(env),
                Some(Err(error)) => (tag, (atoms::error(), error)).encode(env),
                None => (
                    tag,
                    (
                        atoms::error(),
                        MunitionError::BadArgs("wasm must be a binary".into()),
                    ),
                )
                    .encode(env),
            }
        });
    });
    queue()?
        .send(job)
        .map_err(|_| MunitionError::RuntimeFailure("the compile threads are gone".into()))?;
    Ok((atoms::started(), ticket))
}

/// Withdraws the caller from its compilation: after this returns no answer
/// is sent (one sent before is in its mailbox). Returns `:running` when the
/// compilation goes on (it will land in the cache), `:dropped` when it had
/// not started and never will.
#[rustler::nif]
fn wasmi_module_compile_cancel(ticket: ResourceArc<WasmiTicket>) -> rustler::Atom {
    let mut state = ticket.claim();
    state.wanted = false;
    if state.started {
        atoms::running()
    } else {
        atoms::dropped()
    }
}

/// `{entries, capacity, compilations}` of the Wasmi module cache.
#[rustler::nif]
fn wasmi_module_cache_stats() -> (usize, usize, u64) {
    let cache = cache();
    (
        cache.len(),
        cache.cap().get(),
        COMPILATIONS.load(Ordering::Relaxed),
    )
}
