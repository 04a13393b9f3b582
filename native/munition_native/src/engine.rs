//! The process-wide Wasmtime engine, its capacity (configured once, before
//! it is built), the epoch ticker that enforces deadlines, and the facts
//! `Munition.Runtime.Config` reports about them (with the vocabulary of
//! outcomes, from `trap`).
//!
//! One engine serves every call: compiled code is shared through it, and a
//! module compiled once can be instantiated in any number of fresh stores.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Duration;

use munition_core::capacity::{self, Host, Requested, Settings};
use once_cell::sync::{Lazy, OnceCell};
use rustler::Atom;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};

use crate::atoms;
use crate::error::{MunitionError, MunitionResult};
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
pub const FIBER_STACK_SIZE: usize = capacity::FIBER_STACK_SIZE as usize;

/// Frames kept in a backtrace (Wasmtime's default is 20).
pub const MAX_BACKTRACE_FRAMES: usize = 256;

/// Table elements a guest may have (per table); slots are sized for this.
pub const MAX_TABLE_ELEMENTS: usize = capacity::MAX_TABLE_ELEMENTS as usize;

/// Tables a module may define; slots are reserved for this many per instance.
pub const MAX_TABLES_PER_MODULE: usize = capacity::MAX_TABLES_PER_MODULE as usize;

/// The largest `max_memory` a call may ask for: a 32-bit memory's whole range.
pub const MAX_MEMORY_BYTES: u64 = capacity::MAX_MEMORY_BYTES;

/// The engine's capacity: configured once by `engine_configure/1` (which
/// `Munition.Application` calls when it starts, from `config :munition`), and
/// frozen when the engine is first built. Sized for the machine by default:
/// see `munition_core::capacity` for the address-space arithmetic.
enum Settled {
    /// Not built yet: the settings asked for so far, `None` for the defaults.
    Open(Option<Settings>),
    /// Built with these; too late to change them.
    Frozen(Settings),
}

static SETTINGS: Mutex<Settled> = Mutex::new(Settled::Open(None));

fn settings_lock() -> MutexGuard<'static, Settled> {
    // Settings are plain values, written whole: a panic cannot tear them.
    SETTINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The host the capacity is computed for: its `RLIMIT_AS`, page size and cores.
fn host() -> Host {
    // SAFETY: getrlimit and sysconf only write to the struct passed in, or read
    // a constant of the system.
    let (rlimit_as, page_size) = unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // `rlim_t` is not `u64` on every platform.
        #[allow(clippy::unnecessary_cast)]
        let rlimit_as = (libc::getrlimit(libc::RLIMIT_AS, &mut limit) == 0
            && limit.rlim_cur != libc::RLIM_INFINITY)
            .then_some(limit.rlim_cur as u64);
        let page_size = u64::try_from(libc::sysconf(libc::_SC_PAGESIZE))
            .ok()
            .filter(|&size| size > 0)
            .unwrap_or(4096);
        (rlimit_as, page_size)
    };
    let cores = thread::available_parallelism().map_or(1, |n| n.get() as u64);
    Host {
        rlimit_as,
        page_size,
        cores,
    }
}

/// The settings once frozen, read without a lock (every store asks).
static FROZEN: OnceCell<Settings> = OnceCell::new();

/// The engine's settings, frozen: what was configured, or the defaults for
/// this machine. Freezes them when the engine or the compile pool is first
/// built.
pub fn settings() -> Settings {
    if let Some(settings) = FROZEN.get() {
        return *settings;
    }
    let mut settled = settings_lock();
    let settings = match &*settled {
        Settled::Frozen(settings) => return *settings,
        Settled::Open(Some(settings)) => *settings,
        Settled::Open(None) => match capacity::settle(Requested::default(), host()) {
            Ok(settings) => settings,
            // No configuration can be honoured: fail loudly rather than build
            // an engine the address space cannot hold.
            Err(message) => panic!("Munition cannot size its engine: {message}"),
        },
    };
    *settled = Settled::Frozen(settings);
    // Under the lock: only ever set to the frozen value.
    let _ = FROZEN.set(settings);
    settings
}

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
        .max_memories_per_module(memories)
        .max_tables_per_module(tables)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        // Small memories and tables are reset with memset rather than madvise.
        .linear_memory_keep_resident(64 * 1024)
        .table_keep_resident(64 * 1024);
    pool
}

pub static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let settings = settings();
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(&settings)));
    config
        .consume_fuel(true)
        .epoch_interruption(true)
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

/// What `engine_configure/1` is given: `nil` for the default of each key.
#[derive(rustler::NifMap)]
#[rustler(decode)]
struct EngineConfig {
    max_instances: Option<u64>,
    max_memories_per_module: Option<u64>,
    max_concurrent_compiles: Option<u64>,
}

/// Sets the engine's capacity before it is first built. `:ok`, or
/// `{:error, {:bad_config, message}}` for values that do not fit (checked
/// first, even when it is too late), or `{:error, {:too_late, message}}` once
/// the engine exists: its pools are reserved and cannot be resized.
#[rustler::nif]
fn engine_configure(config: EngineConfig) -> MunitionResult<Atom> {
    let requested = Requested {
        max_instances: config.max_instances,
        max_memories_per_module: config.max_memories_per_module,
        max_concurrent_compiles: config.max_concurrent_compiles,
    };
    let wanted = capacity::settle(requested, host()).map_err(MunitionError::BadConfig)?;
    let mut settled = settings_lock();
    match &*settled {
        Settled::Frozen(current) => Err(MunitionError::TooLate(format!(
            "too late: the engine was built already, with max_instances: {}, \
             max_memories_per_module: {}, max_concurrent_compiles: {}; its capacity is read \
             once, before the engine is first used (Munition.Application does it when it starts)",
            current.max_instances, current.max_memories_per_module, current.max_concurrent_compiles
        ))),
        Settled::Open(_) => {
            *settled = Settled::Open(Some(wanted));
            Ok(atoms::ok())
        }
    }
}

/// Calls currently inside wasm; the ticker sleeps while this stays zero so an
/// idle VM pays nothing for deadlines.
static ACTIVE_GUESTS: AtomicUsize = AtomicUsize::new(0);

/// Set by the ticker just before it parks, cleared by whoever unparks it: a
/// guest starting while the ticker is awake pays one atomic load, not a
/// wake-up (a futex call, and a thread competing for a core: on two cores,
/// waking it at every call halved the throughput of two callers).
static TICKER_PARKED: AtomicBool = AtomicBool::new(false);

/// Ticks without any guest running before the ticker parks. Calls that come
/// in a stream keep it awake (about 1,000 cheap wake-ups a second) instead
/// of waking it once per call.
const TICKER_LINGER_TICKS: u32 = 100;

static TICKER: Lazy<Thread> = Lazy::new(|| {
    thread::Builder::new()
        .name("munition-epoch".into())
        .spawn(|| {
            let mut idle_ticks = 0;
            loop {
                if ACTIVE_GUESTS.load(Ordering::SeqCst) > 0 {
                    idle_ticks = 0;
                } else if idle_ticks < TICKER_LINGER_TICKS {
                    idle_ticks += 1;
                } else {
                    // Announce the park, then look again: a guest that
                    // started in between either is seen here or sees the
                    // flag and unparks (a token the park below consumes).
                    TICKER_PARKED.store(true, Ordering::SeqCst);
                    if ACTIVE_GUESTS.load(Ordering::SeqCst) == 0 {
                        // Spurious wake-ups are fine: the loop re-checks.
                        thread::park();
                    }
                    TICKER_PARKED.store(false, Ordering::SeqCst);
                    idle_ticks = 0;
                    continue;
                }
                thread::sleep(EPOCH_TICK);
                ENGINE.increment_epoch();
            }
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
        ACTIVE_GUESTS.fetch_add(1, Ordering::SeqCst);
        // Also true the first time, before the ticker thread exists: forcing
        // `TICKER` starts it.
        if TICKER_PARKED.load(Ordering::SeqCst) || Lazy::get(&TICKER).is_none() {
            TICKER_PARKED.store(false, Ordering::SeqCst);
            TICKER.unpark();
        }
        GuestRunning(())
    }
}

impl Drop for GuestRunning {
    fn drop(&mut self) {
        ACTIVE_GUESTS.fetch_sub(1, Ordering::SeqCst);
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
    max_instances: u64,
    max_memories_per_module: u64,
    max_tables_per_module: u64,
    max_table_elements: u64,
    max_memory_bytes: u64,
    max_concurrent_compiles: u64,
    reserved_address_space: u64,
}

/// `%{engine: :wasmtime, version: "48.0.8", features: [atom], crash_reasons:
/// [atom], trap_kinds: [atom]}` and the capacity: `max_instances`,
/// `max_memories_per_module`, `max_tables_per_module`, `max_table_elements`,
/// `max_memory_bytes`, `max_concurrent_compiles`, and the address space the
/// pools reserve (`reserved_address_space`, bytes).
#[rustler::nif]
fn engine_info() -> EngineInfo {
    Lazy::force(&ENGINE);
    let settings = settings();
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
        max_instances: settings.max_instances,
        max_memories_per_module: settings.max_memories_per_module,
        max_tables_per_module: capacity::MAX_TABLES_PER_MODULE,
        max_table_elements: capacity::MAX_TABLE_ELEMENTS,
        max_memory_bytes: capacity::MAX_MEMORY_BYTES,
        max_concurrent_compiles: settings.max_concurrent_compiles,
        reserved_address_space: settings.reserved_bytes,
    }
}
