//! The engines' capacity: configured once by `engine_configure/1` (which
//! `Munition.Application` calls when it starts, from `config :munition`),
//! and frozen when an engine or the compile pool is first built. Sized for
//! the machine by default: see `munition_core::capacity` for the
//! address-space arithmetic. Both engines keep the same bounds (memories
//! and tables per module, table elements), so a module runs on both or on
//! neither.

use std::sync::{Mutex, MutexGuard};
use std::thread;

use munition_core::capacity::{self, Host, Requested, Settings};
use once_cell::sync::OnceCell;

use crate::vocabulary::error::{MunitionError, MunitionResult};

/// Table elements a guest may have (per table); slots are sized for this.
pub const MAX_TABLE_ELEMENTS: usize = capacity::MAX_TABLE_ELEMENTS as usize;

/// Tables a module may define; slots are reserved for this many per instance.
pub const MAX_TABLES_PER_MODULE: usize = capacity::MAX_TABLES_PER_MODULE as usize;

/// The largest `max_memory` a call may ask for: a 32-bit memory's whole range.
pub const MAX_MEMORY_BYTES: u64 = capacity::MAX_MEMORY_BYTES;

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

/// The engines' settings, frozen: what was configured, or the defaults for
/// this machine. Freezes them when first asked.
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

/// Memories a module may have: what every store's limiter allows.
pub fn max_memories_per_module() -> usize {
    settings().max_memories_per_module as usize
}

/// Sets the capacity before it is frozen: `Err(BadConfig)` for values that
/// do not fit (checked first, even when it is too late), `Err(TooLate)` once
/// frozen (the pools are reserved and cannot be resized).
pub fn configure(requested: Requested) -> MunitionResult<()> {
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
            Ok(())
        }
    }
}
