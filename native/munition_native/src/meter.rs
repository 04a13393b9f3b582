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
use rustler::{Atom, Error, NifResult, Resource, ResourceArc};

use crate::atoms;
use crate::error::{MunitionError, MunitionResult};

/// A key's counters. The meter keeps it in its ETS table, never hands it
/// out: a bare reference (no struct around it) keeps the decoding of every
/// recorded call to one resource lookup.
pub struct MeterRef(Counters);

#[rustler::resource_impl]
impl Resource for MeterRef {}

/// `{:ok, counters}` laid out by `layout` (see `munition_core::meter::Layout`;
/// a map with its field names as atoms), with `now_ms` as when the key was
/// last seen; `{:error, {:bad_args, message}}` for a layout whose counters
/// lie out of range or overlap.
#[rustler::nif]
fn meter_new(layout: Layout, now_ms: u64) -> MunitionResult<ResourceArc<MeterRef>> {
    let counters = Counters::new(layout, now_ms).map_err(MunitionError::BadArgs)?;
    Ok(ResourceArc::new(MeterRef(counters)))
}

/// Records a call now (the system clock; a clock before the Unix epoch counts
/// as the epoch): `outcome` is its index among the layout's outcomes, `0`
/// for success. `:ok`; `ArgumentError` for an outcome past the layout's.
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

fn now_ms() -> u64 {
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
/// fit. The histograms' one bucket function: `Histogram.bucket/1` calls this.
#[rustler::nif]
fn meter_bucket(value: u64, histogram: Histogram) -> NifResult<usize> {
    histogram.validate().map_err(|_| Error::BadArg)?;
    Ok(histogram.bucket(value))
}
