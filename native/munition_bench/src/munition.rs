//! Munition's engine and store, built on raw Wasmtime: the baselines that
//! run a guest "Munition's way" with nothing else of Munition around it
//! (the call baseline of `main.rs` and the `components` mode; `compute`
//! takes the fuel yield interval and `block_on`).
//!
//! The capacity constants come from munition_core::capacity itself, at its
//! defaults on a 64-bit host without RLIMIT_AS. The rest are
//! munition_native's (engine::wasmtime::config, host::state), copied once
//! here: that crate is a NIF and cannot be linked into a binary. Keep them
//! in step.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::{
    CallHook, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, WasmBacktraceDetails,
};

use munition_core::capacity::{
    DEFAULT_MAX_INSTANCES, DEFAULT_MEMORIES_PER_MODULE, FIBER_STACK_SIZE, MAX_MEMORY_BYTES,
    MAX_TABLES_PER_MODULE, MAX_TABLE_ELEMENTS, MEMORY_GUARD_BYTES,
};

const MAX_INSTANCES: u32 = DEFAULT_MAX_INSTANCES as u32;
const MEMORIES_PER_MODULE: u32 = DEFAULT_MEMORIES_PER_MODULE as u32;
const TABLES_PER_MODULE: u32 = MAX_TABLES_PER_MODULE as u32;
pub const MAX_WASM_STACK: usize = 512 * 1024;
pub const MAX_BACKTRACE_FRAMES: usize = 256;
/// Fuel between a guest's suspension points (engine::wasmtime::config).
pub const FUEL_YIELD_INTERVAL: u64 = 100_000;
/// Core instances a component's store may hold (host::state).
pub const MAX_CORE_INSTANCES: usize = 64;
// Munition's defaults for a call (`Munition.Options`).
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_MEMORY: usize = 64 * 1024 * 1024;

/// munition_native's `ENGINE` (engine::wasmtime::config): the pooling
/// allocator at Munition's limits, fuel as its one instrument.
pub fn engine() -> Engine {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(MAX_INSTANCES)
        .total_memories(MAX_INSTANCES * MEMORIES_PER_MODULE)
        .total_tables(MAX_INSTANCES * TABLES_PER_MODULE)
        .total_stacks(MAX_INSTANCES)
        .total_component_instances(MAX_INSTANCES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
        .max_memories_per_module(MEMORIES_PER_MODULE)
        .max_tables_per_module(TABLES_PER_MODULE)
        .table_elements(MAX_TABLE_ELEMENTS as usize)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .linear_memory_keep_resident(keep_resident_bytes())
        .table_keep_resident(64 * 1024)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
        .consume_fuel(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(FIBER_STACK_SIZE as usize)
        .memory_reservation(MAX_MEMORY_BYTES)
        .memory_guard_size(MEMORY_GUARD_BYTES)
        .wasm_multi_memory(true)
        .parallel_compilation(false)
        .wasm_backtrace_max_frames(NonZeroUsize::new(MAX_BACKTRACE_FRAMES))
        .wasm_backtrace_details(WasmBacktraceDetails::Enable)
        .coredump_on_trap(true);
    Engine::new(&config).expect("Munition's engine configuration is valid")
}

/// munition_native's `keep_resident_bytes`: 2 MiB where the kernel lets
/// Wasmtime find the pages written (`pagemap_scan`), 1 MiB where not.
fn keep_resident_bytes() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        2 * 1024 * 1024
    } else {
        1024 * 1024
    }
}

/// munition_native's limiter (host::state::Limiter): a call's memory bound,
/// the table bound, and room for `instances` core instances (one for a
/// module, `MAX_CORE_INSTANCES` for a component).
pub struct Limits {
    pub max_memory: usize,
    pub instances: usize,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_memory)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        self.instances
    }
    fn memories(&self) -> usize {
        MEMORIES_PER_MODULE as usize * self.instances
    }
    fn tables(&self) -> usize {
        TABLES_PER_MODULE as usize * self.instances
    }
}

/// What a store's data holds that Munition's set-up needs.
pub trait Bounded: 'static {
    fn limits(&mut self) -> &mut Limits;
    fn deadline(&self) -> Instant;
}

/// Sets `store` up as munition_native's `new_store` does: the limiter,
/// `fuel`, with `fibers` a suspension every `FUEL_YIELD_INTERVAL` units
/// (the store then runs guests only through the `*_async` calls), and the
/// deadline checked as the guest comes back from a host call or a fuel
/// yield (`engine::wasmtime::store`).
pub fn set_up<T: Bounded>(store: &mut Store<T>, fuel: u64, fibers: bool) {
    store.limiter(|state| state.limits());
    store.set_fuel(fuel).expect("fuel is on");
    if fibers {
        store
            .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
            .expect("fuel is on");
    }
    store.call_hook(|ctx, hook| match hook {
        CallHook::ReturningFromHost if Instant::now() >= ctx.data().deadline() => {
            Err(wasmtime::Error::msg("deadline passed"))
        }
        _ => Ok(()),
    });
}

/// Polls `future` to its end on this thread, as Munition's slices do (a
/// pending poll is a fuel yield point: there is nothing to wait for),
/// reading the clock after each `Pending` when `clock` is set, as Munition
/// does at each yield for its deadline (for a store without `set_up`'s
/// call hook).
pub fn block_on<F: Future>(future: F, clock: bool) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        if clock && Instant::now() >= deadline {
            panic!("a benchmark call ran for an hour");
        }
    }
}
