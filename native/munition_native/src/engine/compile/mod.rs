//! Compiling guest modules, for every engine: the steps, each refusing what
//! it can before the next, more expensive one runs; the content-addressed
//! cache of compiled modules (`cache`); the persistent cache of compiled
//! code on disk, when one is configured (`disk`); and the compile threads
//! that run them off the schedulers (`scheduler`).
//!
//! ## The steps
//!
//! 1. the input's size against `module_size`, before reading it;
//! 2. WAT text is parsed to wasm;
//! 3. a pre-scan of the sections (`munition_core::limits::prescan`, no
//!    instruction decoded) against every compile limit:
//!    `{:error, {:module_limit, message}}`;
//! 4. the engine's validation: `{:error, {:invalid_module, message}}`;
//! 5. what Munition does not run (more memories or tables than an instance
//!    has room for): `{:error, {:unsupported, message}}`;
//! 6. the engine's compiler (`Engine::compile` does 4 to 6), or, with a
//!    cache directory, the engine's code for the same wasm loaded from it
//!    (Wasmtime only: see `disk`). Steps 1 to 3 run either way, so a module
//!    from the disk is checked against the caller's limits as a compiled
//!    one is.
//!
//! ## Where it runs
//!
//! On a pool of compile threads that Munition owns, shared by the engines,
//! never on a scheduler: a NIF starts it (`module_compile_start/5`) and
//! returns at once, and the result is sent to the caller as `{tag, result}`.
//! Small inputs go to an express lane first (see
//! `munition_core::compile_queue`), the rest wait in a queue for one of
//! `max_concurrent_compiles` threads, so however many modules are being
//! compiled, at most that many threads are busy with them and guests keep
//! their schedulers. Callers of the same bytes under the same limits share
//! one compilation. A caller that stops waiting cancels its ticket: a
//! compilation nobody waits for any more is not started (its input is
//! released at once), and one already running finishes and lands in the
//! cache, so a retry is a hit. An engine whose compiles are cheap enough
//! (`Engine::INLINE_COMPILE`) compiles small binaries at lookup instead.

pub mod cache;
pub mod disk;
pub mod scheduler;

use std::borrow::Cow;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use munition_core::compile_queue::panic_message;
use munition_core::limits::{prescan, Exceeded, Facts, Limits};
use munition_core::scan::{content_hash, is_component};
use rustler::{Encoder, Env, Term};

use self::disk::Disk;
use crate::atoms;
use crate::engine::module::{handle, Compiled};
use crate::engine::settings::{max_memories_per_module, MAX_TABLES_PER_MODULE};
use crate::engine::types::EngineTypes;
use crate::engine::Engine;
use crate::vocabulary::error::{MunitionError, MunitionResult};

pub fn limit_error(exceeded: Exceeded) -> MunitionError {
    MunitionError::ModuleLimit(exceeded.to_string())
}

/// Inputs up to this size go to the express lane first.
pub const EXPRESS_INPUT: usize = 64 * 1024;

/// What the express lane compiles: a module this small compiles in tens of
/// milliseconds at most with Cranelift (functions cost up to 0.2 ms each,
/// locals 150 ns), far less with Wasmi.
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

/// Compiles `bytes` (binary wasm or WAT text) for engine `E` under
/// `limits`, in the order the moduledoc gives, or loads its code from the
/// cache directory `disk` when it is there. With `express_only`, gives up
/// after the pre-scan on a module `express` does not admit.
pub fn compile<E: Engine>(
    bytes: &[u8],
    hash: String,
    limits: &Limits,
    express_only: bool,
    disk: Option<&Path>,
) -> Result<Compiled<E>, NotCompiled> {
    let (wasm, facts) = measure::<E>(bytes, limits)?;
    if express_only && !express(&facts) {
        return Err(NotCompiled::NotExpress);
    }
    let disk = disk.map(|dir| Disk {
        dir,
        wasm_hash: match &wasm {
            // Binary input: the caller's hash is the wasm's.
            Cow::Borrowed(_) => hash.clone(),
            Cow::Owned(parsed) => content_hash(parsed),
        },
    });
    Ok(E::compile(&wasm, facts, hash, disk.as_ref())?)
}

/// Steps 1 to 3: the input's size, WAT parsed to wasm, and the pre-scan
/// against every compile limit. Returns the wasm and what the pre-scan
/// measured.
pub fn measure<'a, E: Engine>(
    bytes: &'a [u8],
    limits: &Limits,
) -> MunitionResult<(Cow<'a, [u8]>, Facts)> {
    admit_input::<E>(bytes, limits)?;
    not_text_with_nul(bytes)?;
    let wasm = wat::parse_bytes(bytes)
        .map_err(|e| MunitionError::InvalidModule(format!("cannot parse WAT: {e}")))?;
    admit_kind::<E>(&wasm)?;
    let facts = prescan(&wasm).map_err(|e| MunitionError::InvalidModule(e.to_string()))?;
    limits.check(&facts).map_err(limit_error)?;
    Ok((wasm, facts))
}

/// Step 1, before anything else looks at the input: a binary of the other
/// kind than the engine runs is refused by name (a component is valid, just
/// not a core module), then an input over the size limit.
pub fn admit_input<E: Engine>(bytes: &[u8], limits: &Limits) -> MunitionResult<()> {
    admit_kind::<E>(bytes)?;
    limits.check_size(bytes.len()).map_err(limit_error)
}

/// A component for an engine of core modules, or a core module for the
/// component engine, refused by name. Text is checked once parsed.
fn admit_kind<E: Engine>(wasm: &[u8]) -> MunitionResult<()> {
    if !wasm.starts_with(b"\0asm") {
        return Ok(());
    }
    match (is_component(wasm), E::COMPONENTS) {
        (true, false) => Err(MunitionError::Unsupported(
            "the binary is a WebAssembly component (the component model: WIT interfaces, WASI 0.2), \
             not a core module; this engine runs core modules only (Munition.Runtime.Wasmtime runs \
             components)"
                .into(),
        )),
        (false, true) => Err(MunitionError::InvalidModule(
            "the binary is a core module, not a component".into(),
        )),
        _ => Ok(()),
    }
}

/// Step 5: valid wasm that Munition's instance slots cannot hold (see the
/// Wasmtime engine's pooling) is refused by name at compile time, rather
/// than at every call. The Wasmi engine has no slots but keeps the same
/// bounds, so a module runs on both engines or on neither.
pub fn supported(facts: &Facts) -> MunitionResult<()> {
    let memories = max_memories_per_module() as u64;
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

/// Inputs up to this size are looked up in the cache on a normal scheduler:
/// hashing them takes microseconds, less than a trip to a dirty scheduler.
pub const INLINE_LOOKUP_LIMIT: usize = 64 * 1024;

/// A cached module for a caller with `limits`: refused, as compiling it
/// would have been, when it is over them.
pub fn admit<E: EngineTypes>(
    compiled: Arc<Compiled<E>>,
    limits: &Limits,
) -> MunitionResult<Arc<Compiled<E>>> {
    limits.check(&compiled.facts).map_err(limit_error)?;
    Ok(compiled)
}

/// What a lookup found.
pub enum Lookup<E: EngineTypes> {
    /// `{:ok, {handle, info}}`
    Hit(Arc<Compiled<E>>),
    /// `{:miss, hash}`: compile it with `module_compile_start/5`.
    Miss(String),
    /// `:large`: too large to hash here; ask `module_lookup_dirty/3`.
    Large,
    /// `{:error, {kind, message}}`: over the limits.
    Refused(MunitionError),
}

impl<E: EngineTypes> Encoder for Lookup<E> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Lookup::Hit(compiled) => (atoms::ok(), handle(compiled)).encode(env),
            Lookup::Miss(hash) => (atoms::miss(), hash).encode(env),
            Lookup::Large => atoms::large().encode(env),
            Lookup::Refused(error) => (atoms::error(), error).encode(env),
        }
    }
}

/// A compiled module from the cache, without compiling (but for the small
/// binaries of an engine that compiles them at lookup); on a normal
/// scheduler `:large` for inputs over `INLINE_LOOKUP_LIMIT`.
pub fn lookup<E: Engine>(bytes: &[u8], capacity: usize, limits: &Limits, dirty: bool) -> Lookup<E> {
    if let Err(refused) = admit_input::<E>(bytes, limits) {
        return Lookup::Refused(refused);
    }
    if !dirty && bytes.len() > INLINE_LOOKUP_LIMIT {
        return Lookup::Large;
    }
    let hash = content_hash(bytes);
    match E::registry()
        .get(&hash, capacity)
        .map(|hit| admit(hit, limits))
    {
        Some(Ok(hit)) => return Lookup::Hit(hit),
        Some(Err(error)) => return Lookup::Refused(error),
        None => {}
    }
    if let Err(error) = precheck(bytes, limits) {
        return Lookup::Refused(error);
    }
    let inline = bytes.starts_with(b"\0asm")
        && bytes.len() <= E::INLINE_COMPILE
        && prescan(bytes).is_ok_and(|facts| express(&facts));
    if !inline {
        return Lookup::Miss(hash);
    }
    match compile_guarded::<E>(bytes, hash.clone(), limits, false, None) {
        Ok(compiled) => {
            E::registry().record(hash, compiled.clone(), capacity);
            Lookup::Hit(compiled)
        }
        Err(NotCompiled::Refused(error)) => Lookup::Refused(error),
        Err(NotCompiled::NotExpress) => Lookup::Miss(hash),
    }
}

/// `compile`, with a panic in the engine's compiler made a runtime failure.
pub fn compile_guarded<E: Engine>(
    bytes: &[u8],
    hash: String,
    limits: &Limits,
    express_only: bool,
    disk: Option<&Path>,
) -> Result<Arc<Compiled<E>>, NotCompiled> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        compile::<E>(bytes, hash, limits, express_only, disk)
    }))
    .unwrap_or_else(|panic| {
        Err(NotCompiled::Refused(MunitionError::RuntimeFailure(
            format!("compiling panicked: {}", panic_message(panic.as_ref())),
        )))
    })
    .map(Arc::new)
}
