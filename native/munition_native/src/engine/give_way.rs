//! A dirty scheduler thread gives its core away for a moment after a
//! guest's slice when the machine has more runnable threads than CPUs.
//!
//! Why: the BEAM's normal schedulers busy-wait before they sleep (`+sbwt`,
//! `medium` by default): a fixed number of rounds, with a `sched_yield`
//! every hundred. Linux's EEVDF scheduler (6.6 and later) pushes a
//! yielding thread's virtual deadline back by a whole slice at each
//! `sched_yield`. When every core also runs a dirty scheduler thread busy
//! with guest code, the spinning scheduler is then picked for some 20 µs
//! a 4 ms tick, so a spin of a fraction of a millisecond of CPU lasts tens
//! of milliseconds, and its timers (a `receive ... after 1`) fire that
//! late: with 40 runaways on 2 cores, a heartbeat of 1 ms paused up to
//! 147 ms (`perf` with probes on `erts_bump_timers`: the scheduler that
//! held the heartbeat's timer stayed runnable and serviced no timer for
//! 24-47 ms at a time). A `sched_yield` of our own does not help: it
//! pushes our deadline back one slice, the spinner's went back a hundred.
//! Sleeping does: with this thread off the core, the core runs whatever
//! waits for it.
//!
//! So after a slice that ended with the guest still running, the dirty
//! scheduler thread sleeps `PAUSE` if the VM's normal schedulers busy-wait
//! (it was not started with `+sbwt none`) and more threads are runnable on
//! the machine than it has online CPUs (`munition_core::machine`: the
//! fourth field of `/proc/loadavg`, read with one `pread`, about 1 µs). A
//! guest alone on an otherwise idle machine never pauses. Runaways on a
//! machine whose every core is taken pause after most slices, and the
//! BEAM's threads get their turn: its busy waiting gets the CPU it asks
//! for, which costs the guests more than the pauses themselves (40 guests
//! of 200 M turns on 2 cores took 15% longer, medians of eight runs each).
//! With `+sbwt none` the schedulers sleep instead of spinning, nothing
//! starves them, and nothing pauses. The count of runnable threads is the
//! whole machine's, not a container's: in a container on a busy host, long
//! guests pause whenever the host is oversubscribed. Without
//! `/proc/loadavg` (not Linux), nothing pauses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use munition_core::machine::{oversubscribed, schedulers_busy_wait};

use super::instance::Progress;

/// How long a dirty scheduler thread sleeps after a slice when the machine
/// is oversubscribed: long enough for a starved scheduler to finish its
/// busy wait (with 1 µs, longer with the kernel's timer slack, a 1 ms
/// heartbeat still paused 14-24 ms; with 100 µs, never over 12 ms). The
/// kernel's timer slack and wake-up make it some 180 µs.
pub const PAUSE: Duration = Duration::from_micros(100);

static PAUSES: AtomicU64 = AtomicU64::new(0);

/// Called on a dirty scheduler after a guest's slice: pauses when the
/// guest is still running, the VM's schedulers busy-wait and the machine
/// is oversubscribed. Never call it on a normal scheduler.
pub fn after_slice(progress: &Progress) {
    if matches!(progress, Progress::Yielded) && schedulers_busy_wait() && oversubscribed() {
        std::thread::sleep(PAUSE);
        PAUSES.fetch_add(1, Ordering::Relaxed);
    }
}

/// The pauses made since the VM started.
pub fn pauses() -> u64 {
    PAUSES.load(Ordering::Relaxed)
}
