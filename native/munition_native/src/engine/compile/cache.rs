//! Each engine's cache of compiled modules, by content hash (a module
//! compiled for one engine cannot run on the other), and looking a module up
//! in it before anything is compiled.

use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use munition_core::compile_queue::{panic_message, Flights};
use munition_core::limits::{prescan, Limits};
use munition_core::scan::content_hash;
use rustler::{Encoder, Env, Term};

use super::scheduler::{Input, Waiter};
use super::{compile, express, limit_error, precheck, NotCompiled};
use crate::atoms;
use crate::engine::module::{handle, Compiled};
use crate::engine::Engine;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// Inputs up to this size are looked up in the cache on a normal scheduler:
/// hashing them takes microseconds, less than a trip to a dirty scheduler.
pub const INLINE_LOOKUP_LIMIT: usize = 64 * 1024;

type Cache<E> = LruCache<String, Arc<Compiled<E>>>;

/// One engine's modules: its bounded LRU cache, how many it compiled, and
/// its compilations queued or running.
pub struct Registry<E: Engine> {
    cache: Mutex<Cache<E>>,
    compilations: AtomicU64,
    pub(super) flights: Flights<(String, Limits), Input, Waiter<E>>,
}

impl<E: Engine> Default for Registry<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Engine> Registry<E> {
    pub fn new() -> Self {
        Registry {
            cache: Mutex::new(LruCache::new(NonZeroUsize::new(128).expect("nonzero"))),
            compilations: AtomicU64::new(0),
            flights: Flights::new(),
        }
    }

    /// The cache, locked. A panic while it was held cannot leave it
    /// inconsistent in a way that matters (it holds immutable modules by
    /// hash; at worst an entry is missing and compiled again), so poisoning
    /// is ignored.
    fn cache(&self) -> MutexGuard<'_, Cache<E>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A cached module by hash, after bringing the cache to the capacity the
    /// caller gives (the configuration may have changed).
    pub fn get(&self, hash: &str, capacity: usize) -> Option<Arc<Compiled<E>>> {
        let mut cache = self.cache();
        if let Some(capacity) = NonZeroUsize::new(capacity) {
            if cache.cap() != capacity {
                cache.resize(capacity);
            }
        }
        cache.get(hash).cloned()
    }

    /// Counts a compilation and caches its module (unless the capacity is 0).
    pub fn record(&self, hash: String, module: Arc<Compiled<E>>, capacity: usize) {
        self.compilations.fetch_add(1, Ordering::Relaxed);
        if capacity > 0 {
            self.cache().put(hash, module);
        }
    }

    pub fn clear(&self) {
        self.cache().clear();
    }

    /// `{entries, capacity, compilations}`.
    pub fn stats(&self) -> (usize, usize, u64) {
        let cache = self.cache();
        (
            cache.len(),
            cache.cap().get(),
            self.compilations.load(Ordering::Relaxed),
        )
    }

    /// Compilations waiting for a compile thread.
    pub fn queued(&self) -> usize {
        self.flights.queued()
    }
}

/// A cached module for a caller with `limits`: refused, as compiling it
/// would have been, when it is over them.
pub fn admit<E: Engine>(
    compiled: Arc<Compiled<E>>,
    limits: &Limits,
) -> MunitionResult<Arc<Compiled<E>>> {
    limits.check(&compiled.facts).map_err(limit_error)?;
    Ok(compiled)
}

/// What a lookup found.
pub enum Lookup<E: Engine> {
    /// `{:ok, {handle, info}}`
    Hit(Arc<Compiled<E>>),
    /// `{:miss, hash}`: compile it with `module_compile_start/5`.
    Miss(String),
    /// `:large`: too large to hash here; ask `module_lookup_dirty/3`.
    Large,
    /// `{:error, {kind, message}}`: over the limits.
    Refused(MunitionError),
}

impl<E: Engine> Encoder for Lookup<E> {
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
    if !dirty && bytes.len() > INLINE_LOOKUP_LIMIT && limits.check_size(bytes.len()).is_ok() {
        return Lookup::Large;
    }
    if let Err(exceeded) = limits.check_size(bytes.len()) {
        return Lookup::Refused(limit_error(exceeded));
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
    match compile_guarded::<E>(bytes, hash.clone(), limits, false) {
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
) -> Result<Arc<Compiled<E>>, NotCompiled> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        compile::<E>(bytes, hash, limits, express_only)
    }))
    .unwrap_or_else(|panic| {
        Err(NotCompiled::Refused(MunitionError::RuntimeFailure(
            format!("compiling panicked: {}", panic_message(panic.as_ref())),
        )))
    })
    .map(Arc::new)
}
