//! The persistent cache of compiled code (`config :munition,
//! compile_cache_dir:`), for whatever an engine can serialise: the files
//! are `munition_core::code_cache` (bytes under a key, and every check
//! made before they are handed back); this adds where a compilation finds
//! its directory, and the node's counts of what the disk gave.
//!
//! Wasmtime's core modules (`engine::wasmtime::module`) and components
//! (`engine::component::module`) use it, each kind under keys of its own:
//! they take seconds to compile and milliseconds to load. Wasmi does not:
//! it validates and translates lazily, a module in about the time it takes
//! to validate it, which is what loading would cost too.
//!
//! Runs on the compile threads only, like compiling: reading a file of
//! tens of megabytes, and checking its digest, never holds a scheduler.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use munition_core::code_cache::{self, Key, Load, Payload};

/// Where a compilation looks for its compiled code and leaves it: the
/// cache directory, and the content hash of the wasm compiled (the
/// caller's bytes, or what its WAT text was parsed to: the key must name
/// what the engine compiled, and a change of the WAT parser could change
/// that under the same text).
pub struct Disk<'a> {
    pub dir: &'a Path,
    pub wasm_hash: String,
}

/// What the disk gave since the VM started, for every engine and kind of
/// artifact: `Munition.Runtime.Wasmtime.cache_stats/0`'s `:disk`.
#[derive(rustler::NifMap)]
pub struct DiskStats {
    /// Loaded, instead of compiled.
    pub hits: u64,
    /// No file for the key: compiled.
    pub misses: u64,
    /// A file (or the directory) refused by a check, or code the engine
    /// would not load: compiled, and stored over it when the directory is
    /// usable.
    pub rejected: u64,
    /// Files written.
    pub written: u64,
    /// Files that could not be written (the directory refused, the disk
    /// full...): the compiled code is used all the same.
    pub write_failed: u64,
    /// Why the last rejection or failed write happened, with the path: what
    /// an operator reads when `rejected` or `write_failed` grows.
    pub last_problem: Option<String>,
}

struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    write_failed: AtomicU64,
    last_problem: Mutex<Option<String>>,
}

static COUNTERS: Counters = Counters {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    rejected: AtomicU64::new(0),
    written: AtomicU64::new(0),
    write_failed: AtomicU64::new(0),
    last_problem: Mutex::new(None),
};

fn remember(problem: String) {
    // A string, written whole: a panic cannot tear it.
    *COUNTERS
        .last_problem
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(problem);
}

pub fn stats() -> DiskStats {
    DiskStats {
        hits: COUNTERS.hits.load(Ordering::Relaxed),
        misses: COUNTERS.misses.load(Ordering::Relaxed),
        rejected: COUNTERS.rejected.load(Ordering::Relaxed),
        written: COUNTERS.written.load(Ordering::Relaxed),
        write_failed: COUNTERS.write_failed.load(Ordering::Relaxed),
        last_problem: COUNTERS
            .last_problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone(),
    }
}

/// The checked payload stored under `key` in `dir`, counted as a hit;
/// `None` for a miss or a rejection (counted, its reason kept).
pub fn load(dir: &Path, key: &Key) -> Option<Payload> {
    match code_cache::load(dir, key) {
        Load::Hit(payload) => {
            COUNTERS.hits.fetch_add(1, Ordering::Relaxed);
            Some(payload)
        }
        Load::Miss => {
            COUNTERS.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
        Load::Rejected(problem) => {
            reject(dir, key, &problem.to_string());
            None
        }
    }
}

/// Counts a file that passed the checks but that the engine would not
/// load (`why`, from the engine): treated as a rejection.
pub fn reject(dir: &Path, key: &Key, why: &str) {
    COUNTERS.rejected.fetch_add(1, Ordering::Relaxed);
    remember(format!(
        "rejected {}: {why}",
        dir.join(key.file_name()).display()
    ));
}

/// Stores `bytes` under `key` in `dir`; a failure is counted and kept, not
/// returned: the code just compiled serves the caller either way.
pub fn store(dir: &Path, key: &Key, bytes: &[u8]) {
    match code_cache::store(dir, key, bytes) {
        Ok(()) => {
            COUNTERS.written.fetch_add(1, Ordering::Relaxed);
        }
        Err(problem) => {
            COUNTERS.write_failed.fetch_add(1, Ordering::Relaxed);
            remember(format!(
                "could not write {}: {problem}",
                dir.join(key.file_name()).display()
            ));
        }
    }
}
