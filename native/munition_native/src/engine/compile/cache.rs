//! Each engine's cache of compiled modules, by content hash (a module
//! compiled for one engine cannot run on the other), its compilations
//! queued or running, and the callers waiting for them.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use munition_core::compile_queue::{self, Flights};
use munition_core::limits::Limits;
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Encoder, LocalPid, Term};

use crate::atoms;
use crate::engine::module::{handle, Compiled, Origin};
use crate::engine::types::EngineTypes;
use crate::vocabulary::error::MunitionResult;

type Cache<E> = LruCache<String, Arc<Compiled<E>>>;

/// One engine's modules: its bounded LRU cache, how many it compiled (not
/// counting those whose code came from the disk), and its compilations
/// queued or running.
pub struct Registry<E: EngineTypes> {
    cache: Mutex<Cache<E>>,
    compilations: AtomicU64,
    pub(super) flights: Flights<(String, Limits), Input, Waiter<E>>,
}

impl<E: EngineTypes> Default for Registry<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: EngineTypes> Registry<E> {
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

    /// Counts a compilation (unless its code came from the disk) and caches
    /// its module (unless the capacity is 0).
    pub fn record(&self, hash: String, module: Arc<Compiled<E>>, capacity: usize) {
        if module.origin == Origin::Compiled {
            self.compilations.fetch_add(1, Ordering::Relaxed);
        }
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

/// The bytes to compile, kept alive in an environment of their own until a
/// compile thread takes them or nobody waits any more.
pub type Input = (OwnedEnv, SavedTerm);

/// One caller waiting for a compilation: where to send the result, and
/// whether it still wants it.
pub struct Waiter<E: EngineTypes> {
    inner: Mutex<WaiterInner>,
    engine: std::marker::PhantomData<fn() -> E>,
}

impl<E: EngineTypes> Waiter<E> {
    /// A caller, `pid`, to whom `{tag, result}` is sent.
    pub fn new(pid: LocalPid, tag: Term) -> Self {
        let env = OwnedEnv::new();
        let tag = env.save(tag);
        Waiter {
            inner: Mutex::new(WaiterInner {
                pid,
                env,
                tag,
                done: false,
            }),
            engine: std::marker::PhantomData,
        }
    }
}

struct WaiterInner {
    pid: LocalPid,
    /// Holds `tag` and builds the message.
    env: OwnedEnv,
    tag: SavedTerm,
    /// Answered or cancelled: nothing more is sent.
    done: bool,
}

impl<E: EngineTypes> Waiter<E> {
    fn lock(&self) -> MutexGuard<'_, WaiterInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// No message is sent after this returns; one sent before is already in
    /// the caller's mailbox (it was sent under the same lock).
    pub fn cancel(&self) {
        self.lock().done = true;
    }

    /// Sends `{tag, result}`, unless the caller cancelled. On a compile
    /// thread only: a scheduler thread cannot send from an `OwnedEnv`.
    pub fn deliver(&self, result: &MunitionResult<Arc<Compiled<E>>>) {
        let mut inner = self.lock();
        if inner.done {
            return;
        }
        inner.done = true;
        let WaiterInner { pid, env, tag, .. } = &mut *inner;
        // A caller that died is not an error: nobody is left to tell.
        let _ = env.send_and_clear(pid, |env| {
            let result = match result {
                Ok(compiled) => (atoms::ok(), handle(compiled)).encode(env),
                Err(error) => (atoms::error(), error).encode(env),
            };
            (tag.load(env), result)
        });
    }
}

impl<E: EngineTypes> compile_queue::Waiter for Waiter<E> {
    fn waiting(&self) -> bool {
        !self.lock().done
    }
}
