//! The NIFs of compiling and the module caches, for each engine: a lookup
//! (on a normal scheduler, or a dirty one for large inputs), starting and
//! cancelling a compilation on the compile threads, and the caches' and
//! threads' figures. Both engines answer in the same shapes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use munition_core::limits::Limits;
use rustler::{Atom, Binary, Env, ResourceArc, Term};

use crate::atoms;
use crate::engine::compile::disk::{self, DiskStats};
use crate::engine::compile::scheduler::{self, pool_stats, Request, Start, Ticket};
use crate::engine::compile::{lookup, Lookup};
use crate::engine::component::Component;
use crate::engine::wasmi::Wasmi;
use crate::engine::wasmtime::Wasmtime;
use crate::engine::Engine;

per_engine! {
    /// A compiled module from the cache, without compiling: `{:ok, {handle,
    /// info}}`, `{:miss, hash}`, `{:error, {:module_limit, message}}` for
    /// input (or a cached module) over `limits` (`{:invalid_module,
    /// message}` for a binary the pre-scan cannot read), or `:large` for
    /// inputs too large to hash on a normal scheduler. Wasmi also compiles
    /// a small binary (up to `Engine::INLINE_COMPILE` bytes) there and then.
    #[rustler::nif]
    fn [module_lookup, wasmi_module_lookup, component_lookup](
        bytes: Binary,
        cache_capacity: usize,
        limits: Limits,
    ) -> Lookup<E> {
        lookup(bytes.as_slice(), cache_capacity, &limits, false)
    }
}

per_engine! {
    /// The lookup of large inputs, whose hashing and pre-scan are bounded by
    /// the `module_size` limit (checked first): a few milliseconds per MiB.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [module_lookup_dirty, wasmi_module_lookup_dirty, component_lookup_dirty](
        bytes: Binary,
        cache_capacity: usize,
        limits: Limits,
    ) -> Lookup<E> {
        lookup(bytes.as_slice(), cache_capacity, &limits, true)
    }
}

/// Starts compiling `bytes` (whose content hash the lookup returned) on
/// a compile thread, or joins the same compilation queued or running,
/// and returns at once: `{:started, ticket}`, the result to come to the
/// calling process as `{tag, {:ok, {handle, info}}}` or `{tag, {:error,
/// {kind, message}}}`; or `{:ok, {handle, info}}` when it was cached
/// since the lookup; or `{:error, {kind, message}}`. With `disk_dir` (a
/// path, or `nil`), the compile thread first looks for the module's code
/// in that directory, and stores what it compiles there.
#[rustler::nif]
fn module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    disk_dir: Option<Binary<'a>>,
    tag: Term<'a>,
) -> Start<Wasmtime> {
    let request = Request {
        bytes,
        hash,
        cache_capacity,
        limits,
        disk: disk_path(disk_dir),
        tag,
    };
    scheduler::start(env, request)
}

/// A cache directory as Elixir gives it: the bytes of a path, or `nil`.
fn disk_path(dir: Option<Binary>) -> Option<PathBuf> {
    dir.map(|dir| PathBuf::from(OsStr::from_bytes(dir.as_slice())))
}

#[rustler::nif]
fn wasmi_module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> Start<Wasmi> {
    let request = Request {
        bytes,
        hash,
        cache_capacity,
        limits,
        disk: None,
        tag,
    };
    scheduler::start(env, request)
}

/// `module_compile_start/6` for a component: its code is kept in the same
/// cache directory, under keys of its own.
#[rustler::nif]
fn component_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    disk_dir: Option<Binary<'a>>,
    tag: Term<'a>,
) -> Start<Component> {
    let request = Request {
        bytes,
        hash,
        cache_capacity,
        limits,
        disk: disk_path(disk_dir),
        tag,
    };
    scheduler::start(env, request)
}

per_engine! {
    /// Withdraws a caller from its compilation. After it returns, no result
    /// is sent to the caller; one sent before is in its mailbox. `:running`
    /// when the compilation goes on (it will land in the cache), `:dropped`
    /// when it was still queued and nobody else waits for it.
    #[rustler::nif]
    fn [module_compile_cancel, wasmi_module_compile_cancel, component_compile_cancel](
        ticket: ResourceArc<Ticket<E>>,
    ) -> Atom {
        if ticket.cancel() {
            atoms::running()
        } else {
            atoms::dropped()
        }
    }
}

per_engine! {
    /// `{entries, capacity, compilations}` of the engine's module cache.
    #[rustler::nif]
    fn [module_cache_stats, wasmi_module_cache_stats, component_cache_stats]() -> (usize, usize, u64) {
        E::registry().stats()
    }
}

/// What the persistent cache of compiled code gave since the VM started
/// (see `engine::compile::disk`): a map of `hits`, `misses`, `rejected`,
/// `written`, `write_failed` and `last_problem` (`nil` or a message).
#[rustler::nif]
fn module_disk_cache_stats() -> DiskStats {
    disk::stats()
}

/// `{running, queued, threads}`: compilations running and waiting for a
/// compile thread, and the compile threads (0 before the first
/// compilation), of both engines: they share the threads.
#[rustler::nif]
fn module_compile_stats() -> (usize, usize, usize) {
    let (running, threads) = pool_stats();
    let queued =
        Wasmtime::registry().queued() + Wasmi::registry().queued() + Component::registry().queued();
    (running, queued, threads)
}

#[rustler::nif]
fn module_cache_clear() -> Atom {
    Wasmtime::registry().clear();
    Component::registry().clear();
    atoms::ok()
}
