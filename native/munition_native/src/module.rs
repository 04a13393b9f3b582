//! Compiling guest modules, off the schedulers and under limits; the
//! content-addressed cache of compiled modules; and the static facts about a
//! module that the rest of Munition needs (imports, exports, export names of
//! globals and memories, and the complexity figures the fuel policy reads).
//!
//! ## Compiling
//!
//! A module is compiled in this order, each step refusing what it can before
//! the next, more expensive one runs:
//!
//! 1. the input's size against `module_size`, before reading it;
//! 2. WAT text is parsed to wasm;
//! 3. a pre-scan of the sections (`munition_core::limits::prescan`, no
//!    instruction decoded) against every compile limit:
//!    `{:error, {:module_limit, message}}`;
//! 4. validation: `{:error, {:invalid_module, message}}`;
//! 5. what an instance slot cannot hold (more memories or tables than it has
//!    room for): `{:error, {:unsupported, message}}`;
//! 6. Cranelift.
//!
//! Compiling runs on a pool of `max_concurrent_compiles` native threads that
//! Munition owns (see `engine::settings`), never on a scheduler, dirty or
//! not: a NIF starts it (`module_compile_start/5`) and returns at once, and
//! the result is sent to the caller as `{tag, result}`. Further compilations
//! wait in a queue, so however many modules are being compiled, at most that
//! many threads are busy with them, at a lowered priority, and guests keep
//! their schedulers. Callers of the same bytes under the same limits share
//! one compilation. A caller that stops waiting cancels its ticket: a
//! compilation nobody waits for any more is not started (its input is
//! released at once), and one already running finishes and lands in the
//! cache, so a retry is a hit.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use crossbeam_channel::Sender;
use munition_core::limits::{prescan, Exceeded, Facts, Limits};
use munition_core::scan::{content_hash, scan, MemoryInfo, ModuleStats};
use once_cell::sync::{Lazy, OnceCell};
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Binary, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::{ExternType, Module, ModuleExport, ValType};

use crate::atoms;
use crate::engine::{self, ENGINE, MAX_TABLES_PER_MODULE};
use crate::error::{error_chain, MunitionError, MunitionResult};
use crate::value::val_type_atom;

/// A compiled module and everything Munition learned about it once, at compile
/// time, so no call pays for it again.
pub struct CompiledModule {
    pub module: Module,
    pub info: ModuleInfo,
    /// The exported functions by name, found and typed once: a call takes
    /// its function from here instead of asking the instance by name and the
    /// engine's type registry for its signature.
    pub functions: HashMap<String, ExportedFunc>,
    /// What the pre-scan measured: a cache hit is checked against the
    /// caller's limits with these, as a compilation would have been.
    pub facts: Facts,
}

// A panic inside a NIF never leaves a compiled module half-updated: it is
// immutable once built.
impl std::panic::RefUnwindSafe for CompiledModule {}

/// An exported function of a compiled module: where to find it in any of
/// its instances, and its signature.
pub struct ExportedFunc {
    pub export: ModuleExport,
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

pub struct ModuleRef(pub Arc<CompiledModule>);

#[rustler::resource_impl]
impl Resource for ModuleRef {}

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

pub fn limit_error(exceeded: Exceeded) -> MunitionError {
    MunitionError::ModuleLimit(exceeded.to_string())
}

/// Inputs up to this size go to the express lane first (see `Lane`).
pub const EXPRESS_INPUT: usize = 64 * 1024;

/// What the express lane compiles: a module this small compiles in tens of
/// milliseconds at most (functions cost up to 0.2 ms each, locals 150 ns).
pub fn express(facts: &Facts) -> bool {
    facts.functions <= 256 && facts.locals <= 65_536
}

/// Why `compile` did not compile.
pub enum NotCompiled {
    Refused(MunitionError),
    /// On the express lane, a module too costly for it: compile it on the
    /// bulk lane.
    NotExpress,
}

impl From<MunitionError> for NotCompiled {
    fn from(error: MunitionError) -> Self {
        NotCompiled::Refused(error)
    }
}

/// Compiles `bytes` (binary wasm or WAT text) into a module with its facts,
/// under `limits`, in the order the moduledoc gives. With `express_only`,
/// gives up after the pre-scan on a module `express` does not admit.
pub fn compile(
    bytes: &[u8],
    hash: String,
    limits: &Limits,
    express_only: bool,
) -> Result<CompiledModule, NotCompiled> {
    let (wasm, facts) = measure(bytes, limits)?;
    if express_only && !express(&facts) {
        return Err(NotCompiled::NotExpress);
    }
    // Validation errors win over what Munition does not support: a module
    // that is both invalid and too large for a slot is invalid.
    Module::validate(&ENGINE, &wasm).map_err(|e| MunitionError::InvalidModule(error_chain(&e)))?;
    supported(&facts)?;
    let scan = scan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
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

    let functions = module
        .exports()
        .filter_map(|export| {
            let ExternType::Func(ty) = export.ty() else {
                return None;
            };
            let found = module.get_export_index(export.name())?;
            Some((
                export.name().to_string(),
                ExportedFunc {
                    export: found,
                    params: ty.params().collect(),
                    results: ty.results().collect(),
                },
            ))
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
    Ok(CompiledModule {
        module,
        info,
        functions,
        facts,
    })
}

/// Steps 1 to 3 (see the moduledoc), for either engine: the input's size,
/// WAT parsed to wasm, and the pre-scan against every compile limit.
/// Returns the wasm and what the pre-scan measured.
pub fn measure<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> MunitionResult<(std::borrow::Cow<'a, [u8]>, Facts)> {
    limits.check_size(bytes.len()).map_err(limit_error)?;
    not_text_with_nul(bytes)?;
    let wasm = wat::parse_bytes(bytes)
        .map_err(|e| MunitionError::InvalidModule(format!("cannot parse WAT: {e}")))?;
    let facts = prescan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    limits.check(&facts).map_err(limit_error)?;
    Ok((wasm, facts))
}

/// Valid wasm that Munition's instance slots cannot hold (see
/// `engine::pooling`) is refused by name at compile time, rather than at
/// every call. The Wasmi engine has no slots but keeps the same bounds, so a
/// module runs on both engines or on neither.
pub fn supported(facts: &Facts) -> MunitionResult<()> {
    let memories = engine::settings().max_memories_per_module;
    if facts.memories > memories {
        return Err(MunitionError::Unsupported(format!(
            "the module has {} memories; Munition supports up to {memories} per module \
             (config :munition, max_memories_per_module: n)",
            facts.memories
        )));
    }
    if facts.tables > MAX_TABLES_PER_MODULE as u64 {
        return Err(MunitionError::Unsupported(format!(
            "the module has {} tables; Munition supports up to {MAX_TABLES_PER_MODULE} per module",
            facts.tables
        )));
    }
    Ok(())
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
    resized_get(&mut cache(), hash, capacity)
}

/// A cached module by hash, after bringing the cache to the capacity the
/// caller gives (the configuration may have changed): for either engine's
/// cache.
pub fn resized_get<T>(
    cache: &mut lru::LruCache<String, Arc<T>>,
    hash: &str,
    capacity: usize,
) -> Option<Arc<T>> {
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
static COMPILATIONS: AtomicU64 = AtomicU64::new(0);

/// Inputs up to this size are looked up in the cache on a normal scheduler:
/// hashing them takes microseconds, less than a trip to a dirty scheduler.
pub const INLINE_LOOKUP_LIMIT: usize = 64 * 1024;

fn handle(compiled: Arc<CompiledModule>) -> (ResourceArc<ModuleRef>, ModuleInfo) {
    let info = compiled.info.clone();
    (ResourceArc::new(ModuleRef(compiled)), info)
}

/// A cached module for a caller with `limits`: refused, as compiling it
/// would have been, when it is over them.
fn admit(compiled: Arc<CompiledModule>, limits: &Limits) -> MunitionResult<Arc<CompiledModule>> {
    limits.check(&compiled.facts).map_err(limit_error)?;
    Ok(compiled)
}

/// What a cache lookup found.
pub enum Lookup {
    /// `{:ok, {handle, info}}`
    Hit(Arc<CompiledModule>),
    /// `{:miss, hash}`: compile it with `module_compile_start/5`.
    Miss(String),
    /// `:large`: too large to hash here; ask `module_lookup_dirty/3`.
    Large,
    /// `{:error, {kind, message}}`: over the limits.
    Refused(MunitionError),
}

impl Encoder for Lookup {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Lookup::Hit(compiled) => (atoms::ok(), handle(compiled.clone())).encode(env),
            Lookup::Miss(hash) => (atoms::miss(), hash).encode(env),
            Lookup::Large => atoms::large().encode(env),
            Lookup::Refused(error) => (atoms::error(), error).encode(env),
        }
    }
}

fn lookup(bytes: &[u8], cache_capacity: usize, limits: &Limits) -> Lookup {
    if let Err(exceeded) = limits.check_size(bytes.len()) {
        return Lookup::Refused(limit_error(exceeded));
    }
    let hash = content_hash(bytes);
    match cache_get(&hash, cache_capacity).map(|hit| admit(hit, limits)) {
        Some(Ok(hit)) => Lookup::Hit(hit),
        Some(Err(error)) => Lookup::Refused(error),
        None => match precheck(bytes, limits) {
            Ok(()) => Lookup::Miss(hash),
            Err(error) => Lookup::Refused(error),
        },
    }
}

/// Input that is not a wasm binary is parsed as WAT text, and the WAT parser
/// renders its error with the whole offending line: for megabytes of zero
/// bytes (one "line") that took seconds. Text has no NUL byte; refuse it at
/// once.
fn not_text_with_nul(bytes: &[u8]) -> MunitionResult<()> {
    if bytes.starts_with(b"\0asm") {
        return Ok(());
    }
    match bytes.iter().position(|&b| b == 0) {
        Some(offset) => Err(MunitionError::InvalidModule(format!(
            "neither a wasm binary (no \\0asm header) nor WAT text (a NUL byte at offset {offset})"
        ))),
        None => Ok(()),
    }
}

/// The pre-scan and the limits of a binary module, checked before it is
/// queued for a compile thread: a module over a limit (or malformed) is
/// refused at once, however busy the compile threads are. WAT text is
/// checked on a compile thread, once parsed. About a microsecond per
/// function; bounded by the `module_size` limit.
pub fn precheck(bytes: &[u8], limits: &Limits) -> MunitionResult<()> {
    if !bytes.starts_with(b"\0asm") {
        return Ok(());
    }
    let facts = prescan(bytes).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    limits.check(&facts).map_err(limit_error)
}

/// A compiled module from the cache, without compiling: `{:ok, {handle,
/// info}}`, `{:miss, hash}`, `{:error, {:module_limit, message}}` for input
/// (or a cached module) over `limits` (`{:invalid_module, message}` for a
/// binary the pre-scan cannot read), or `:large` for inputs too large to
/// hash on a normal scheduler.
#[rustler::nif]
fn module_lookup(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup {
    if bytes.len() > INLINE_LOOKUP_LIMIT && limits.check_size(bytes.len()).is_ok() {
        return Lookup::Large;
    }
    lookup(bytes.as_slice(), cache_capacity, &limits)
}

/// `module_lookup/3` for large inputs, whose hashing and pre-scan are
/// bounded by the `module_size` limit (checked first): a few milliseconds
/// per MiB.
#[rustler::nif(schedule = "DirtyCpu")]
fn module_lookup_dirty(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup {
    lookup(bytes.as_slice(), cache_capacity, &limits)
}

/// One caller waiting for a compilation: where to send the result, and
/// whether it still wants it.
struct Waiter {
    inner: Mutex<WaiterInner>,
}

struct WaiterInner {
    pid: LocalPid,
    /// Holds `tag` and builds the message.
    env: OwnedEnv,
    tag: SavedTerm,
    /// Answered or cancelled: nothing more is sent.
    done: bool,
}

impl Waiter {
    fn lock(&self) -> MutexGuard<'_, WaiterInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn waiting(&self) -> bool {
        !self.lock().done
    }

    /// No message is sent after this returns; one sent before is already in
    /// the caller's mailbox (it was sent under the same lock).
    fn cancel(&self) {
        self.lock().done = true;
    }

    /// Sends `{tag, result}`, unless the caller cancelled. On a compile
    /// thread only: a scheduler thread cannot send from an `OwnedEnv`.
    fn deliver(&self, result: &MunitionResult<Arc<CompiledModule>>) {
        let mut inner = self.lock();
        if inner.done {
            return;
        }
        inner.done = true;
        let WaiterInner { pid, env, tag, .. } = &mut *inner;
        // A caller that died is not an error: nobody is left to tell.
        let _ = env.send_and_clear(pid, |env| {
            let result = match result {
                Ok(compiled) => (atoms::ok(), handle(compiled.clone())).encode(env),
                Err(error) => (atoms::error(), error).encode(env),
            };
            (tag.load(env), result)
        });
    }
}

/// A compilation asked for, queued or running.
struct Job {
    hash: String,
    limits: Limits,
    cache_capacity: usize,
    state: Mutex<JobState>,
}

struct JobState {
    /// The bytes to compile, kept alive (not copied) in an environment of
    /// their own until a compile thread takes them or nobody waits any more.
    input: Option<(OwnedEnv, SavedTerm)>,
    waiters: Vec<Arc<Waiter>>,
    started: bool,
}

impl Job {
    fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(&self) -> (String, Limits) {
        (self.hash.clone(), self.limits)
    }
}

type InFlight = HashMap<(String, Limits), Arc<Job>>;

/// Compilations queued or running, by hash and limits: a caller of the same
/// bytes under the same limits joins the one there instead of queueing
/// another. Locked before a job's state, and before the cache.
static IN_FLIGHT: Lazy<Mutex<InFlight>> = Lazy::new(|| Mutex::new(HashMap::new()));

fn in_flight() -> MutexGuard<'static, InFlight> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes `job` from the in-flight map, if it is the one there.
fn forget(map: &mut InFlight, job: &Arc<Job>) {
    let key = job.key();
    if map.get(&key).is_some_and(|there| Arc::ptr_eq(there, job)) {
        map.remove(&key);
    }
}

/// A caller's claim on a compilation: `module_compile_cancel/1`, or dropping
/// it (its caller died), withdraws it.
pub struct Ticket {
    waiter: Arc<Waiter>,
    job: Arc<Job>,
}

#[rustler::resource_impl]
impl Resource for Ticket {}

// A panic while a waiter or a job is locked leaves plain flags and lists.
impl std::panic::RefUnwindSafe for Ticket {}

impl Ticket {
    /// Withdraws the caller; returns whether the compilation goes on (it is
    /// running, or others still wait for it).
    fn cancel(&self) -> bool {
        self.waiter.cancel();
        // A compilation nobody waits for is not started, and its input is
        // released now rather than when a compile thread reaches it.
        let mut map = in_flight();
        let mut state = self.job.lock();
        if state.started || state.waiters.iter().any(|w| w.waiting()) {
            return true;
        }
        state.input = None;
        state.waiters.clear();
        drop(state);
        forget(&mut map, &self.job);
        false
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Compilations running right now.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The two queues of compilations. Every input up to `EXPRESS_INPUT` bytes
/// goes to the express lane first: its one thread pre-scans it and compiles
/// it only if `express` admits it (tens of milliseconds at most), handing
/// anything costlier to the bulk lane. So small modules, the common case,
/// are never stuck behind a large one, and the express thread's work per
/// module stays bounded. The bulk lane has `max_concurrent_compiles`
/// threads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    Express,
    Bulk,
}

/// The compile threads and their queues.
struct Pool {
    express: Sender<Arc<Job>>,
    bulk: Sender<Arc<Job>>,
    threads: usize,
}

impl Pool {
    fn send(&self, lane: Lane, job: Arc<Job>) -> MunitionResult<()> {
        let sender = match lane {
            Lane::Express => &self.express,
            Lane::Bulk => &self.bulk,
        };
        sender
            .send(job)
            .map_err(|_| MunitionError::RuntimeFailure("the compile threads are gone".into()))
    }
}

static POOL: OnceCell<Pool> = OnceCell::new();

/// Stack of a compile thread: Cranelift and the validator are not deeply
/// recursive, but a thread of our own can afford the room.
const COMPILE_STACK_SIZE: usize = 8 << 20;

fn spawn_compile_thread(
    name: String,
    lane: Lane,
    receiver: crossbeam_channel::Receiver<Arc<Job>>,
) -> MunitionResult<()> {
    thread::Builder::new()
        .name(name)
        .stack_size(COMPILE_STACK_SIZE)
        // At the normal priority: what keeps compiles from crowding out guests
        // is that at most `max_concurrent_compiles` run at once (half the
        // cores by default). A lowered priority (nice 10 was tried) starved
        // compiles whenever the VM was busy, so that ordinary modules missed
        // their callers' deadlines.
        .spawn(move || {
            for job in receiver {
                // `run` catches the compiler's panics; this catches
                // Munition's own, so the thread keeps serving.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| run(job, lane)));
            }
        })
        .map(drop)
        .map_err(|e| MunitionError::RuntimeFailure(format!("cannot start a compile thread: {e}")))
}

fn pool() -> MunitionResult<&'static Pool> {
    POOL.get_or_try_init(|| {
        let bulk_threads = engine::settings().max_concurrent_compiles as usize;
        let (express, express_receiver) = crossbeam_channel::unbounded::<Arc<Job>>();
        let (bulk, bulk_receiver) = crossbeam_channel::unbounded::<Arc<Job>>();
        spawn_compile_thread("munition-compile-x".into(), Lane::Express, express_receiver)?;
        for index in 0..bulk_threads {
            let name = format!("munition-compile-{index}");
            spawn_compile_thread(name, Lane::Bulk, bulk_receiver.clone())?;
        }
        Ok(Pool {
            express,
            bulk,
            threads: bulk_threads + 1,
        })
    })
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs one job on a compile thread: takes its input unless nobody waits,
/// compiles, caches, and answers every waiter; or, on the express lane,
/// hands a module too costly for it to the bulk lane.
fn run(job: Arc<Job>, lane: Lane) {
    let input = {
        let mut map = in_flight();
        let mut state = job.lock();
        state.waiters.retain(|w| w.waiting());
        let input = if state.waiters.is_empty() {
            None
        } else {
            state.started = true;
            state.input.take()
        };
        if input.is_none() {
            state.input = None;
            drop(state);
            forget(&mut map, &job);
        }
        input
    };
    let Some((env, saved)) = input else {
        return;
    };

    RUNNING.fetch_add(1, Ordering::Relaxed);
    let outcome = env.run(|env| {
        let bytes: Binary = saved
            .load(env)
            .decode()
            .map_err(|_| MunitionError::BadArgs("wasm must be a binary".into()))?;
        panic::catch_unwind(AssertUnwindSafe(|| {
            compile(
                bytes.as_slice(),
                job.hash.clone(),
                &job.limits,
                lane == Lane::Express,
            )
        }))
        .unwrap_or_else(|panic| {
            Err(NotCompiled::Refused(MunitionError::RuntimeFailure(
                format!("compiling panicked: {}", panic_message(panic.as_ref())),
            )))
        })
        .map(Arc::new)
    });
    RUNNING.fetch_sub(1, Ordering::Relaxed);
    let result = match outcome {
        Ok(compiled) => Ok(compiled),
        Err(NotCompiled::Refused(error)) => Err(error),
        Err(NotCompiled::NotExpress) => {
            // Queued again, on the bulk lane: cancellable until it starts.
            {
                let mut state = job.lock();
                state.input = Some((env, saved));
                state.started = false;
            }
            let handed = POOL.get().map_or(
                Err(MunitionError::RuntimeFailure("no compile threads".into())),
                |pool| pool.send(Lane::Bulk, job.clone()),
            );
            match handed {
                Ok(()) => return,
                Err(error) => Err(error),
            }
        }
    };
    let waiters = {
        let mut map = in_flight();
        if let Ok(compiled) = &result {
            COMPILATIONS.fetch_add(1, Ordering::Relaxed);
            // Cached before the job leaves the map, under the map's lock: a
            // caller finds one or the other.
            cache_put(job.hash.clone(), compiled.clone(), job.cache_capacity);
        }
        forget(&mut map, &job);
        let waiters = std::mem::take(&mut job.lock().waiters);
        waiters
    };
    for waiter in waiters {
        waiter.deliver(&result);
    }
}

/// What `module_compile_start/5` did.
pub enum Start {
    /// `{:ok, {handle, info}}`: compiled meanwhile, found in the cache.
    Hit(Arc<CompiledModule>),
    /// `{:started, ticket}`: the result comes as `{tag, result}`.
    Started(ResourceArc<Ticket>),
    /// `{:error, {kind, message}}`
    Refused(MunitionError),
}

impl Encoder for Start {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Start::Hit(compiled) => (atoms::ok(), handle(compiled.clone())).encode(env),
            Start::Started(ticket) => (atoms::started(), ticket).encode(env),
            Start::Refused(error) => (atoms::error(), error).encode(env),
        }
    }
}

impl From<MunitionResult<Start>> for Start {
    fn from(result: MunitionResult<Start>) -> Self {
        result.unwrap_or_else(Start::Refused)
    }
}

/// Starts compiling `bytes` (whose content hash `module_lookup/3` returned)
/// on a compile thread, or joins the same compilation queued or running, and
/// returns at once: `{:started, ticket}`, the result to come to the calling
/// process as `{tag, {:ok, {handle, info}}}` or `{tag, {:error, {kind,
/// message}}}`; or `{:ok, {handle, info}}` when it was cached since the
/// lookup. Cheap on a normal scheduler: the bytes are kept alive, not copied.
#[rustler::nif]
fn module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> Start {
    start(env, bytes, hash, cache_capacity, limits, tag).into()
}

fn start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> MunitionResult<Start> {
    let size = bytes
        .decode::<Binary>()
        .map_err(|_| MunitionError::BadArgs("wasm must be a binary".into()))?
        .len();
    limits.check_size(size).map_err(limit_error)?;
    let pool = pool()?;

    let mut map = in_flight();
    if let Some(hit) = cache_get(&hash, cache_capacity) {
        return admit(hit, &limits).map(Start::Hit);
    }
    let waiter_env = OwnedEnv::new();
    let saved_tag = waiter_env.save(tag);
    let waiter = Arc::new(Waiter {
        inner: Mutex::new(WaiterInner {
            pid: env.pid(),
            env: waiter_env,
            tag: saved_tag,
            done: false,
        }),
    });
    let key = (hash, limits);
    let job = match map.get(&key) {
        Some(job) => {
            job.lock().waiters.push(waiter.clone());
            job.clone()
        }
        None => {
            let input_env = OwnedEnv::new();
            let saved = input_env.save(bytes);
            let job = Arc::new(Job {
                hash: key.0.clone(),
                limits,
                cache_capacity,
                state: Mutex::new(JobState {
                    input: Some((input_env, saved)),
                    waiters: vec![waiter.clone()],
                    started: false,
                }),
            });
            map.insert(key, job.clone());
            let lane = if size <= EXPRESS_INPUT {
                Lane::Express
            } else {
                Lane::Bulk
            };
            pool.send(lane, job.clone())?;
            job
        }
    };
    drop(map);
    Ok(Start::Started(ResourceArc::new(Ticket { waiter, job })))
}

/// Withdraws a caller from its compilation (see `Ticket`). After it returns,
/// no result is sent to the caller; one sent before is in its mailbox.
/// Returns `:running` when the compilation goes on (it will land in the
/// cache), `:dropped` when it was still queued and nobody else waits for it.
#[rustler::nif]
fn module_compile_cancel(ticket: ResourceArc<Ticket>) -> rustler::Atom {
    if ticket.cancel() {
        atoms::running()
    } else {
        atoms::dropped()
    }
}

/// `{running, queued, threads}`: compilations running and waiting for a
/// compile thread, and the compile threads (0 before the first compilation).
#[rustler::nif]
fn module_compile_stats() -> (usize, usize, usize) {
    let queued = in_flight()
        .values()
        .filter(|job| !job.lock().started)
        .count();
    let threads = POOL.get().map_or(0, |pool| pool.threads);
    (RUNNING.load(Ordering::Relaxed), queued, threads)
}

/// `{entries, capacity, compilations}` of the module cache.
#[rustler::nif]
fn module_cache_stats() -> (usize, usize, u64) {
    let cache = cache();
    (
        cache.len(),
        cache.cap().get(),
        COMPILATIONS.load(Ordering::Relaxed),
    )
}

#[rustler::nif]
fn module_cache_clear() -> rustler::Atom {
    cache().clear();
    atoms::ok()
}
