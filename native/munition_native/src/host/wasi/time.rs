//! WASI's time, Munition's own: the guest's clocks (read by
//! `clock_time_get` and `clock_res_get`, written once in `own`), and
//! waiting (`poll_oneoff` here; `sched_yield` in `own`).
//!
//! Two clocks, chosen per call:
//!
//! - real: the wall clock is the host's; the monotonic clock counts from
//!   the creation of the store (the host's uptime is not the guest's
//!   business);
//! - deterministic: the wall clock starts at `DETERMINISTIC_EPOCH_NS`
//!   (2000-01-01T00:00:00Z), the monotonic clock at 0, and both advance by
//!   `NS_PER_FUEL` nanoseconds per unit of fuel the guest has consumed, plus
//!   the time it slept. Sleeping takes no real time: the clocks jump to the
//!   wake time. Two runs with the same fuel see the same times.
//!
//! A guest that sleeps on the real clock (`poll_oneoff` with only clock
//! subscriptions) is suspended without holding a thread: its slice ends with
//! `{:waiting, ms}` for the earlier of its wake time and its deadline, and
//! the driver resumes it then (see `wakeup`). Past its deadline it ends as a
//! timeout (`:interrupt`), however long it meant to sleep.

use std::time::{Duration, Instant};

use wasmtime::{Caller, Error, Func, FuncType, Store, Val};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wiggle::GuestMemory;

use super::caller::{check_range, error, read_guest, write_guest};
use super::own::{self, errno, MONOTONIC, REALTIME};
use crate::host::context::charge_bytes;
use crate::host::state::StoreState;
use crate::host::wakeup::SuspendOnce;

/// `(monotonic, wall)` now, in nanoseconds (see `own::now`).
fn now(caller: &mut Caller<'_, StoreState>) -> Result<(u64, u64), Error> {
    own::now(caller).map_err(error)
}

const POLL: &str = "poll_oneoff";
const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const EVENT_CLOCK: u8 = 0;
const EVENT_FD_READ: u8 = 1;
const EVENT_FD_WRITE: u8 = 2;
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;
const FILETYPE_DIRECTORY: u8 = 3;

/// One subscription of `poll_oneoff`.
enum Subscription {
    /// Wakes at this monotonic time (ns).
    Clock {
        userdata: u64,
        at: u64,
    },
    Fd {
        userdata: u64,
        kind: u8,
        fd: u32,
    },
}

fn event(userdata: u64, error: i32, kind: u8) -> [u8; EVENT_SIZE as usize] {
    let mut event = [0u8; EVENT_SIZE as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[8..10].copy_from_slice(&(error as u16).to_le_bytes());
    event[10] = kind;
    event
}

/// `poll_oneoff(in, out, nsubscriptions, nevents)`.
///
/// Descriptors are all in memory or local files, always ready: a
/// subscription to a valid one (stdin or a file for reading; stdout, stderr
/// or a file for writing) is ready at once, one to anything else is an event
/// with its error (`EBADF`). With no descriptor ready, the guest sleeps until
/// its earliest clock subscription (see the moduledoc), then gets the clock
/// events that are due.
pub fn poll_oneoff(store: &mut Store<StoreState>, ty: FuncType) -> Func {
    Func::new_async(store, ty, |mut caller, params, results| {
        Box::new(async move {
            let input = params[0].unwrap_i32() as u32 as u64;
            let output = params[1].unwrap_i32() as u32 as u64;
            let count = params[2].unwrap_i32() as u32 as u64;
            let nevents = params[3].unwrap_i32() as u32 as u64;
            results[0] = Val::I32(poll(&mut caller, input, output, count, nevents).await?);
            Ok(())
        })
    })
}

async fn poll(
    caller: &mut Caller<'_, StoreState>,
    input: u64,
    output: u64,
    count: u64,
    nevents: u64,
) -> Result<i32, Error> {
    if count == 0 {
        // Sleeping forever is not a thing in preview 1.
        return Ok(errno::INVAL);
    }
    // Below 2^32 each: the products cannot overflow.
    check_range(caller, POLL, input, count * SUBSCRIPTION_SIZE)?;
    check_range(caller, POLL, output, count * EVENT_SIZE)?;
    check_range(caller, POLL, nevents, 4)?;
    charge_bytes(caller, (count * (SUBSCRIPTION_SIZE + EVENT_SIZE)) as usize).map_err(error)?;
    let (monotonic, wall) = now(caller)?;
    let mut subscriptions = Vec::new();
    for index in 0..count {
        let raw = read_guest::<48>(caller, POLL, input + index * SUBSCRIPTION_SIZE)?;
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or_default());
        let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap_or_default());
        let userdata = u64_at(0);
        subscriptions.push(match raw[8] {
            EVENT_CLOCK => {
                let (id, timeout) = (u32_at(16), u64_at(24));
                let absolute =
                    u16::from_le_bytes([raw[40], raw[41]]) & SUBSCRIPTION_CLOCK_ABSTIME != 0;
                let at = match (id, absolute) {
                    (_, false) => monotonic.saturating_add(timeout),
                    (MONOTONIC, true) => timeout,
                    (REALTIME, true) => monotonic.saturating_add(timeout.saturating_sub(wall)),
                    _ => return Ok(errno::INVAL),
                };
                if id != MONOTONIC && id != REALTIME {
                    return Ok(errno::INVAL);
                }
                Subscription::Clock { userdata, at }
            }
            kind @ (EVENT_FD_READ | EVENT_FD_WRITE) => Subscription::Fd {
                userdata,
                kind,
                fd: u32_at(16),
            },
            _ => return Ok(errno::INVAL),
        });
    }

    let mut events = Vec::new();
    for subscription in &subscriptions {
        if let Subscription::Fd { userdata, kind, fd } = *subscription {
            let error = fd_ready(caller, kind, fd).await?;
            events.push(event(userdata, error, kind));
        }
    }
    if events.is_empty() {
        let earliest = subscriptions
            .iter()
            .filter_map(|s| match s {
                Subscription::Clock { at, .. } => Some(*at),
                Subscription::Fd { .. } => None,
            })
            .min()
            .unwrap_or(monotonic);
        if earliest > monotonic {
            sleep(caller, earliest - monotonic).await?;
        }
    }
    let (monotonic, _) = now(caller)?;
    for subscription in &subscriptions {
        if let Subscription::Clock { userdata, at } = *subscription {
            if at <= monotonic {
                events.push(event(userdata, errno::SUCCESS, EVENT_CLOCK));
            }
        }
    }
    for (index, event) in events.iter().enumerate() {
        write_guest(caller, POLL, output + index as u64 * EVENT_SIZE, event)?;
    }
    write_guest(caller, POLL, nevents, &(events.len() as u32).to_le_bytes())?;
    Ok(errno::SUCCESS)
}

/// The error of an event for descriptor `fd`: `0` (ready) or why not. Asks
/// Wasmtime's descriptor table (`fd_fdstat_get` into a scratch buffer of the
/// host's, not guest memory).
async fn fd_ready(caller: &mut Caller<'_, StoreState>, kind: u8, fd: u32) -> Result<i32, Error> {
    let stdio_mismatch = match kind {
        EVENT_FD_READ => fd == 1 || fd == 2,
        _ => fd == 0,
    };
    if stdio_mismatch {
        return Ok(errno::BADF);
    }
    let mut fdstat = [0u8; 24];
    let error = {
        let ctx = &mut caller.data_mut().wasi().ctx;
        p1::fd_fdstat_get(ctx, &mut GuestMemory::Unshared(&mut fdstat), fd as i32, 0).await?
    };
    Ok(match error {
        errno::SUCCESS if fdstat[0] == FILETYPE_DIRECTORY => errno::BADF,
        error => error,
    })
}

/// Sleeps `ns` nanoseconds: on the deterministic clock, at once (the clocks
/// jump); on the real clock, suspended until then or until the deadline,
/// where the call ends as a timeout.
async fn sleep(caller: &mut Caller<'_, StoreState>, ns: u64) -> Result<(), Error> {
    let wasi = caller.data_mut().wasi();
    if wasi.clock.deterministic {
        wasi.clock.slept_ns = wasi.clock.slept_ns.saturating_add(ns);
        return Ok(());
    }
    let wakeup = caller.data().wakeup.clone();
    let deadline = caller.data().deadline;
    // Past the deadline is as good as forever.
    let until = Instant::now()
        .checked_add(Duration::from_nanos(ns))
        .unwrap_or(deadline);
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if now >= deadline {
            wakeup.set_sleep_until(None);
            return Err(Error::msg(caller.data_mut().time_out(
                "poll_oneoff: the deadline passed while the guest slept".into(),
            )));
        }
        wakeup.set_sleep_until(Some(until));
        SuspendOnce(false).await;
    }
    wakeup.set_sleep_until(None);
    Ok(())
}
