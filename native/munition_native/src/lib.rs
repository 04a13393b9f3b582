//! Munition's native side: WebAssembly engines behind a Rustler NIF.
//!
//! Four layers, one folder each, dependencies running one way (each uses
//! only those before it):
//!
//! 1. `vocabulary`: errors as Elixir sees them, Erlang terms, wasm values,
//!    why a guest stopped, the guest's memory: what every layer speaks.
//! 2. `host`: what a store carries besides the guest, the built-in host
//!    functions (written once for every engine, over `host::context`), the
//!    bridge to host functions written in Elixir, waking a waiting guest,
//!    and WASI (Wasmtime's own `wasmtime-wasi` on Wasmtime, Munition's own
//!    file-less preview 1 on Wasmi, the functions Munition owns written
//!    once for both).
//! 3. `engine`: the seam (`engine::Engine`) and what is written once over
//!    it (compiling and caching, module facts, linking, calls, instances,
//!    capture), with each engine in a folder of its own: `engine/wasmtime`
//!    (Wasmtime 48, Cranelift) and `engine/wasmi` (Wasmi 2, an interpreter).
//! 4. `nif`: the NIFs, each naming its engine.
//!
//! What needs no VM (module scans, limits, the compile queue, wasm values,
//! the rules a store keeps, memory scans, the meter's counters) is in the
//! `munition_core` crate, where `cargo test` runs it.

mod engine;
mod host;
mod nif;
mod vocabulary;

/// The NIF's own allocations come from mimalloc, not the C library's
/// malloc. The BEAM sets glibc's malloc parameters for itself (its `+MYtt`
/// and `+MYtp` flags), and glibc then stops raising its mmap threshold
/// with use: inside the VM it stays at 128 KiB. Every larger allocation of
/// a call (a core instance's context, with a reference for each function
/// it exports: thousands in a JavaScript component) was a fresh `mmap`, a
/// fault per page and a `munmap` with its TLB shootdown (`perf` showed
/// them under `Instance::new` and the store's drop); with the threshold
/// raised (`GLIBC_TUNABLES`), an arena trimmed by `madvise` on every free
/// instead. mimalloc keeps freed pages for reuse and returns them to the
/// system later, in batches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod atoms {
    rustler::atoms! {
        ok, error, ready, crashed, returned, exited, yielded, full, minimal,
        // error kinds
        invalid_module, function_not_found, bad_args,
        memory_limit, instantiation_failed, invalid_state, out_of_bounds, bad_data, overloaded, unsupported,
        runtime_failure, module_limit, too_late, bad_config, not_capturable,
        // crash reasons
        fuel_exhausted, trap, timeout, host_error,
        // trap kinds
        stack_overflow, memory_out_of_bounds, heap_misaligned, table_out_of_bounds,
        indirect_call_to_null, bad_signature, integer_overflow, integer_divide_by_zero,
        bad_conversion_to_integer, unreachable, interrupt, out_of_fuel, null_reference,
        allocation_too_large, unknown, abort,
        // value types and extern kinds
        i32, i64, f32, f64, v128, ref_ = "ref", func, memory, table, global, tag,
        nan, infinity, neg_infinity, some, component, module, instance,
        // capabilities of the built-in host functions
        time, random, log,
        wasi_stdio, wasi_args, wasi_env, wasi_clock, wasi_random, wasi_exit, wasi_poll,
        wasi_fs, wasi_fs_write,
        // WASI clocks
        deterministic,
        // links
        builtin, elixir,
        // replay
        record, replay, unavailable, replayed,
        // a binary result
        binary,
        // engine
        wasmtime, fuel, epochs, pooling, coredump, fibers, wasmi, interpreter, lazy_translation,
        // metadata keys
        fuel_consumed, fuel_remaining, execution_time_us,
        munition_host_call, munition_wake, munition_memory, waiting, large, released,
        // compiling
        miss, started, running, dropped,
    }
}

rustler::init!("Elixir.Munition.Native");
