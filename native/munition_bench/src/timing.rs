//! Timing helpers shared by the baselines' modes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The nearest-rank `q` percentile of a sorted sample (as
/// bench/support/timing.exs).
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Calls at once: `threads` threads each calling `fire` in a loop for
/// `duration`. Returns the line's figures (`n=... median_ns=... p99_ns=...
/// elapsed_ns=... calls_per_s=...`): the latency of those calls, and how
/// many a second were made, counted to the end of the last one.
pub fn throughput(threads: usize, duration: Duration, fire: impl Fn() + Sync) -> String {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut times: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut times = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        fire();
                        times.push(started.elapsed().as_nanos() as u64);
                    }
                    times
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a caller thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    times.sort_unstable();
    format!(
        "n={} median_ns={} p99_ns={} elapsed_ns={} calls_per_s={}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        elapsed.as_nanos(),
        (times.len() as f64 / elapsed.as_secs_f64()).round() as u64
    )
}
