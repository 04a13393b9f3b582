//! The process-wide Wasmtime engine, built from the settled capacity
//! (`engine::settings`): fuel is its one instrument.
//!
//! One engine serves every call: compiled code is shared through it, and a
//! module compiled once can be instantiated in any number of fresh stores.
//!
//! Why fuel alone bounds time as well as work: Cranelift checks fuel where it
//! would check epochs (every loop header and function entry, and before every
//! bulk operation whose length is not a small constant), and in Wasmtime 48
//! the bulk operations (`memory.copy`, `memory.fill`, `memory.init`,
//! `table.copy`, `table.fill`, `table.init`, `table.grow`) pay a unit of fuel
//! per byte or element, before they run. So the guest suspends itself at
//! least every `FUEL_YIELD_INTERVAL` units of fuel (tens of microseconds of
//! most code; a bulk operation's byte costs less time than an instruction),
//! and the store's call hook ends it there once its deadline has passed
//! (`store`). An epoch ticker adds little to that bound (its interruptions
//! fall on the same points, and a bulk operation under way finishes either
//! way), and its checks cost from a fifth (an interpreter's start-up) to
//! more than the guest's own work (a tight loop): see bench/compute.exs.

use std::num::NonZeroUsize;

use munition_core::capacity::{self, Settings};
use munition_core::code_cache::{Key, KeyHasher};
use once_cell::sync::Lazy;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    WasmBacktraceDetails,
};

use crate::engine::settings::{
    settings, MAX_MEMORY_BYTES, MAX_TABLES_PER_MODULE, MAX_TABLE_ELEMENTS,
};
use crate::host::state::MAX_CORE_INSTANCES;

/// Fuel between the guest's suspension points (where the slice clock and the
/// deadline are read and the fuel counter is saved). A slice, or a call past
/// its deadline, can only end at one, so it overshoots by at most this much
/// fuel: 10 to 20 µs of most guest code.
/// At 10,000 the suspensions themselves cost 8 to 19% of guest compute
/// (bench/compute.exs: a tight loop, a QuickJS start-up, a C hash); at
/// 100,000 they cost 1 to 4% (a tight loop's 4,000 suspensions a call took
/// 4% more than 400 at 1,000,000), and runaways still end at their deadline and
/// leave the schedulers' heartbeat alone (test/soak/runaway_guests_soak_test.exs).
/// (munition_bench's `munition::FUEL_YIELD_INTERVAL` is a copy.)
pub const FUEL_YIELD_INTERVAL: u64 = 100_000;

/// Wasm stack a guest may use. Guests run on a fiber stack of
/// `FIBER_STACK_SIZE` bytes that Munition owns, never on the dirty scheduler's
/// own (much smaller) stack, so deep recursion is a `stack_overflow` trap and
/// not a segfault of the VM. The difference is head room for host functions.
pub const MAX_WASM_STACK: usize = 512 * 1024;
pub const FIBER_STACK_SIZE: usize = capacity::FIBER_STACK_SIZE as usize;

/// Bytes of each memory slot the pool keeps resident between instances
/// (see `pooling`): 2 MiB where the kernel lets Wasmtime find the pages
/// written (`pagemap_scan`, Linux 6.7+), 1 MiB where it does not. Without
/// it Wasmtime rewrites the whole resident part of a memory at every reset
/// (up to this many bytes, as much as the memory has), written or not.
fn keep_resident_bytes() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        2 * 1024 * 1024
    } else {
        1024 * 1024
    }
}

/// Frames kept in a backtrace (Wasmtime's default is 20).
pub const MAX_BACKTRACE_FRAMES: usize = 256;

/// Fresh instances come from Wasmtime's pooling allocator: memories, tables and
/// fiber stacks are slots reserved once and reset between uses (zeroed; no
/// state survives), so a call pays for neither `mmap` nor `munmap`, whose TLB
/// shootdowns dominated the cost of a call with the on-demand allocator.
///
/// Every instance slot has room for `max_memories_per_module` memories and
/// `MAX_TABLES_PER_MODULE` tables, so `max_instances` instances of any module
/// Munition accepts fit at once; past that, instantiation fails with
/// `{:error, {:overloaded, _}}` and the caller waits for a slot.
fn pooling(settings: &Settings) -> PoolingAllocationConfig {
    // Bounded by `capacity::settle`: at most 4,062 instances of 16 memories.
    let instances = settings.max_instances as u32;
    let memories = settings.max_memories_per_module as u32;
    let tables = MAX_TABLES_PER_MODULE as u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(instances)
        .total_memories(instances * memories)
        .total_tables(instances * tables)
        .total_stacks(instances)
        // A component's store is one component instance of up to
        // `MAX_CORE_INSTANCES` core instances, each taking a core slot
        // above: a component with 14 leaves room for `instances / 14` at
        // once, and a call past that waits for slots as any call does.
        .total_component_instances(instances)
        .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
        .max_memories_per_module(memories)
        .max_tables_per_module(tables)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        // Memories are reset by writing their first MiBs back (zeros, or
        // the module's image) rather than by madvise, and tables' first
        // 64 KiB: a slot's pages stay resident and its own, so the next
        // instance of the same module (the allocator prefers the slot it
        // had) takes no copy-on-write faults. A snapshot starts with its
        // heap in that image: on raw Wasmtime with this pool,
        // `eval("String(1+1)")` on QuickJS's snapshot (384 KiB of memory)
        // took 28 faults and 94 µs (instantiate, call, drop) at 64 KiB,
        // none and 20 µs at 1 MiB (load 3.1); a lookup on the rules
        // engine's snapshot (1,088 KiB) took 93.6 µs through `fire/4` at
        // 1 MiB and 43.2 µs at 2 MiB (bench/snapshot.exs). Each slot used
        // keeps what its guests wrote of their first MiBs resident.
        .linear_memory_keep_resident(keep_resident_bytes())
        .table_keep_resident(64 * 1024)
        .pagemap_scan(Enabled::Auto);
    pool
}

/// native/munition_bench/src/munition.rs builds the same engine on raw
/// Wasmtime for the benchmarks' baselines: keep it in step.
pub static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let settings = settings();
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&settings)));
    config
        // No `epoch_interruption`: see the module's documentation.
        .consume_fuel(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(FIBER_STACK_SIZE)
        // The reservation and guard `munition_core::capacity` counts on
        // (Wasmtime's defaults on 64-bit hosts, set so they cannot drift).
        .memory_reservation(capacity::MAX_MEMORY_BYTES)
        .memory_guard_size(capacity::MEMORY_GUARD_BYTES)
        .wasm_multi_memory(true)
        // One thread per compilation: compiles run on Munition's own pool of
        // `max_concurrent_compiles` threads (see `module`), which bounds the
        // cores they take; Wasmtime's parallel compilation would spread each
        // one over every core.
        .parallel_compilation(false)
        .wasm_backtrace_max_frames(NonZeroUsize::new(MAX_BACKTRACE_FRAMES))
        .wasm_backtrace_details(WasmBacktraceDetails::Enable)
        .coredump_on_trap(true);
    Engine::new(&config).expect("the Wasmtime configuration built from settled capacity is valid")
});

/// The Wasmtime version this NIF was built against (kept in step with Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// What code compiled by `ENGINE` depends on, for the keys of the disk
/// cache (`engine::compile::disk`): Wasmtime's
/// `precompile_compatibility_hash` (the target, Cranelift's flags and the
/// host CPU's features it uses, the tunables, the wasm features, and
/// Wasmtime's version), and the version once more, should a later
/// Wasmtime stop hashing it. Code from another build or configuration is
/// under another key: never found, so never loaded.
pub static ENGINE_KEY: Lazy<Key> = Lazy::new(|| {
    KeyHasher::new("munition wasmtime engine")
        .part(WASMTIME_VERSION)
        // Also in Wasmtime's hash (its tunables); named for who reads the key.
        .part("fuel, no epochs")
        .hashed(&ENGINE.precompile_compatibility_hash())
        .key()
});
