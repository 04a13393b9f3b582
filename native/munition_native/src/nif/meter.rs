//! The fuel meter's NIFs (`Munition.Fuel.Meter`): a key's counters as a
//! resource, and recording a call into them in one call, over
//! `munition_core::meter`, where the counters, the histograms' bucket
//! function and the window live (and are unit-tested without a VM).
//!
//! Every one is short and runs on a normal scheduler. Recording is on the
//! path of every `fire/4`, so its NIFs return a bare value and raise
//! `ArgumentError` (`Error::BadArg`) on a wrong index rather than building
//! an `{:ok, _}` tuple per call; only the meter calls them.

use std::time::{SystemTime, UNIX_EPOCH};

use munition_core::meter::{Counters, Histogram, Layout};
use rustler::{Atom, Error, NifResult, Resource, ResourceArc, Term};

use crate::atoms;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// A key's counters. The meter keeps it in its ETS table, never hands it
/// out: a bare reference (no struct around it) keeps the decoding of every
/// recorded call to one resource lookup.
pub struct MeterRef(Counters);

#[rustler::resource_impl]
impl Resource for MeterRef {}

/// `{:ok, counters}` laid out by `layout` (see `munition_core::meter::Layout`;
/// a map with its field names as atoms), with `now_ms` as when the key was
/// last seen; `{:error, {:bad_args, message}}` for a layout that does not
/// decode or whose counters lie out of range or overlap.
#[rustler::nif]
fn meter_new(layout: Term, now_ms: u64) -> MunitionResult<ResourceArc<MeterRef>> {
    // Decoded here rather than by the NIF's arguments: a field missing or
    // out of range is then this NIF's error tuple, not the exception with a
    // bare message that NifMap raises.
    let layout: Layout = layout.decode().map_err(|_| {
        MunitionError::BadArgs(format!(
            "meter layout must be a map of every field of munition_core::meter::Layout, \
             each a non-negative integer or such a map, got: {layout:?}"
        ))
    })?;
    let counters = Counters::new(layout, now_ms).map_err(MunitionError::BadArgs)?;
    Ok(ResourceArc::new(MeterRef(counters)))
}

/// Records a call now (the system clock, see `now_ms`): `outcome` is its
/// index among the layout's outcomes, `0` for success. `:ok`;
/// `ArgumentError` for an outcome past the layout's.
#[rustler::nif]
fn meter_record(counters: &MeterRef, outcome: usize, fuel: u64, time_us: u64) -> NifResult<Atom> {
    record(counters, outcome, fuel, time_us, now_ms())
}

/// `meter_record/4` at `now_ms` (milliseconds since the epoch), for tests
/// that drive the window.
#[rustler::nif]
fn meter_record_at(
    counters: &MeterRef,
    outcome: usize,
    fuel: u64,
    time_us: u64,
    now_ms: u64,
) -> NifResult<Atom> {
    record(counters, outcome, fuel, time_us, now_ms)
}

fn record(counters: &MeterRef, outcome: usize, fuel: u64, time: u64, now: u64) -> NifResult<Atom> {
    counters
        .0
        .record(outcome, fuel, time, now)
        .map_err(|_| Error::BadArg)?;
    Ok(atoms::ok())
}

/// Milliseconds since the Unix epoch (`0` for a clock before it), from the
/// system's coarse clock where it has one: the minute of a call and when a
/// key was last seen need no finer than its few milliseconds, and reading it
/// costs a few nanoseconds against some 35 for the precise clock on the
/// machines measured (a third of the NIF's own work).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn now_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec passed in.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
        return precise_now_ms();
    }
    match (u64::try_from(now.tv_sec), u64::try_from(now.tv_nsec)) {
        (Ok(secs), Ok(nanos)) => secs.saturating_mul(1_000).saturating_add(nanos / 1_000_000),
        _ => 0,
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn now_ms() -> u64 {
    precise_now_ms()
}

fn precise_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
}

/// Counter `index`; `ArgumentError` past the end.
#[rustler::nif]
fn meter_get(counters: &MeterRef, index: usize) -> NifResult<u64> {
    counters.0.get(index).ok_or(Error::BadArg)
}

/// Every counter, in index order (`0` first).
#[rustler::nif]
fn meter_read(counters: &MeterRef) -> Vec<u64> {
    counters.0.read().collect()
}

/// Bytes the counters hold.
#[rustler::nif]
fn meter_bytes(counters: &MeterRef) -> usize {
    counters.0.bytes()
}

/// The bucket of `value` in a histogram of shape `histogram`
/// (`%{sub_bits: _, max_exp: _}`); `ArgumentError` for a shape that does not
/// decode or fit. The histograms' one bucket function: `Histogram.bucket/1`
/// calls this.
#[rustler::nif]
fn meter_bucket(value: u64, histogram: Term) -> NifResult<usize> {
    let histogram: Histogram = histogram.decode().map_err(|_| Error::BadArg)?;
    histogram.validate().map_err(|_| Error::BadArg)?;
    Ok(histogram.bucket(value))
}
