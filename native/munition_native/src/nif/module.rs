//! The NIFs of compiling and the module caches, for each engine: a lookup
//! (on a normal scheduler, or a dirty one for large inputs), starting and
//! cancelling a compilation on the compile threads, and the caches' and
//! threads' figures. Both engines answer in the same shapes.

use munition_core::limits::Limits;
use rustler::{Atom, Binary, Env, ResourceArc, Term};

use crate::atoms;
use crate::engine::compile::cache::{lookup, Lookup};
use crate::engine::compile::scheduler::{self, pool_stats, Start, Ticket};
use crate::engine::wasmi::Wasmi;
use crate::engine::wasmtime::Wasmtime;
use crate::engine::Engine;

/// A compiled module from the cache, without compiling: `{:ok, {handle,
/// info}}`, `{:miss, hash}`, `{:error, {:module_limit, message}}` for input
/// (or a cached module) over `limits` (`{:invalid_module, message}` for a
/// binary the pre-scan cannot read), or `:large` for inputs too large to
/// hash on a normal scheduler.
#[rustler::nif]
fn module_lookup(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup<Wasmtime> {
    lookup(bytes.as_slice(), cache_capacity, &limits, false)
}

/// `module_lookup/3` for large inputs, whose hashing and pre-scan are
/// bounded by the `module_size` limit (checked first): a few milliseconds
/// per MiB.
#[rustler::nif(schedule = "DirtyCpu")]
fn module_lookup_dirty(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup<Wasmtime> {
    lookup(bytes.as_slice(), cache_capacity, &limits, true)
}

/// `module_lookup/3` for Wasmi, which also compiles a small binary (up to
/// `Wasmi::INLINE_COMPILE` bytes) there and then.
#[rustler::nif]
fn wasmi_module_lookup(bytes: Binary, cache_capacity: usize, limits: Limits) -> Lookup<Wasmi> {
    lookup(bytes.as_slice(), cache_capacity, &limits, false)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_module_lookup_dirty(
    bytes: Binary,
    cache_capacity: usize,
    limits: Limits,
) -> Lookup<Wasmi> {
    lookup(bytes.as_slice(), cache_capacity, &limits, true)
}

/// Starts compiling `bytes` (whose content hash `module_lookup/3` returned)
/// on a compile thread, or joins the same compilation queued or running, and
/// returns at once: `{:started, ticket}`, the result to come to the calling
/// process as `{tag, {:ok, {handle, info}}}` or `{tag, {:error, {kind,
/// message}}}`; or `{:ok, {handle, info}}` when it was cached since the
/// lookup; or `{:error, {kind, message}}`.
#[rustler::nif]
fn module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> Start<Wasmtime> {
    scheduler::start(env, bytes, hash, cache_capacity, limits, tag)
}

/// `module_compile_start/5` for Wasmi, on the same compile threads.
#[rustler::nif]
fn wasmi_module_compile_start<'a>(
    env: Env<'a>,
    bytes: Term<'a>,
    hash: String,
    cache_capacity: usize,
    limits: Limits,
    tag: Term<'a>,
) -> Start<Wasmi> {
    scheduler::start(env, bytes, hash, cache_capacity, limits, tag)
}

/// `:running` when the compilation goes on (it will land in the cache),
/// `:dropped` when it was still queued and nobody else waits for it.
fn cancel<E: Engine>(ticket: &Ticket<E>) -> Atom {
    if ticket.cancel() {
        atoms::running()
    } else {
        atoms::dropped()
    }
}

/// Withdraws a caller from its compilation. After it returns, no result is
/// sent to the caller; one sent before is in its mailbox.
#[rustler::nif]
fn module_compile_cancel(ticket: ResourceArc<Ticket<Wasmtime>>) -> Atom {
    cancel(&ticket)
}

#[rustler::nif]
fn wasmi_module_compile_cancel(ticket: ResourceArc<Ticket<Wasmi>>) -> Atom {
    cancel(&ticket)
}

/// `{running, queued, threads}`: compilations running and waiting for a
/// compile thread, and the compile threads (0 before the first
/// compilation), of both engines: they share the threads.
#[rustler::nif]
fn module_compile_stats() -> (usize, usize, usize) {
    let (running, threads) = pool_stats();
    let queued = Wasmtime::registry().queued() + Wasmi::registry().queued();
    (running, queued, threads)
}

/// `{entries, capacity, compilations}` of the Wasmtime module cache.
#[rustler::nif]
fn module_cache_stats() -> (usize, usize, u64) {
    Wasmtime::registry().stats()
}

/// `{entries, capacity, compilations}` of the Wasmi module cache.
#[rustler::nif]
fn wasmi_module_cache_stats() -> (usize, usize, u64) {
    Wasmi::registry().stats()
}

#[rustler::nif]
fn module_cache_clear() -> Atom {
    Wasmtime::registry().clear();
    atoms::ok()
}
