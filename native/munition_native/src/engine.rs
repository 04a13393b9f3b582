//! The process-wide Wasmtime engine, the epoch ticker that enforces deadlines,
//! and the facts `Munition.Runtime.Config` reports about them (with the
//! vocabulary of outcomes, from `trap`).
//!
//! One engine serves every call: compiled code is shared through it, and a
//! module compiled once can be instantiated in any number of fresh stores.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use once_cell::sync::Lazy;
use rustler::Atom;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};

use crate::atoms;
use crate::trap::{Reason, TrapKind};

/// How often the ticker advances the epoch while a guest runs. A guest past its
/// deadline is stopped at the next tick, so this is the worst-case overshoot
/// (plus scheduling noise).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long a guest runs before it hands its scheduler thread back. Between
/// slices other dirty work, including other guests, gets its turn, so runaway
/// guests cannot starve the VM's dirty schedulers.
pub const SLICE: Duration = Duration::from_millis(2);

/// The first slice of an instantiation or a call runs on the caller's normal
/// scheduler, for at most this long: most guest calls finish within it and so
/// never pay for a trip to a dirty scheduler (waking one costs more than many
/// small calls). A guest still running after it continues on dirty
/// schedulers, `SLICE` at a time. Well under the BEAM's 1 ms guideline for
/// normal-scheduler NIFs, and the guest is on its own stack either way.
pub const FIRST_SLICE: Duration = Duration::from_micros(100);

/// Fuel between the guest's suspension points (where the slice clock is read
/// and the fuel counter is saved). Small enough that a slice ends close to
/// `SLICE`, large enough that suspending costs well under 1% of the run.
pub const FUEL_YIELD_INTERVAL: u64 = 10_000;

/// Wasm stack a guest may use. Guests run on a fiber stack of
/// `FIBER_STACK_SIZE` bytes that Munition owns, never on the dirty scheduler's
/// own (much smaller) stack, so deep recursion is a `stack_overflow` trap and
/// not a segfault of the VM. The difference is head room for host functions.
pub const MAX_WASM_STACK: usize = 512 * 1024;
pub const FIBER_STACK_SIZE: usize = 2 * 1024 * 1024;

/// Frames kept in a backtrace (Wasmtime's default is 20).
pub const MAX_BACKTRACE_FRAMES: usize = 256;

/// Instances (and so memories, tables and fiber stacks) that can be alive at
/// once. Each `fire/4` holds one until it returns; past this, instantiation
/// fails with `{:error, {:overloaded, _}}` instead of queueing.
pub const MAX_CONCURRENT_INSTANCES: u32 = 1000;

/// Table elements a guest may have (per table); slots are sized for this.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The largest `max_memory` a call may ask for: a 32-bit memory's whole range.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Fresh instances come from Wasmtime's pooling allocator: memories, tables and
/// fiber stacks are slots reserved once and reset between uses (zeroed; no
/// state survives), so a call pays for neither `mmap` nor `munmap`, whose TLB
/// shootdowns dominated the cost of a call with the on-demand allocator.
fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(MAX_CONCURRENT_INSTANCES)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        .max_memories_per_module(1)
        .max_tables_per_module(4)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        // Small memories and tables are reset with memset rather than madvise.
        .linear_memory_keep_resident(64 * 1024)
        .table_keep_resident(64 * 1024);
    pool
}

pub static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(FIBER_STACK_SIZE)
        .wasm_backtrace_max_frames(NonZeroUsize::new(MAX_BACKTRACE_FRAMES))
        .wasm_backtrace_details(WasmBacktraceDetails::Enable)
        .coredump_on_trap(true);
    Engine::new(&config).expect("the static Wasmtime configuration is valid")
});

/// Calls currently inside wasm; the ticker sleeps while this is zero so an idle
/// VM pays nothing for deadlines.
static ACTIVE_GUESTS: AtomicUsize = AtomicUsize::new(0);

static TICKER: Lazy<Thread> = Lazy::new(|| {
    thread::Builder::new()
        .name("munition-epoch".into())
        .spawn(|| loop {
            if ACTIVE_GUESTS.load(Ordering::Acquire) == 0 {
                // Spurious wake-ups are fine: the loop re-checks.
                thread::park();
                continue;
            }
            thread::sleep(EPOCH_TICK);
            ENGINE.increment_epoch();
        })
        .expect("spawning the epoch ticker thread")
        .thread()
        .clone()
});

/// Marks a guest as running for as long as it lives, so the ticker advances
/// the epoch and deadlines are enforced.
pub struct GuestRunning(());

impl GuestRunning {
    pub fn start() -> Self {
        if ACTIVE_GUESTS.fetch_add(1, Ordering::AcqRel) == 0 {
            TICKER.unpark();
        }
        GuestRunning(())
    }
}

impl Drop for GuestRunning {
    fn drop(&mut self) {
        ACTIVE_GUESTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The Wasmtime version this NIF was built against (kept in step with Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// What the engine is and offers, and the vocabulary of outcomes the native
/// side can produce (for `Munition.Runtime.Config` and the vocabulary test).
#[derive(rustler::NifMap)]
#[rustler(encode)]
struct EngineInfo {
    engine: Atom,
    version: String,
    features: Vec<Atom>,
    crash_reasons: Vec<Atom>,
    trap_kinds: Vec<Atom>,
}

/// `%{engine: :wasmtime, version: "48.0.8", features: [atom], crash_reasons:
/// [atom], trap_kinds: [atom]}`.
#[rustler::nif]
fn engine_info() -> EngineInfo {
    Lazy::force(&ENGINE);
    EngineInfo {
        engine: atoms::wasmtime(),
        version: WASMTIME_VERSION.to_string(),
        features: vec![
            atoms::fuel(),
            atoms::epochs(),
            atoms::pooling(),
            atoms::coredump(),
            atoms::fibers(),
        ],
        crash_reasons: Reason::ALL.iter().map(|reason| reason.atom()).collect(),
        trap_kinds: TrapKind::ALL.iter().map(|kind| kind.atom()).collect(),
    }
}
