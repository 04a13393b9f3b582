//! Munition's native side: Wasmtime behind a Rustler NIF.
//!
//! One concept per file, and dependencies run one way, from the vocabulary up
//! to the NIFs:
//!
//! - `error`, `term`, `value`, `trap`, `guest_memory`: the vocabulary (errors,
//!   Erlang terms, wasm values, why a guest stopped, where its memory is);
//! - `engine`, `module`, `store`: the shared engine, compiled modules, and the
//!   state a fresh store carries;
//! - `builtins`, `bridge`: host functions (the built-in ones, and the bridge to
//!   those written in Elixir); `wasi`, `wasi_io`, `wasi_time`: WASI preview 1;
//!   `link` chooses one of them for each import;
//! - `execution`, `wakeup`: running a guest in slices, and waking it when it
//!   waits;
//! - `instance`, `call`, `memory`, `capture`: the NIFs on a live instance;
//!   `analyser`: the forensic scans; `meter`: the fuel meter's counters;
//! - `wasmi`: the second engine (Wasmi, an interpreter), reusing the
//!   vocabulary, the built-ins' table and the bridge.

mod analyser;
mod bridge;
mod builtins;
mod call;
mod capture;
mod engine;
mod error;
mod execution;
mod guest_memory;
mod instance;
mod link;
mod memory;
mod meter;
mod module;
mod store;
mod term;
mod trap;
mod value;
mod wakeup;
mod wasi;
mod wasi_io;
mod wasi_time;
mod wasmi;

mod atoms {
    rustler::atoms! {
        ok, error, ready, crashed, returned, exited, yielded, full, minimal,
        // error kinds
        invalid_module, function_not_found, bad_args,
        memory_limit, instantiation_failed, invalid_state, out_of_bounds, bad_data, overloaded, unsupported,
        runtime_failure, module_limit, too_late, bad_config,
        // crash reasons
        fuel_exhausted, trap, timeout, host_error,
        // trap kinds
        stack_overflow, memory_out_of_bounds, heap_misaligned, table_out_of_bounds,
        indirect_call_to_null, bad_signature, integer_overflow, integer_divide_by_zero,
        bad_conversion_to_integer, unreachable, interrupt, out_of_fuel, null_reference,
        allocation_too_large, unknown, abort,
        // value types and extern kinds
        i32, i64, f32, f64, v128, ref_ = "ref", func, memory, table, global, tag,
        nan, infinity, neg_infinity,
        // capabilities of the built-in host functions
        time, random, log,
        wasi_stdio, wasi_args, wasi_env, wasi_clock, wasi_random, wasi_exit, wasi_poll,
        wasi_fs, wasi_fs_write,
        // WASI clocks
        deterministic,
        // links
        builtin, elixir,
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
