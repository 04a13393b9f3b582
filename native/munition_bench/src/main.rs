//! The raw-Wasmtime baseline of `make bench` (bench/fire.exs runs it and puts
//! its figures in the same table as Munition's).
//!
//! What one isolated call costs with nothing of Munition around it: a fresh
//! `Store`, an instance of the tiny `add` module, one call of `add(2, 3)`,
//! and dropping the store. Same Wasmtime version and features as
//! munition_native, an engine configured as `munition_native::engine::ENGINE`
//! and a store set up as Munition sets up its own (limiter, fuel, the
//! deadline's call hook): `munition::engine` and `munition::set_up`.
//!
//! Four ways to do it:
//!
//!   * `raw_instancepre_async`, `raw_instance_new_async`: instantiation and
//!     the call each on a fiber (`instantiate_async` / `call_async`, polled to
//!     completion on this thread, with fuel yield points). This is how
//!     Munition runs guests, so these are the comparable baselines.
//!   * `raw_instancepre_sync`, `raw_instance_new_sync`: the same without
//!     fibers, on this thread's stack: the floor, which Munition cannot use
//!     (it slices guests and never runs them on a scheduler's stack).
//!
//! `instancepre` instantiates through an `InstancePre` linked once;
//! `instance_new` through `Instance::new*`, type-checking the imports on every
//! call (what Munition does today).
//!
//! Output, one line per figure, `name key=value ...` on stdout:
//!
//! ```text
//! raw_instancepre_async n=20000 median_ns=4321 p99_ns=9876 mean_ns=4500
//! raw_instancepre_async_throughput threads=2 n=123456 median_ns=4400 p99_ns=9000 elapsed_ns=500000000 calls_per_s=246912
//! ```
//!
//! Options: `--samples N` (timed iterations per case, default 20000),
//! `--throughput-ms N` (wall time per throughput figure, default 500).
//!
//! `munition_bench compute ...` measures guest code instead (bench/compute.exs):
//! see src/compute.rs. `munition_bench components ...` measures a call of a
//! component (bench/components.exs): see src/components.rs.

mod components;
mod compute;
mod munition;
mod timing;

use std::time::{Duration, Instant};

use wasmtime::{Engine, Instance, InstancePre, Linker, Module, Store, Val};

use munition::{block_on, Bounded, Limits, MAX_MEMORY, TIMEOUT};
use timing::percentile;

const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;

// Munition's default fuel for a call (`Munition.Options`).
const FUEL: u64 = 10_000_000;

const WARMUP: usize = 2_000;

/// What Munition keeps in a store that the engine looks at during a call: the
/// memory limiter and the deadline.
struct State {
    limits: Limits,
    deadline: Instant,
}

impl Bounded for State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// A fresh store as munition_native's `new_store` makes one. Fuel yield
/// points only in async mode: with them, a store only runs guests through
/// the `*_async` calls.
fn new_store(engine: &Engine, fibers: bool) -> Store<State> {
    let state = State {
        limits: Limits {
            max_memory: MAX_MEMORY,
            instances: 1,
        },
        deadline: Instant::now() + TIMEOUT,
    };
    let mut store = Store::new(engine, state);
    munition::set_up(&mut store, FUEL, fibers);
    store
}

/// How the call is made: through the `InstancePre` (`Pre*`) or
/// `Instance::new*` (`New*`), on a fiber (`*Async`) or not (`*Sync`).
#[derive(Clone, Copy)]
enum Path {
    PreAsync,
    NewAsync,
    PreSync,
    NewSync,
}

impl Path {
    const ALL: [Path; 4] = [Path::PreAsync, Path::NewAsync, Path::PreSync, Path::NewSync];

    fn name(self) -> &'static str {
        match self {
            Path::PreAsync => "raw_instancepre_async",
            Path::NewAsync => "raw_instance_new_async",
            Path::PreSync => "raw_instancepre_sync",
            Path::NewSync => "raw_instance_new_sync",
        }
    }

    fn fibers(self) -> bool {
        matches!(self, Path::PreAsync | Path::NewAsync)
    }
}

struct Guest {
    engine: Engine,
    module: Module,
    pre: InstancePre<State>,
}

impl Guest {
    fn new() -> Self {
        let engine = munition::engine();
        let module = Module::new(&engine, ADD).expect("the add module compiles");
        let pre = Linker::new(&engine)
            .instantiate_pre(&module)
            .expect("the add module needs no imports");
        Guest {
            engine,
            module,
            pre,
        }
    }

    /// One isolated call: fresh store, instance, `add(2, 3)`, drop. The export
    /// is looked up by name and called with `Val`s, as Munition does.
    fn fire(&self, path: Path) {
        let mut store = new_store(&self.engine, path.fibers());
        let instance = match path {
            Path::PreAsync => block_on(self.pre.instantiate_async(&mut store), false),
            Path::NewAsync => block_on(Instance::new_async(&mut store, &self.module, &[]), false),
            Path::PreSync => self.pre.instantiate(&mut store),
            Path::NewSync => Instance::new(&mut store, &self.module, &[]),
        }
        .expect("instantiation succeeds");
        let add = instance
            .get_func(&mut store, "add")
            .expect("the module exports add");
        let params = [Val::I32(2), Val::I32(3)];
        let mut results = [Val::I32(0)];
        if path.fibers() {
            block_on(add.call_async(&mut store, &params, &mut results), false)
        } else {
            add.call(&mut store, &params, &mut results)
        }
        .expect("add returns");
        assert_eq!(results[0].i32(), Some(5));
    }
}

fn latency(guest: &Guest, path: Path, samples: usize) {
    for _ in 0..WARMUP {
        guest.fire(path);
    }
    let mut times: Vec<u64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            guest.fire(path);
            started.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    let mean = times.iter().sum::<u64>() / times.len() as u64;
    println!(
        "{} n={samples} median_ns={} p99_ns={} mean_ns={mean}",
        path.name(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
    );
}

/// Isolated calls per second with `threads` threads calling at once, and the
/// latency of those calls.
fn throughput(guest: &Guest, path: Path, threads: usize, duration: Duration) {
    let figures = timing::throughput(threads, duration, || guest.fire(path));
    println!("{}_throughput threads={threads} {figures}", path.name());
}

fn option(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|arg| arg == name) {
        None => default,
        Some(at) => args
            .get(at + 1)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a positive integer")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("compute") => return compute::main(&args[1..]),
        Some("components") => return components::main(&args[1..]),
        _ => {}
    }
    let samples = option(&args, "--samples", 20_000).max(1);
    let duration = Duration::from_millis(option(&args, "--throughput-ms", 500) as u64);

    let guest = Guest::new();
    for path in Path::ALL {
        latency(&guest, path, samples);
    }
    for threads in [1, 2] {
        throughput(&guest, Path::PreAsync, threads, duration);
    }
}
