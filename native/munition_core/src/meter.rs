//! The counters of one `Munition.Fuel.Meter` key, and recording a call into
//! them: every update of a call in one function, so that the NIF that fronts
//! it (`munition_native::meter`) is the meter's one native call per recorded
//! call.
//!
//! Which counter holds what is decided in Elixir, once
//! (`Munition.Fuel.Meter` and `Munition.Fuel.Meter.Window`), and arrives
//! here as a [`Layout`] when a key's counters are made; nothing in this file
//! knows an index of its own. Indexes are 0-based. The histograms' bucket
//! function lives only here ([`Histogram::bucket`]); its shape comes with the
//! layout, and Elixir keeps the read side (a bucket's upper edge).
//!
//! Every counter is an unsigned 64-bit atomic, updated without a lock by any
//! number of callers at once: sums wrap on overflow (as `:atomics` did),
//! minima and maxima move one way only, and totals are exact. The per-minute
//! window may miss the few calls that record while its slot is recycled
//! (see [`Counters::record`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a layout may have: a key takes about 1,650 with Munition's
/// layout; a bound keeps a wrong layout from asking for gigabytes.
pub const MAX_COUNTERS: usize = 1 << 20;

/// A caller that keeps finding its minute's slot being recycled gives up
/// after this many looks and leaves its call out of the window. Recycling
/// is a dozen stores, so it is only still under way here when the recycler's
/// thread was descheduled in the middle: waiting longer would stall a
/// scheduler for nothing.
const WINDOW_ATTEMPTS: u32 = 64;

/// The stamp of a slot being recycled: no minute has it (stamps are the
/// minute plus one).
const RECYCLING: u64 = u64::MAX;

/// Log-scale histogram buckets: values `0` to `2 * 2^sub_bits - 1` have a
/// bucket each; above, each power of two up to `2^max_exp` is split in
/// `2^sub_bits` buckets, the last of which also takes every larger value.
/// Munition's histograms are `sub_bits: 3, max_exp: 40`
/// (`Munition.Fuel.Meter.Histogram`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct Histogram {
    pub sub_bits: u32,
    pub max_exp: u32,
}

impl Histogram {
    /// Refuses a shape whose buckets would not follow one another (or whose
    /// shifts would overflow).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.sub_bits) || self.max_exp <= self.sub_bits || self.max_exp > 64
        {
            return Err(format!(
                "histogram needs 1 <= sub_bits <= 16 and sub_bits < max_exp <= 64, got: \
                 sub_bits {}, max_exp {}",
                self.sub_bits, self.max_exp
            ));
        }
        Ok(())
    }

    /// The number of buckets (of a validated shape).
    pub fn buckets(&self) -> usize {
        let sub = 1usize << self.sub_bits;
        sub + (self.max_exp - self.sub_bits) as usize * sub
    }

    /// The bucket, from `0` to `buckets() - 1`, that counts `value` (for a
    /// validated shape).
    pub fn bucket(&self, value: u64) -> usize {
        let sub = 1u64 << self.sub_bits;
        if value < 2 * sub {
            return value as usize;
        }
        // The index of the most significant bit; value > 0 here.
        let exp = 63 - value.leading_zeros();
        if exp >= self.max_exp {
            return self.buckets() - 1;
        }
        let shift = exp - self.sub_bits;
        // (value >> shift) is in [sub, 2 * sub): the bucket within the power.
        (sub + u64::from(shift) * sub + ((value >> shift) - sub)) as usize
    }
}

/// The sum, minimum and maximum of a measure: three counter indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct Measure {
    pub sum: usize,
    pub min: usize,
    pub max: usize,
}

/// Where the window lies (`base`), how many one-minute slots it has and how
/// many counters each takes, and, within a slot, the offset of each of its
/// counters: the stamp (the slot's minute since the epoch plus one; `0` when
/// never used), one count per outcome from `outcomes`, and the sums and
/// maxima of fuel and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct WindowLayout {
    pub base: usize,
    pub minutes: usize,
    pub slot_size: usize,
    pub stamp: usize,
    pub outcomes: usize,
    pub fuel_sum: usize,
    pub fuel_max: usize,
    pub time_sum: usize,
    pub time_max: usize,
}

/// Which counter holds what, as `Munition.Fuel.Meter` lays them out: `size`
/// counters in all; when the key last recorded; `outcome_count` counts from
/// `outcomes`, outcome `0` being success; fuel of all calls, fuel of
/// successful calls and time as [`Measure`]s; three histograms of
/// `histogram`'s shape (successful calls' fuel, crashed calls' fuel, time);
/// the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifMap))]
pub struct Layout {
    pub size: usize,
    pub last_seen: usize,
    pub outcomes: usize,
    pub outcome_count: usize,
    pub fuel: Measure,
    pub ok_fuel: Measure,
    pub time: Measure,
    pub histogram: Histogram,
    pub hist_ok: usize,
    pub hist_crash: usize,
    pub hist_time: usize,
    pub window: WindowLayout,
}

impl Layout {
    /// Checks that every counter lies within `size` and that no two overlap,
    /// in the layout and within a window slot: after this, recording indexes
    /// only within the array.
    pub fn validate(&self) -> Result<(), String> {
        self.histogram.validate()?;
        if self.size == 0 || self.size > MAX_COUNTERS {
            return Err(format!(
                "meter layout size must be between 1 and {MAX_COUNTERS}, got: {}",
                self.size
            ));
        }
        if self.outcome_count == 0 {
            return Err("meter layout needs at least one outcome (success)".into());
        }
        let w = &self.window;
        if w.minutes == 0 {
            return Err("meter window needs at least one minute".into());
        }
        let buckets = self.histogram.buckets();
        let window_size = w
            .minutes
            .checked_mul(w.slot_size)
            .ok_or("meter window is too large")?;
        let mut regions = vec![
            ("last_seen", self.last_seen, 1),
            ("outcomes", self.outcomes, self.outcome_count),
            ("hist_ok", self.hist_ok, buckets),
            ("hist_crash", self.hist_crash, buckets),
            ("hist_time", self.hist_time, buckets),
            ("window", w.base, window_size),
        ];
        for (name, m) in [
            ("fuel", &self.fuel),
            ("ok_fuel", &self.ok_fuel),
            ("time", &self.time),
        ] {
            regions.extend([(name, m.sum, 1), (name, m.min, 1), (name, m.max, 1)]);
        }
        disjoint_within(regions, self.size, "meter layout")?;
        disjoint_within(
            vec![
                ("stamp", w.stamp, 1),
                ("outcomes", w.outcomes, self.outcome_count),
                ("fuel_sum", w.fuel_sum, 1),
                ("fuel_max", w.fuel_max, 1),
                ("time_sum", w.time_sum, 1),
                ("time_max", w.time_max, 1),
            ],
            w.slot_size,
            "meter window slot",
        )
    }
}

/// Checks that the regions `(name, start, length)` lie in `0..size` and do
/// not overlap.
fn disjoint_within(
    mut regions: Vec<(&str, usize, usize)>,
    size: usize,
    what: &str,
) -> Result<(), String> {
    for &(name, start, len) in &regions {
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "{what}: {name} ({start}, {len} counters) lies beyond its {size} counters"
            ));
        }
    }
    regions.sort_by_key(|&(_, start, _)| start);
    for pair in regions.windows(2) {
        let ((a, a_start, a_len), (b, b_start, _)) = (pair[0], pair[1]);
        if a_start + a_len > b_start {
            return Err(format!("{what}: {a} and {b} overlap"));
        }
    }
    Ok(())
}

/// A key's counters, laid out by a validated [`Layout`].
pub struct Counters {
    layout: Layout,
    values: Box<[AtomicU64]>,
}

impl Counters {
    /// Counters for `layout`, all zero except the minima (at their largest,
    /// so that the first value recorded is the minimum) and `last_seen`
    /// (`now_ms`: a new key is not the least recently recorded one).
    pub fn new(layout: Layout, now_ms: u64) -> Result<Self, String> {
        layout.validate()?;
        let values: Box<[AtomicU64]> = (0..layout.size).map(|_| AtomicU64::new(0)).collect();
        values[layout.last_seen].store(now_ms, Ordering::Relaxed);
        for m in [&layout.fuel, &layout.ok_fuel, &layout.time] {
            values[m.min].store(u64::MAX, Ordering::Relaxed);
        }
        Ok(Counters { layout, values })
    }

    /// Bytes these counters hold: the array and its header.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.values)
    }

    /// Counter `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<u64> {
        self.values.get(index).map(|v| v.load(Ordering::Relaxed))
    }

    /// Every counter, in index order. Read one by one while callers record:
    /// a reading can hold a call's outcome count without its histogram count.
    pub fn read(&self) -> impl Iterator<Item = u64> + '_ {
        self.values.iter().map(|v| v.load(Ordering::Relaxed))
    }

    /// Records a call at `now_ms` (milliseconds since the epoch) with outcome
    /// `outcome` (its position among the layout's outcomes, `0` for success),
    /// `fuel` and `time`. `Err` only for an outcome past the layout's.
    ///
    /// The totals (counts, sums, minima, maxima, histograms) are exact
    /// whatever the number of callers. The window may leave the call out: see
    /// [`Counters::record_window`].
    pub fn record(&self, outcome: usize, fuel: u64, time: u64, now_ms: u64) -> Result<(), String> {
        let l = &self.layout;
        if outcome >= l.outcome_count {
            return Err(format!(
                "outcome index {outcome} is not below the layout's {} outcomes",
                l.outcome_count
            ));
        }
        // Nothing orders one counter against another (readers take them one
        // by one anyway): every update is relaxed.
        self.values[l.last_seen].store(now_ms, Ordering::Relaxed);
        self.add(l.outcomes + outcome, 1);
        self.measure(&l.fuel, fuel);
        self.measure(&l.time, time);
        self.add(l.hist_time + l.histogram.bucket(time), 1);
        if outcome == 0 {
            self.measure(&l.ok_fuel, fuel);
            self.add(l.hist_ok + l.histogram.bucket(fuel), 1);
        } else {
            self.add(l.hist_crash + l.histogram.bucket(fuel), 1);
        }
        self.record_window(outcome, fuel, time, now_ms);
        Ok(())
    }

    fn add(&self, index: usize, value: u64) {
        // Wraps on overflow, as :atomics' unsigned add did.
        self.values[index].fetch_add(value, Ordering::Relaxed);
    }

    fn measure(&self, m: &Measure, value: u64) {
        self.add(m.sum, value);
        self.lower(m.min, value);
        self.raise(m.max, value);
    }

    // Once a key has seen a few calls its minimum and maximum rarely move:
    // a plain load then skips the read-modify-write, which would take the
    // cache line away from every other caller recording into the key.
    fn lower(&self, index: usize, value: u64) {
        let cell = &self.values[index];
        if value < cell.load(Ordering::Relaxed) {
            cell.fetch_min(value, Ordering::Relaxed);
        }
    }

    fn raise(&self, index: usize, value: u64) {
        let cell = &self.values[index];
        if value > cell.load(Ordering::Relaxed) {
            cell.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// Counts a call in the slot of its minute (the minute since the epoch
    /// modulo the window's minutes).
    ///
    /// The first caller of a new minute recycles the slot: it claims it by
    /// swapping the old stamp for [`RECYCLING`], zeroes the rest, then stamps
    /// it with its minute. A caller that finds the slot being recycled looks
    /// again, up to [`WINDOW_ATTEMPTS`] times, then leaves its call out of the
    /// window (the totals have it). A slot stamped with a later minute than
    /// the caller's (the clock went back) is left alone, and so is the call.
    fn record_window(&self, outcome: usize, fuel: u64, time: u64, now_ms: u64) {
        let w = &self.layout.window;
        let minute = now_ms / 60_000;
        let stamp = minute + 1;
        // Both below `minutes` and `slot_size`, which validate() bounded by
        // the layout's size.
        let slot = w.base + (minute % w.minutes as u64) as usize * w.slot_size;
        let stamp_cell = &self.values[slot + w.stamp];

        for _ in 0..WINDOW_ATTEMPTS {
            // Acquire: the recycler's zeroes are in place before this
            // caller adds to them.
            match stamp_cell.load(Ordering::Acquire) {
                current if current == stamp => {
                    self.add(slot + w.outcomes + outcome, 1);
                    self.add(slot + w.fuel_sum, fuel);
                    self.raise(slot + w.fuel_max, fuel);
                    self.add(slot + w.time_sum, time);
                    self.raise(slot + w.time_max, time);
                    return;
                }
                RECYCLING => std::hint::spin_loop(),
                old if old < stamp => {
                    if stamp_cell
                        .compare_exchange(old, RECYCLING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        for offset in (0..w.slot_size).filter(|&o| o != w.stamp) {
                            self.values[slot + offset].store(0, Ordering::Relaxed);
                        }
                        stamp_cell.store(stamp, Ordering::Release);
                    }
                    // Claimed or not, the slot is this minute's or being
                    // made so: look again.
                }
                _newer => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    // Munition's histogram (`Munition.Fuel.Meter.Histogram`).
    const HIST: Histogram = Histogram {
        sub_bits: 3,
        max_exp: 40,
    };

    // A layout of three outcomes (ok, trap, other) with a 60-minute window,
    // laid out as `Munition.Fuel.Meter` does, with gaps left around the
    // histograms and the window so that stray writes show.
    fn layout() -> Layout {
        let buckets = HIST.buckets();
        let hist_ok = 20;
        let window = hist_ok + 3 * buckets + 1;
        let slot_size = 1 + 3 + 4;
        Layout {
            size: window + 60 * slot_size + 1,
            last_seen: 0,
            outcomes: 1,
            outcome_count: 3,
            fuel: Measure {
                sum: 4,
                min: 5,
                max: 6,
            },
            ok_fuel: Measure {
                sum: 7,
                min: 8,
                max: 9,
            },
            time: Measure {
                sum: 10,
                min: 11,
                max: 12,
            },
            histogram: HIST,
            hist_ok,
            hist_crash: hist_ok + buckets,
            hist_time: hist_ok + 2 * buckets,
            window: WindowLayout {
                base: window,
                minutes: 60,
                slot_size,
                stamp: 0,
                outcomes: 1,
                fuel_sum: 4,
                fuel_max: 5,
                time_sum: 6,
                time_max: 7,
            },
        }
    }

    // A minute boundary, in milliseconds since the epoch.
    const T0: u64 = 29_000_000 * 60_000;

    fn slot_of(c: &Counters, now_ms: u64) -> usize {
        let w = c.layout.window;
        w.base + ((now_ms / 60_000) % 60) as usize * w.slot_size
    }

    // (calls by outcome, fuel sum, fuel max, time sum, time max) of the slot
    // of `now_ms`'s minute, if stamped with that minute.
    fn minute(c: &Counters, now_ms: u64) -> Option<([u64; 3], u64, u64, u64, u64)> {
        let slot = slot_of(c, now_ms);
        let at = |offset: usize| c.get(slot + offset).unwrap();
        (at(0) == now_ms / 60_000 + 1).then(|| ([at(1), at(2), at(3)], at(4), at(5), at(6), at(7)))
    }

    // The largest value of bucket `b`, as `Histogram.bucket_max/1` computes
    // it in Elixir; written out here only to walk the edges.
    fn bucket_max(b: usize) -> u64 {
        let sub = 8;
        if b < 2 * sub {
            return b as u64;
        }
        if b >= HIST.buckets() - 1 {
            return u64::MAX;
        }
        let shift = (b - sub) / sub;
        let mantissa = (b - sub) % sub + sub;
        (((mantissa + 1) as u64) << shift) - 1
    }

    #[test]
    fn histogram_buckets_follow_one_another_up_to_the_last() {
        assert_eq!(HIST.buckets(), 304);
        for v in 0..16 {
            assert_eq!(HIST.bucket(v), v as usize);
        }
        for b in 0..HIST.buckets() - 1 {
            assert_eq!(HIST.bucket(bucket_max(b)), b, "edge of {b}");
            assert_eq!(HIST.bucket(bucket_max(b) + 1), b + 1, "after {b}");
        }
        let last_from = 15u64 << 36;
        assert_eq!(HIST.bucket(last_from - 1), HIST.buckets() - 2);
        for v in [last_from, 1 << 40, 1 << 50, u64::MAX] {
            assert_eq!(HIST.bucket(v), HIST.buckets() - 1);
        }
        // The doctest of `Histogram.bucket/1`.
        let found: Vec<usize> = [0, 15, 16, 17, 18, 1_000_000]
            .iter()
            .map(|&v| HIST.bucket(v))
            .collect();
        assert_eq!(found, [0, 15, 16, 16, 17, 143]);
    }

    #[test]
    fn histogram_shapes_that_do_not_fit_are_refused() {
        for (sub_bits, max_exp) in [(0, 40), (17, 40), (3, 3), (3, 65)] {
            assert!(Histogram { sub_bits, max_exp }.validate().is_err());
        }
        let widest = Histogram {
            sub_bits: 16,
            max_exp: 64,
        };
        widest.validate().unwrap();
        assert_eq!(widest.bucket(u64::MAX), widest.buckets() - 1);
    }

    #[test]
    fn layouts_with_counters_out_of_range_or_overlapping_are_refused() {
        type Change = fn(&mut Layout);
        layout().validate().unwrap();
        let cases: [(&str, Change); 12] = [
            ("beyond", |l| {
                l.size = l.window.base + 60 * l.window.slot_size - 1
            }),
            ("overlap", |l| l.fuel.min = l.fuel.sum),
            ("overlap", |l| l.hist_crash = l.hist_ok + 1),
            ("overlap", |l| l.outcome_count = 4),
            ("beyond", |l| l.last_seen = usize::MAX),
            ("beyond", |l| l.window.slot_size = 7),
            ("overlap", |l| l.window.fuel_max = l.window.fuel_sum),
            ("too large", |l| l.window.minutes = usize::MAX),
            ("size", |l| l.size = MAX_COUNTERS + 1),
            ("outcome", |l| l.outcome_count = 0),
            ("minute", |l| l.window.minutes = 0),
            ("histogram", |l| l.histogram.max_exp = 2),
        ];
        for (expected, change) in cases {
            let mut l = layout();
            change(&mut l);
            let error = Counters::new(l, 0).err().expect(expected);
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn records_counts_sums_minima_maxima_and_histograms() {
        let c = Counters::new(layout(), 5).unwrap();
        assert_eq!(c.get(0), Some(5));
        assert_eq!(c.get(5), Some(u64::MAX));
        assert_eq!(c.get(c.layout.size), None);

        c.record(0, 100, 10, T0).unwrap();
        c.record(0, 300, 30, T0 + 1).unwrap();
        c.record(1, 50, 5, T0 + 2).unwrap();
        assert!(c.record(3, 1, 1, T0).is_err());

        let l = c.layout;
        let at = |i| c.get(i).unwrap();
        assert_eq!((at(l.last_seen), at(1), at(2), at(3)), (T0 + 2, 2, 1, 0));
        assert_eq!(
            (at(l.fuel.sum), at(l.fuel.min), at(l.fuel.max)),
            (450, 50, 300)
        );
        assert_eq!(
            (at(l.ok_fuel.sum), at(l.ok_fuel.min), at(l.ok_fuel.max)),
            (400, 100, 300)
        );
        assert_eq!(
            (at(l.time.sum), at(l.time.min), at(l.time.max)),
            (45, 5, 30)
        );
        assert_eq!(at(l.hist_ok + HIST.bucket(100)), 1);
        assert_eq!(at(l.hist_ok + HIST.bucket(300)), 1);
        assert_eq!(at(l.hist_crash + HIST.bucket(50)), 1);
        assert_eq!(at(l.hist_time + 10), 1);
        let histograms: u64 = (l.hist_ok..l.hist_ok + 3 * HIST.buckets()).map(at).sum();
        assert_eq!(histograms, 6);
        // The gaps around the histograms and the window stay untouched.
        assert_eq!(
            at(l.hist_ok - 1) + at(l.window.base - 1) + at(l.size - 1),
            0
        );
        assert_eq!(c.read().count(), l.size);
        assert_eq!(c.bytes(), std::mem::size_of::<Counters>() + 8 * l.size);
    }

    #[test]
    fn sums_wrap_and_extremes_are_kept() {
        let c = Counters::new(layout(), 0).unwrap();
        c.record(0, u64::MAX, u64::MAX, T0).unwrap();
        c.record(0, 2, 0, T0).unwrap();
        let l = c.layout;
        assert_eq!(c.get(l.fuel.sum), Some(1));
        assert_eq!(c.get(l.fuel.max), Some(u64::MAX));
        assert_eq!(c.get(l.time.min), Some(0));
        assert_eq!(c.get(l.hist_ok + HIST.buckets() - 1), Some(1));
    }

    #[test]
    fn window_counts_each_minute_in_its_slot() {
        let c = Counters::new(layout(), 0).unwrap();
        c.record(0, 100, 10, T0).unwrap();
        c.record(0, 300, 30, T0 + 5_000).unwrap();
        c.record(1, 50, 5, T0 + 60_000).unwrap();
        assert_eq!(minute(&c, T0), Some(([2, 0, 0], 400, 300, 40, 30)));
        assert_eq!(minute(&c, T0 + 60_000), Some(([0, 1, 0], 50, 50, 5, 5)));
    }

    #[test]
    fn window_recycles_a_slot_an_hour_later_and_skips_older_minutes() {
        let c = Counters::new(layout(), 0).unwrap();
        c.record(0, 100, 10, T0).unwrap();
        c.record(2, 7, 1, T0 + 60 * 60_000).unwrap();
        assert_eq!(slot_of(&c, T0), slot_of(&c, T0 + 60 * 60_000));
        assert_eq!(minute(&c, T0), None);
        assert_eq!(minute(&c, T0 + 60 * 60_000), Some(([0, 0, 1], 7, 7, 1, 1)));

        // The clock went back an hour: the slot holds a later minute.
        c.record(0, 100, 10, T0).unwrap();
        assert_eq!(minute(&c, T0 + 60 * 60_000), Some(([0, 0, 1], 7, 7, 1, 1)));
        // The totals have every call.
        assert_eq!(c.get(c.layout.fuel.sum), Some(207));
    }

    #[test]
    fn window_leaves_a_call_out_when_its_slot_stays_claimed() {
        let c = Counters::new(layout(), 0).unwrap();
        let slot = slot_of(&c, T0);
        c.values[slot].store(RECYCLING, Ordering::Relaxed);
        c.record(0, 100, 10, T0).unwrap();
        assert_eq!(c.get(slot), Some(RECYCLING));
        assert_eq!((1..8).map(|o| c.get(slot + o).unwrap()).sum::<u64>(), 0);
        assert_eq!(c.get(c.layout.fuel.sum), Some(100));
    }

    #[test]
    fn concurrent_recorders_leave_exact_totals() {
        let c = Arc::new(Counters::new(layout(), 0).unwrap());
        let threads: Vec<_> = (1..=8u64)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 1..=10_000u64 {
                        let outcome = usize::from(i % 10 == 0);
                        // 50 minutes: each minute's slot is recycled (from
                        // never used) while others record.
                        c.record(outcome, t * 1_000 + i % 7, i, T0 + i * 300)
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let l = c.layout;
        let at = |i| c.get(i).unwrap();
        assert_eq!((at(1), at(2)), (72_000, 8_000));
        let fuel: u64 = (1..=8u64)
            .flat_map(|t| (1..=10_000u64).map(move |i| t * 1_000 + i % 7))
            .sum();
        assert_eq!(at(l.fuel.sum), fuel);
        assert_eq!((at(l.fuel.min), at(l.fuel.max)), (1_000, 8_006));
        assert_eq!(at(l.time.sum), 8 * (10_000 * 10_001 / 2));
        let histograms: u64 = (l.hist_ok..l.hist_ok + 3 * HIST.buckets()).map(at).sum();
        assert_eq!(histograms, 2 * 80_000);
        // The window has every call but those that raced a recycling (a
        // recycler descheduled by the system between its claim and its stamp).
        let window: u64 = (0..60)
            .map(|s| l.window.base + s * l.window.slot_size)
            .map(|slot| at(slot + 1) + at(slot + 2) + at(slot + 3))
            .sum();
        assert!(window <= 80_000 && window > 70_000, "{window}");
    }
}
