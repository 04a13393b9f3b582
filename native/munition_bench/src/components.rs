//! `munition_bench components`: the raw baseline of bench/components.exs, a
//! component (component model, WASI 0.2) called on raw Wasmtime with nothing
//! of Munition around it.
//!
//! One sample is one isolated call: a fresh `Store`, an instance from an
//! `InstancePre` linked once (WASI 0.2 from `wasmtime-wasi`, the functions
//! of every other imported interface no-ops, what a plugin's `log` becomes;
//! a guest importing anything else does not link), the call with
//! `Val`s (the export looked up by its index, its arguments from the command
//! line read against its WIT types), and dropping the store. Each figure
//! names how the engine and the store were set up:
//!
//!   * `default`: Wasmtime's default configuration (no fuel, no epochs) with
//!     the pooling allocator at its default limits, WASI linked synchronously,
//!     instantiation and the call on this thread's stack: what a Rust program
//!     embedding Wasmtime would do, and the baseline of issue 20;
//!   * `default+typed`: the same with the call through a `TypedFunc` instead
//!     of `Val`s (only for a function of `(u32, string) -> bool`, such as the
//!     plugins' `check`): what the dynamic call costs by itself;
//!   * `munition`: munition_native's engine (`engine::wasmtime::config`: the
//!     pooling allocator at Munition's limits, fuel as its one instrument,
//!     the same stack sizes and backtrace settings) and store
//!     (`engine::wasmtime::store::new_store`: the limiter, fuel yielding every
//!     100,000 units, the deadline checked by a call hook), WASI linked asynchronously, instantiation and the call
//!     in one future on a fiber (`instantiate_async`, `call_async`), polled
//!     inside wasmtime-wasi's Tokio context as Munition's slices are; the
//!     store's WASI context a preview-2 `WasiCtx` with no stdio;
//!   * `munition+p1ctx`: the same with the store's WASI context built as
//!     munition_native's `host::wasi::run::WasiRun::new` builds one for a call
//!     granted `:wasi` (stdin and captured stdout and stderr as in-memory
//!     pipes, `build_p1`): what that context costs.
//!
//! Also: calls on one instance after its first (`Val`s and typed: what a
//! call costs once the guest has initialised itself), what making a WASI
//! context costs (preview 2's, and Munition's preview-1 one), the compile
//! time on each engine (`Component::new`; Munition's
//! compiles on one thread, Wasmtime's default on all cores), loading the
//! compiled code back (`Component::deserialize_file` of the serialised
//! component, then `instantiate_pre`, what a cached load needs before the
//! first call), calls per second with `--threads` threads calling at once,
//! and the memory of calls in flight: `--in-flight K` calls of `--hold NAME`
//! (a function that calls an import) each stopped in the import, on its
//! fiber, until all K are; the growth of this process's resident set (VmRSS
//! of /proc/self/status) divided by K, after one round of K to warm the
//! pools' slots, and the pooling allocator's live slots divided by K.
//!
//! ```text
//! munition_bench components --wasm PATH --call NAME [--arg VALUE]... [--samples N]
//!     [--threads N] [--throughput-ms N] [--loads N] [--hold NAME --hold-arg VALUE... --in-flight K]
//!     [--serve]
//! raw_component_compile engine=munition ns=...
//! ready default default+typed munition munition+p1ctx
//!                                 (--serve: then `fire INSTRUMENT N` -> `times T1 ... TN`, until `done`)
//! raw_component_load engine=munition n=... median_ns=... p99_ns=... code_bytes=...
//! raw_component instrument=munition n=... median_ns=... p99_ns=... mean_ns=... instantiate_median_ns=... call_median_ns=... drop_median_ns=...
//! raw_component_warm instrument=default n=... val_median_ns=... typed_median_ns=...
//! raw_component_wasi_ctx n=... p2_ns=... p1_ns=...
//! raw_component_throughput instrument=munition threads=8 n=... median_ns=... p99_ns=... calls_per_s=...
//! raw_component_memory instrument=munition k=... rss_per_call_bytes=... anon_per_call_bytes=... core_instances_per_call=... memories_per_call=... tables_per_call=... stacks_per_call=...
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Type, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::munition::{self, block_on, Bounded, Limits, MAX_CORE_INSTANCES, MAX_MEMORY, TIMEOUT};
use crate::timing::{self, percentile};

// Munition's bound on a call's captured stdout and stderr.
const STDOUT_LIMIT: usize = 64 * 1024;

const WARMUP: usize = 20;

struct Args {
    path: String,
    wasm: Vec<u8>,
    call: String,
    args: Vec<String>,
    fuel: u64,
    samples: usize,
    threads: usize,
    throughput: Duration,
    loads: usize,
    hold: Option<String>,
    hold_args: Vec<String>,
    in_flight: usize,
    serve: bool,
}

fn parse(argv: &[String]) -> Args {
    let mut args = Args {
        path: String::new(),
        wasm: Vec::new(),
        call: String::new(),
        args: Vec::new(),
        fuel: 1_000_000_000,
        samples: 300,
        threads: 8,
        throughput: Duration::from_millis(2000),
        loads: 10,
        hold: None,
        hold_args: Vec::new(),
        in_flight: 0,
        serve: false,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} takes a value"))
                .clone()
        };
        let count = |value: String| -> usize {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag} takes a count"))
        };
        match flag.as_str() {
            "--wasm" => {
                args.path = value();
                args.wasm =
                    std::fs::read(&args.path).unwrap_or_else(|e| panic!("{}: {e}", args.path));
            }
            "--call" => args.call = value(),
            "--arg" => args.args.push(value()),
            "--fuel" => args.fuel = count(value()) as u64,
            "--samples" => args.samples = count(value()).max(1),
            "--threads" => args.threads = count(value()).max(1),
            "--throughput-ms" => args.throughput = Duration::from_millis(count(value()) as u64),
            "--loads" => args.loads = count(value()).max(1),
            "--hold" => args.hold = Some(value()),
            "--hold-arg" => args.hold_args.push(value()),
            "--in-flight" => args.in_flight = count(value()),
            "--serve" => args.serve = true,
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !args.wasm.is_empty() && !args.call.is_empty(),
        "--wasm and --call are required"
    );
    args
}

/// How the engine and the store are set up (see the module's doc).
#[derive(Clone, Copy, PartialEq)]
enum Instrument {
    Default,
    DefaultTyped,
    Munition,
    MunitionP1Ctx,
}

impl Instrument {
    fn name(self) -> &'static str {
        match self {
            Instrument::Default => "default",
            Instrument::DefaultTyped => "default+typed",
            Instrument::Munition => "munition",
            Instrument::MunitionP1Ctx => "munition+p1ctx",
        }
    }

    fn munition(self) -> bool {
        matches!(self, Instrument::Munition | Instrument::MunitionP1Ctx)
    }
}

/// Wasmtime's defaults, with the pooling allocator at its default limits.
fn default_engine() -> Engine {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    Engine::new(&config).expect("Wasmtime's defaults are valid")
}

/// A store's WASI context: preview 2's own, or a preview-1 context (which
/// holds a preview-2 one), as Munition's stores have.
enum Wasi {
    P2(WasiCtx, ResourceTable),
    P1(WasiP1Ctx),
}

struct State {
    wasi: Wasi,
    limits: Limits,
    deadline: Instant,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        match &mut self.wasi {
            Wasi::P2(ctx, table) => WasiCtxView { ctx, table },
            Wasi::P1(ctx) => ctx.ctx(),
        }
    }
}

impl Bounded for State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// The WASI context `host::wasi::run::WasiRun::new` builds for a call
/// granted `:wasi` with Munition's defaults: no arguments, no environment,
/// an empty stdin, stdout and stderr captured in memory.
fn p1_context() -> WasiP1Ctx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&[] as &[String])
        .envs(&[] as &[(String, String)])
        .stdin(MemoryInputPipe::new(Vec::<u8>::new()))
        .stdout(MemoryOutputPipe::new(STDOUT_LIMIT))
        .stderr(MemoryOutputPipe::new(STDOUT_LIMIT))
        .allow_blocking_current_thread(false);
    builder.build_p1()
}

/// Held while `true`: a held import's call waits, on its fiber, until it
/// turns `false`.
struct Gate(Arc<AtomicBool>);

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0.load(Ordering::Relaxed) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// An export: where it is, and its WIT types.
struct Export {
    index: ComponentExportIndex,
    params: Vec<Type>,
    results: usize,
}

/// A component linked on one engine, ready to be called.
struct Setup {
    engine: Engine,
    instrument: Instrument,
    pre: InstancePre<State>,
    fuel: u64,
    /// Closed while calls are held in their import (`--in-flight`).
    gate: Arc<AtomicBool>,
}

/// Links `component`: WASI 0.2, and every function of a non-WASI import a
/// no-op (an async one that waits at `gate` for Munition's engine). Nothing
/// else: the plugins import nothing else, and after
/// `Linker::define_unknown_imports_as_traps` they no longer link (the
/// `pollable` of `wasi:clocks/monotonic-clock`: mismatched resource types).
fn link(
    engine: &Engine,
    component: &Component,
    munition: bool,
    gate: &Arc<AtomicBool>,
) -> InstancePre<State> {
    let mut linker: Linker<State> = Linker::new(engine);
    if munition {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
    } else {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
    }
    .expect("wasmtime-wasi links");
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if name.starts_with("wasi:") {
            continue;
        }
        let mut at = linker.instance(name).expect("a fresh instance name");
        for (func_name, export) in instance.exports(engine) {
            if !matches!(export.ty, ComponentItem::ComponentFunc(_)) {
                continue;
            }
            if munition {
                let gate = gate.clone();
                at.func_new_async(func_name, move |_, _, _, _| {
                    let gate = Gate(gate.clone());
                    Box::new(async move {
                        gate.await;
                        Ok(())
                    })
                })
            } else {
                at.func_new(func_name, |_, _, _, _| Ok(()))
            }
            .expect("one definition per function");
        }
    }
    linker
        .instantiate_pre(component)
        .expect("the component links")
}

impl Setup {
    /// A fresh store, set up as the instrument says.
    fn store(&self) -> Store<State> {
        let wasi = if self.instrument == Instrument::MunitionP1Ctx {
            Wasi::P1(p1_context())
        } else {
            Wasi::P2(WasiCtx::builder().build(), ResourceTable::new())
        };
        let state = State {
            wasi,
            limits: Limits {
                max_memory: MAX_MEMORY,
                instances: MAX_CORE_INSTANCES,
            },
            deadline: Instant::now() + TIMEOUT,
        };
        let mut store = Store::new(&self.engine, state);
        if self.instrument.munition() {
            munition::set_up(&mut store, self.fuel, true);
        }
        store
    }

    /// One isolated call of `export` with `params`: nanoseconds to a ready
    /// instance (the store included), of the call, and of dropping the store
    /// (the pool resetting the instance's memories and tables).
    fn fire(&self, export: &Export, params: &[Val]) -> (u64, u64, u64) {
        let started = Instant::now();
        let mut store = self.store();
        let mut results = vec![Val::Bool(false); export.results];
        let (instantiated, called) = match self.instrument {
            Instrument::Default | Instrument::DefaultTyped => {
                let instance = self.pre.instantiate(&mut store).expect("instantiates");
                let instantiated = Instant::now();
                if self.instrument == Instrument::DefaultTyped {
                    let func = instance
                        .get_typed_func::<(u32, &str), (bool,)>(&mut store, export.index)
                        .expect("a function of (u32, string) -> bool");
                    let (Val::U32(n), Val::String(s)) = (&params[0], &params[1]) else {
                        unreachable!("checked by `typed_check`")
                    };
                    func.call(&mut store, (*n, s)).expect("the call returns");
                } else {
                    let func = instance
                        .get_func(&mut store, export.index)
                        .expect("the export is a function");
                    func.call(&mut store, params, &mut results)
                        .expect("the call returns");
                }
                (instantiated, Instant::now())
            }
            Instrument::Munition | Instrument::MunitionP1Ctx => {
                wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
                    block_on(
                        async {
                            let instance = self
                                .pre
                                .instantiate_async(&mut store)
                                .await
                                .expect("instantiates");
                            let instantiated = Instant::now();
                            let func = instance
                                .get_func(&mut store, export.index)
                                .expect("the export is a function");
                            func.call_async(&mut store, params, &mut results)
                                .await
                                .expect("the call returns");
                            (instantiated, Instant::now())
                        },
                        false,
                    )
                })
            }
        };
        let dropping = Instant::now();
        drop(store);
        (
            (instantiated - started).as_nanos() as u64,
            (called - instantiated).as_nanos() as u64,
            dropping.elapsed().as_nanos() as u64,
        )
    }
}

/// The export `name` of `component`, with its types.
fn export(engine: &Engine, component: &Component, name: &str) -> Export {
    let ty = component.component_type();
    let item = ty
        .exports(engine)
        .find(|(export, _)| *export == name)
        .map(|(_, item)| item.ty)
        .unwrap_or_else(|| panic!("the component exports no {name}"));
    let ComponentItem::ComponentFunc(func) = item else {
        panic!("{name} is not a function")
    };
    let results = func.results().len();
    Export {
        index: component
            .get_export_index(None, name)
            .expect("an export has an index"),
        params: func.params().map(|(_, ty)| ty).collect(),
        results,
    }
}

/// The command line's arguments as `Val`s of the export's parameter types.
fn values(export: &Export, args: &[String]) -> Vec<Val> {
    assert_eq!(
        export.params.len(),
        args.len(),
        "the function takes {} argument(s)",
        export.params.len()
    );
    export
        .params
        .iter()
        .zip(args)
        .map(|(ty, arg)| {
            let int = || -> i64 { arg.parse().unwrap_or_else(|_| panic!("{arg}: an integer")) };
            match ty {
                Type::U32 => Val::U32(int() as u32),
                Type::S32 => Val::S32(int() as i32),
                Type::U64 => Val::U64(int() as u64),
                Type::S64 => Val::S64(int()),
                Type::Bool => Val::Bool(arg == "true"),
                Type::String => Val::String(arg.clone()),
                other => panic!("arguments of type {other:?} are not supported here"),
            }
        })
        .collect()
}

/// Whether the export can be called as `(u32, string) -> bool`.
fn typed_check(export: &Export) -> bool {
    matches!(export.params[..], [Type::U32, Type::String]) && export.results == 1
}

/// What a store's WASI context costs to make (and drop): a preview-2
/// `WasiCtx` with its `ResourceTable`, and the preview-1 context Munition
/// builds (`p1_context`). Medians of `n` batches of 100.
fn wasi_contexts(n: usize) {
    let batch = |make: &dyn Fn()| -> u64 {
        let mut times: Vec<u64> = (0..n)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..100 {
                    make();
                }
                started.elapsed().as_nanos() as u64 / 100
            })
            .collect();
        times.sort_unstable();
        percentile(&times, 0.5)
    };
    let p2 = batch(&|| drop((WasiCtx::builder().build(), ResourceTable::new())));
    let p1 = batch(&|| drop(p1_context()));
    println!("raw_component_wasi_ctx n={n} p2_ns={p2} p1_ns={p1}");
}

/// Calls on one instance, after its first: what the call costs once the
/// guest has initialised itself (a fresh instance pays its first call),
/// with `Val`s and typed.
fn warm_calls(setup: &Setup, export: &Export, params: &[Val], samples: usize) {
    let mut store = setup.store();
    let instance = setup.pre.instantiate(&mut store).expect("instantiates");
    let func = instance
        .get_func(&mut store, export.index)
        .expect("the export is a function");
    let typed = instance
        .get_typed_func::<(u32, &str), (bool,)>(&mut store, export.index)
        .expect("a function of (u32, string) -> bool");
    let (Val::U32(n), Val::String(s)) = (&params[0], &params[1]) else {
        unreachable!("checked by `typed_check`")
    };
    let mut results = vec![Val::Bool(false); export.results];
    let mut time = |call: &mut dyn FnMut(&mut Store<State>)| -> u64 {
        for _ in 0..WARMUP {
            call(&mut store);
        }
        let mut times: Vec<u64> = (0..samples)
            .map(|_| {
                let started = Instant::now();
                call(&mut store);
                started.elapsed().as_nanos() as u64
            })
            .collect();
        times.sort_unstable();
        percentile(&times, 0.5)
    };
    let val = time(&mut |store| {
        func.call(&mut *store, params, &mut results)
            .expect("the call returns")
    });
    let typed = time(&mut |store| {
        typed.call(&mut *store, (*n, s)).expect("the call returns");
    });
    println!(
        "raw_component_warm instrument={} n={samples} val_median_ns={val} typed_median_ns={typed}",
        setup.instrument.name()
    );
}

fn latency(setup: &Setup, export: &Export, params: &[Val], samples: usize) {
    for _ in 0..WARMUP {
        setup.fire(export, params);
    }
    let mut totals = Vec::with_capacity(samples);
    let mut instantiations = Vec::with_capacity(samples);
    let mut calls = Vec::with_capacity(samples);
    let mut drops = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let (instantiated, called, dropped) = setup.fire(export, params);
        totals.push(started.elapsed().as_nanos() as u64);
        instantiations.push(instantiated);
        calls.push(called);
        drops.push(dropped);
    }
    for times in [&mut totals, &mut instantiations, &mut calls, &mut drops] {
        times.sort_unstable();
    }
    println!(
        "raw_component instrument={} n={samples} median_ns={} p99_ns={} mean_ns={} instantiate_median_ns={} call_median_ns={} drop_median_ns={}",
        setup.instrument.name(),
        percentile(&totals, 0.5),
        percentile(&totals, 0.99),
        totals.iter().sum::<u64>() / samples as u64,
        percentile(&instantiations, 0.5),
        percentile(&calls, 0.5),
        percentile(&drops, 0.5),
    );
}

/// Isolated calls per second with `threads` threads calling at once.
fn throughput(setup: &Setup, export: &Export, params: &[Val], threads: usize, duration: Duration) {
    let figures = timing::throughput(threads, duration, || {
        setup.fire(export, params);
    });
    println!(
        "raw_component_throughput instrument={} threads={threads} {figures}",
        setup.instrument.name()
    );
}

/// This process's resident set, and its anonymous part, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

type Held = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `k` calls of `export`, each stopped in its import (polled once), or
/// `None` when a call returned without calling one.
fn hold(setup: &Setup, export: &Export, params: &[Val], k: usize) -> Option<Vec<Held>> {
    setup.gate.store(true, Ordering::Relaxed);
    let mut held = Vec::with_capacity(k);
    for _ in 0..k {
        let mut store = setup.store();
        let pre = setup.pre.clone();
        let (index, params, results) = (export.index, params.to_vec(), export.results);
        let mut call: Held = Box::pin(async move {
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiates");
            let func = instance
                .get_func(&mut store, index)
                .expect("the export is a function");
            let mut results = vec![Val::Bool(false); results];
            func.call_async(&mut store, &params, &mut results)
                .await
                .expect("the call returns");
        });
        let mut cx = Context::from_waker(Waker::noop());
        // Fuel yields are pending polls too: poll until the call waits
        // at the gate or fails to.
        let mut polls = 0;
        let waiting = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| loop {
            match call.as_mut().poll(&mut cx) {
                Poll::Ready(()) => break false,
                Poll::Pending if polls > 10_000 => break true,
                Poll::Pending => polls += 1,
            }
        });
        if !waiting {
            setup.gate.store(false, Ordering::Relaxed);
            return None;
        }
        held.push(call);
    }
    Some(held)
}

fn release(setup: &Setup, held: Vec<Held>) {
    setup.gate.store(false, Ordering::Relaxed);
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        for call in held {
            block_on(call, false);
        }
    });
}

fn memory(setup: &Setup, export: &Export, params: &[Val], k: usize) {
    let Some(warm) = hold(setup, export, params, k) else {
        println!("# raw_component_memory: the --hold function returned without calling an import");
        return;
    };
    release(setup, warm);
    let (rss_before, anon_before) = rss();
    let held = hold(setup, export, params, k).expect("held the first time");
    let (rss_held, anon_held) = rss();
    let pool = setup
        .engine
        .pooling_allocator_metrics()
        .expect("the pooling allocator");
    let per = |n: u64| n / k as u64;
    println!(
        "raw_component_memory instrument={} k={k} rss_per_call_bytes={} anon_per_call_bytes={} core_instances_per_call={} memories_per_call={} tables_per_call={} stacks_per_call={}",
        setup.instrument.name(),
        per(rss_held.saturating_sub(rss_before)),
        per(anon_held.saturating_sub(anon_before)),
        per(pool.core_instances()),
        per(pool.memories() as u64),
        per(pool.tables() as u64),
        per(pool.stacks() as u64),
    );
    release(setup, held);
}

/// Compiles the component on `engine`, printing the time it took.
fn compile(engine: &Engine, name: &str, wasm: &[u8]) -> Component {
    let started = Instant::now();
    let component = Component::new(engine, wasm).expect("the component compiles");
    println!(
        "raw_component_compile engine={name} ns={}",
        started.elapsed().as_nanos()
    );
    component
}

/// Loads the component's serialised code from a file `loads` times, each
/// linked after (`instantiate_pre`), and prints the times.
fn load(setup: &Setup, component: &Component, path: &str, loads: usize) {
    let code = component.serialize().expect("the component serialises");
    let file = std::env::temp_dir().join(format!(
        "munition-bench-component-{}-{}.cwasm",
        std::process::id(),
        std::path::Path::new(path)
            .file_stem()
            .map_or("component".into(), |stem| stem.to_string_lossy())
    ));
    std::fs::write(&file, &code).expect("the temporary directory is writable");
    let mut times: Vec<u64> = (0..loads)
        .map(|_| {
            let started = Instant::now();
            // SAFETY: the file was written just above by this engine's
            // `serialize`, and nothing else writes it.
            let loaded = unsafe { Component::deserialize_file(&setup.engine, &file) }
                .expect("the code loads");
            let _ = link(&setup.engine, &loaded, true, &setup.gate);
            started.elapsed().as_nanos() as u64
        })
        .collect();
    let _ = std::fs::remove_file(&file);
    times.sort_unstable();
    println!(
        "raw_component_load engine=munition n={loads} median_ns={} p99_ns={} code_bytes={}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        code.len()
    );
}

/// `--serve`: calls on demand, so that the caller can interleave them with
/// its own and compare the two under the same conditions (this machine has
/// slow phases of seconds, whatever runs). Says `ready` and the instruments
/// it has, then answers each
/// line `fire INSTRUMENT N` on stdin with `times T1 ... TN`, the
/// nanoseconds of N isolated calls as `latency` times them, until `done`
/// (or the end of stdin); the batch figures follow.
fn serve(setups: &[(Setup, Export)], params: &[Val]) {
    use std::io::{BufRead, Write};
    let names: Vec<&str> = setups
        .iter()
        .map(|(setup, _)| setup.instrument.name())
        .collect();
    println!("ready {}", names.join(" "));
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin is readable");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["fire", name, n] => {
                let (setup, export) = setups
                    .iter()
                    .find(|(setup, _)| setup.instrument.name() == name)
                    .unwrap_or_else(|| panic!("no instrument {name}"));
                let n: usize = n.parse().expect("fire INSTRUMENT N");
                let times: Vec<String> = (0..n)
                    .map(|_| {
                        let started = Instant::now();
                        setup.fire(export, params);
                        started.elapsed().as_nanos().to_string()
                    })
                    .collect();
                println!("times {}", times.join(" "));
                let _ = std::io::stdout().flush();
            }
            ["done"] => break,
            _ => panic!("unknown command: {line}"),
        }
    }
}

pub fn main(argv: &[String]) {
    let args = parse(argv);
    let gate = Arc::new(AtomicBool::new(false));
    let mut setups = Vec::new();

    let engine = default_engine();
    let component = compile(&engine, "default", &args.wasm);
    let pre = link(&engine, &component, false, &gate);
    let check = export(&engine, &component, &args.call);
    let params = values(&check, &args.args);
    let typed = typed_check(&check);
    setups.push((
        Setup {
            engine: engine.clone(),
            instrument: Instrument::Default,
            pre: pre.clone(),
            fuel: args.fuel,
            gate: gate.clone(),
        },
        check,
    ));
    if typed {
        let check = export(&engine, &component, &args.call);
        setups.push((
            Setup {
                engine,
                instrument: Instrument::DefaultTyped,
                pre,
                fuel: args.fuel,
                gate: gate.clone(),
            },
            check,
        ));
    }

    // An export's index is its component's: the one compiled by this engine.
    let engine = munition::engine();
    let component = compile(&engine, "munition", &args.wasm);
    let pre = link(&engine, &component, true, &gate);
    for instrument in [Instrument::Munition, Instrument::MunitionP1Ctx] {
        setups.push((
            Setup {
                engine: engine.clone(),
                instrument,
                pre: pre.clone(),
                fuel: args.fuel,
                gate: gate.clone(),
            },
            export(&engine, &component, &args.call),
        ));
    }
    let munition = setups.len() - 2;
    load(&setups[munition].0, &component, &args.path, args.loads);

    if args.serve {
        serve(&setups, &params);
    }
    for (setup, check) in &setups {
        latency(setup, check, &params, args.samples);
    }
    if typed {
        warm_calls(&setups[0].0, &setups[0].1, &params, args.samples);
    }
    wasi_contexts(args.samples);
    for (setup, check) in [&setups[0], &setups[munition]] {
        throughput(setup, check, &params, args.threads, args.throughput);
    }
    if let (Some(name), true) = (&args.hold, args.in_flight > 0) {
        let held = export(&engine, &component, name);
        let held_params = values(&held, &args.hold_args);
        memory(&setups[munition].0, &held, &held_params, args.in_flight);
    }
}
