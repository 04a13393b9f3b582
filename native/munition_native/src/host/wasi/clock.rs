//! The clocks of one guest (real or deterministic, see `time`), and what
//! Wasmtime's own WASI code reads as the clocks in deterministic mode.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds the deterministic clocks advance per unit of fuel consumed:
/// about what one wasm instruction takes.
pub const NS_PER_FUEL: u64 = 1;

/// Where the deterministic wall clock starts: 2000-01-01T00:00:00Z, in
/// nanoseconds since the Unix epoch.
pub const DETERMINISTIC_EPOCH_NS: u64 = 946_684_800 * 1_000_000_000;

/// The clocks of one store.
pub struct GuestClock {
    pub(super) deterministic: bool,
    origin: Instant,
    fuel_given: u64,
    /// Deterministic only: nanoseconds slept so far.
    pub(super) slept_ns: u64,
}

impl GuestClock {
    pub fn new(deterministic: bool, fuel_given: u64) -> Self {
        GuestClock {
            deterministic,
            origin: Instant::now(),
            fuel_given,
            slept_ns: 0,
        }
    }

    /// The monotonic clock, given the fuel left in the store.
    pub(super) fn monotonic_ns(&self, fuel_remaining: u64) -> u64 {
        if self.deterministic {
            self.fuel_given
                .saturating_sub(fuel_remaining)
                .saturating_mul(NS_PER_FUEL)
                .saturating_add(self.slept_ns)
        } else {
            u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }

    /// The wall clock, given the fuel left in the store.
    pub(super) fn wall_ns(&self, fuel_remaining: u64) -> u64 {
        if self.deterministic {
            DETERMINISTIC_EPOCH_NS.saturating_add(self.monotonic_ns(fuel_remaining))
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                // A host clock before 1970: the guest sees 1970.
                .unwrap_or(0)
        }
    }
}

/// What Wasmtime's own code reads as the wall clock in deterministic mode
/// (a file time set to "now"): the deterministic clock's first instant.
pub struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(NS_PER_FUEL)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(DETERMINISTIC_EPOCH_NS)
    }
}

/// As `FixedWallClock`, for the monotonic clock.
pub struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        NS_PER_FUEL
    }
    fn now(&self) -> u64 {
        0
    }
}
