//! `poll_oneoff`'s subscriptions and events, written once for every
//! engine: reading the subscriptions (checked in guest memory and paid for
//! before anything is read), when the guest would sleep, the deterministic
//! clock's sleep (the clocks jump), and writing the events that are due.
//! What differs is how an engine finds a descriptor ready and how it waits
//! on the real clock: Wasmtime asks `wasmtime-wasi`'s table and parks the
//! guest's fiber (`time`); Wasmi asks its fixed table and suspends the call
//! with a `Sleep` on the WASI state (`plain`).

use super::own::{self, errno, write_guest, MONOTONIC, REALTIME};
use crate::host::context::{charge_bytes, guest_range, HostCtx, Stop};

pub const POLL: &str = "poll_oneoff";
pub const EVENT_FD_READ: u8 = 1;
pub const EVENT_FD_WRITE: u8 = 2;
const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const EVENT_CLOCK: u8 = 0;
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;

/// One event as the guest reads it.
pub type Event = [u8; EVENT_SIZE as usize];

pub fn event(userdata: u64, error: i32, kind: u8) -> Event {
    let mut event = [0u8; EVENT_SIZE as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[8..10].copy_from_slice(&(error as u16).to_le_bytes());
    event[10] = kind;
    event
}

/// One call of `poll_oneoff`, its subscriptions read.
pub struct Poll {
    /// `(userdata, kind, fd)` of each descriptor subscription.
    pub fds: Vec<(u64, u8, u32)>,
    /// `(userdata, monotonic ns to wake at)` of each clock subscription.
    clocks: Vec<(u64, u64)>,
    output: u64,
    nevents: u64,
    /// The monotonic clock when the subscriptions were read.
    monotonic: u64,
}

impl Poll {
    /// `poll_oneoff(in, out, nsubscriptions, nevents)`'s subscriptions, or
    /// the errno the call returns at once (`Ok(Err)`: none, an unknown
    /// clock or kind).
    pub fn read(
        ctx: &mut dyn HostCtx,
        input: u64,
        output: u64,
        count: u64,
        nevents: u64,
    ) -> Result<Result<Poll, i32>, Stop> {
        if count == 0 {
            // Sleeping forever is not a thing in preview 1.
            return Ok(Err(errno::INVAL));
        }
        // Below 2^32 each: the products cannot overflow.
        let subscriptions = guest_range(ctx, POLL, input, count * SUBSCRIPTION_SIZE)?;
        guest_range(ctx, POLL, output, count * EVENT_SIZE)?;
        guest_range(ctx, POLL, nevents, 4)?;
        charge_bytes(ctx, (count * (SUBSCRIPTION_SIZE + EVENT_SIZE)) as usize)?;
        let mut raw = vec![0u8; subscriptions.len()];
        if let (Some(data), _) = ctx.memory_and_state() {
            raw.copy_from_slice(&data[subscriptions]);
        }
        let (monotonic, wall) = own::now(ctx)?;
        let mut poll = Poll {
            fds: Vec::new(),
            clocks: Vec::new(),
            output,
            nevents,
            monotonic,
        };
        for raw in raw.chunks_exact(SUBSCRIPTION_SIZE as usize) {
            let u64_at =
                |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or_default());
            let u32_at =
                |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap_or_default());
            let userdata = u64_at(0);
            match raw[8] {
                EVENT_CLOCK => {
                    let (id, timeout) = (u32_at(16), u64_at(24));
                    let absolute =
                        u16::from_le_bytes([raw[40], raw[41]]) & SUBSCRIPTION_CLOCK_ABSTIME != 0;
                    let at = match (id, absolute) {
                        (MONOTONIC | REALTIME, false) => monotonic.saturating_add(timeout),
                        (MONOTONIC, true) => timeout,
                        (REALTIME, true) => monotonic.saturating_add(timeout.saturating_sub(wall)),
                        _ => return Ok(Err(errno::INVAL)),
                    };
                    poll.clocks.push((userdata, at));
                }
                kind @ (EVENT_FD_READ | EVENT_FD_WRITE) => {
                    poll.fds.push((userdata, kind, u32_at(16)))
                }
                _ => return Ok(Err(errno::INVAL)),
            }
        }
        Ok(Ok(poll))
    }

    /// How long the guest sleeps, in nanoseconds, when no descriptor is
    /// ready: until its earliest clock subscription (`None`: not at all).
    pub fn sleep_ns(&self) -> Option<u64> {
        let earliest = self.clocks.iter().map(|(_, at)| *at).min()?;
        (earliest > self.monotonic).then(|| earliest - self.monotonic)
    }

    /// Ends the call (after its sleep, when it slept): the clock events due
    /// now after the descriptor `events`, written to the guest; its errno.
    pub fn finish(&self, ctx: &mut dyn HostCtx, mut events: Vec<Event>) -> Result<i32, Stop> {
        let (monotonic, _) = own::now(ctx)?;
        for (userdata, at) in &self.clocks {
            if *at <= monotonic {
                events.push(event(*userdata, errno::SUCCESS, EVENT_CLOCK));
            }
        }
        for (index, event) in events.iter().enumerate() {
            write_guest(ctx, POLL, self.output + index as u64 * EVENT_SIZE, event)?;
        }
        let count = events.len() as u32;
        write_guest(ctx, POLL, self.nevents, &count.to_le_bytes())?;
        Ok(errno::SUCCESS)
    }
}

/// Sleeps `ns` at once when the guest's clocks are deterministic (they jump
/// by it; no real time passes): `true`. `false` on the real clock, where the
/// engine waits.
pub fn sleep_deterministic(ctx: &mut dyn HostCtx, ns: u64) -> bool {
    let clock = &mut ctx.state().wasi().clock;
    if clock.deterministic {
        clock.slept_ns = clock.slept_ns.saturating_add(ns);
    }
    clock.deterministic
}
