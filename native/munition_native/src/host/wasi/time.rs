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

use wasmtime::{Caller, Error, Val};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wiggle::GuestMemory;

use super::caller::error;
use super::own::errno;
use super::poll::{event, sleep_deterministic, Poll, EVENT_FD_READ};
use crate::host::builtins::WasiFuture;
use crate::host::state::StoreState;
use crate::host::wakeup::SuspendOnce;

const FILETYPE_DIRECTORY: u8 = 3;

/// `poll_oneoff(in, out, nsubscriptions, nevents)`.
///
/// Descriptors are all in memory or local files, always ready: a
/// subscription to a valid one (stdin or a file for reading; stdout, stderr
/// or a file for writing) is ready at once, one to anything else is an event
/// with its error (`EBADF`). With no descriptor ready, the guest sleeps until
/// its earliest clock subscription (see the moduledoc), then gets the clock
/// events that are due.
pub fn poll_oneoff<'a>(
    caller: &'a mut Caller<'_, StoreState>,
    params: &'a [Val],
    results: &'a mut [Val],
) -> WasiFuture<'a> {
    Box::pin(async move {
        let input = params[0].unwrap_i32() as u32 as u64;
        let output = params[1].unwrap_i32() as u32 as u64;
        let count = params[2].unwrap_i32() as u32 as u64;
        let nevents = params[3].unwrap_i32() as u32 as u64;
        results[0] = Val::I32(poll(caller, input, output, count, nevents).await?);
        Ok(())
    })
}

async fn poll(
    caller: &mut Caller<'_, StoreState>,
    input: u64,
    output: u64,
    count: u64,
    nevents: u64,
) -> Result<i32, Error> {
    let poll = match Poll::read(caller, input, output, count, nevents).map_err(error)? {
        Ok(poll) => poll,
        Err(errno) => return Ok(errno),
    };
    let mut events = Vec::new();
    for &(userdata, kind, fd) in &poll.fds {
        let error = fd_ready(caller, kind, fd).await?;
        events.push(event(userdata, error, kind));
    }
    if let Some(ns) = poll.sleep_ns().filter(|_| events.is_empty()) {
        sleep(caller, ns).await?;
    }
    poll.finish(caller, events).map_err(error)
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
    if sleep_deterministic(caller, ns) {
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
