//! `munition_bench compute`: the raw engines' baselines for bench/compute.exs,
//! guest code measured with nothing of Munition around it.
//!
//! One sample is one isolated call as Munition makes it: a fresh store, an
//! instance (from an `InstancePre` on Wasmtime), `_initialize` when the module
//! exports it, the call (a binary argument copied in through the guest's
//! `alloc`, as Munition's binary ABI does), and dropping the store. Each
//! figure names the instrumentation the engine was built with:
//!
//!   * Wasmtime: `none`, `fuel`, `epochs` (a ticker thread advancing the epoch
//!     every millisecond, a deadline callback on every tick, as Munition's),
//!     `fuel+epochs`, `fuel+fiber` and `fuel+epochs+fiber` (the guest on a
//!     fiber, `call_async`, never yielding), `fuel+epochs+yields` (on a fiber
//!     yielding every 100,000 units of fuel, `fuel_async_yield_interval`:
//!     Munition's configuration until fuel became its one instrument), and
//!     `munition` = fuel alone on a fiber yielding every 100,000 units of
//!     fuel and reading the clock at each yield, as Munition checks the
//!     deadline there: its own configuration (`munition::FUEL_YIELD_INTERVAL`);
//!   * Wasmi: `none` and `fuel`.
//!
//! WASI imports (a reactor built with wasi-libc imports a few) are stubs
//! (`wasi_stub`): `clock_time_get` reads a monotonic clock, `fd_write`
//! discards what it is given and says it wrote it all, the environment and
//! the arguments are empty, there is no preopened directory (EBADF),
//! anything else answers ENOSYS. The benchmarks
//! give the guest nothing to read.
//!
//! ```text
//! munition_bench compute --wasm PATH --call NAME [--binary-len N | --binary-file PATH] [--i32 N]... [--samples N]
//! raw_compute engine=wasmtime instrument=fuel median_ns=... p99_ns=... fuel=...
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::munition::{block_on, FUEL_YIELD_INTERVAL};
use crate::timing::percentile;

const FUEL: u64 = u64::MAX / 2;
const EPOCH_TICK: Duration = Duration::from_millis(1);
const ENOSYS: i32 = 52;
const EBADF: i32 = 8;

struct Args {
    wasm: Vec<u8>,
    call: String,
    ints: Vec<i32>,
    binary: Option<Vec<u8>>,
    samples: usize,
}

fn parse(argv: &[String]) -> Args {
    let mut args = Args {
        wasm: Vec::new(),
        call: String::new(),
        ints: Vec::new(),
        binary: None,
        samples: 20,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} takes a value"))
                .clone()
        };
        match flag.as_str() {
            "--wasm" => {
                let path = value();
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                args.wasm = wat::parse_bytes(&bytes).expect("wasm or WAT").into_owned();
            }
            "--call" => args.call = value(),
            "--i32" => args
                .ints
                .push(value().parse().expect("--i32 takes an integer")),
            // A binary of N bytes (0, 1, ..., 255, 0, ...), as bench/compute.exs makes it.
            "--binary-len" => {
                let len: usize = value().parse().expect("--binary-len takes a length");
                args.binary = Some((0..len).map(|i| i as u8).collect());
            }
            "--binary-file" => {
                let path = value();
                args.binary = Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
            }
            "--samples" => args.samples = value().parse().expect("--samples takes a count"),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        !args.wasm.is_empty() && !args.call.is_empty(),
        "--wasm and --call are required"
    );
    args
}

/// What a stubbed WASI function does, given its name, its i32/i64 arguments
/// and the guest's memory; the errno it returns.
fn wasi_stub(name: &str, args: &[i64], memory: &mut [u8]) -> i32 {
    fn write(memory: &mut [u8], at: i64, bytes: &[u8]) {
        let at = at as u32 as usize;
        memory[at..at + bytes.len()].copy_from_slice(bytes);
    }
    match name {
        "clock_time_get" => {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            let nanos = START.get_or_init(Instant::now).elapsed().as_nanos() as u64;
            write(memory, args[2], &nanos.to_le_bytes());
            0
        }
        "fd_write" => {
            let (iovs, count) = (args[1] as u32 as usize, args[2] as usize);
            let total: u32 = (0..count)
                .map(|i| {
                    let at = iovs + i * 8 + 4;
                    u32::from_le_bytes(memory[at..at + 4].try_into().expect("4 bytes"))
                })
                .sum();
            write(memory, args[3], &total.to_le_bytes());
            0
        }
        // An empty environment and no arguments: wasi-libc exits (71) when
        // these fail, and the Lua reactor reads its environment.
        "environ_sizes_get" | "args_sizes_get" => {
            write(memory, args[0], &0u32.to_le_bytes());
            write(memory, args[1], &0u32.to_le_bytes());
            0
        }
        "environ_get" | "args_get" => 0,
        // No preopened directories: EBADF ends wasi-libc's scan for them,
        // any other error exits (a guest that opens files, such as Lua).
        "fd_prestat_get" => EBADF,
        _ => ENOSYS,
    }
}

/// Times `samples` runs of `run` (after two unmeasured ones), which returns
/// the fuel the call consumed, and prints the figure.
fn report(engine: &str, instrument: &str, samples: usize, mut run: impl FnMut() -> u64) {
    run();
    run();
    let mut fuel = 0;
    let mut times: Vec<u64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            fuel = run();
            started.elapsed().as_nanos() as u64
        })
        .collect();
    times.sort_unstable();
    println!(
        "raw_compute engine={engine} instrument={instrument} n={samples} median_ns={} p99_ns={} fuel={fuel}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

mod wasmtime_raw {
    use super::*;
    use wasmtime::{
        Config, Engine, Extern, Func, InstancePre, Linker, Module, Store, UpdateDeadline, Val,
    };

    #[derive(Clone, Copy, PartialEq)]
    pub enum Instrument {
        None,
        Fuel,
        Epochs,
        FuelEpochs,
        FuelFiber,
        FuelEpochsFiber,
        FuelEpochsYields,
        Munition,
    }

    impl Instrument {
        pub const ALL: [Instrument; 8] = [
            Instrument::None,
            Instrument::Fuel,
            Instrument::Epochs,
            Instrument::FuelEpochs,
            Instrument::FuelFiber,
            Instrument::FuelEpochsFiber,
            Instrument::FuelEpochsYields,
            Instrument::Munition,
        ];
        fn name(self) -> &'static str {
            match self {
                Instrument::None => "none",
                Instrument::Fuel => "fuel",
                Instrument::Epochs => "epochs",
                Instrument::FuelEpochs => "fuel+epochs",
                Instrument::FuelFiber => "fuel+fiber",
                Instrument::FuelEpochsFiber => "fuel+epochs+fiber",
                Instrument::FuelEpochsYields => "fuel+epochs+yields",
                Instrument::Munition => "munition",
            }
        }
        fn fuel(self) -> bool {
            !matches!(self, Instrument::None | Instrument::Epochs)
        }
        fn epochs(self) -> bool {
            !matches!(
                self,
                Instrument::None | Instrument::Fuel | Instrument::FuelFiber | Instrument::Munition
            )
        }
    }

    pub fn run(args: &Args, instrument: Instrument) {
        let mut config = Config::new();
        config
            .consume_fuel(instrument.fuel())
            .epoch_interruption(instrument.epochs())
            .max_wasm_stack(512 * 1024)
            .async_stack_size(2 * 1024 * 1024);
        let engine = Engine::new(&config).expect("a valid configuration");
        let module = Module::new(&engine, &args.wasm).expect("the module compiles");
        let mut linker: Linker<()> = Linker::new(&engine);
        for import in module.imports() {
            if let Some(ty) = import.ty().func() {
                let name = import.name().to_string();
                let func =
                    move |mut caller: wasmtime::Caller<'_, ()>, params: &[Val], out: &mut [Val]| {
                        let args: Vec<i64> = params
                            .iter()
                            .map(|v| v.i64().or(v.i32().map(i64::from)).unwrap_or(0))
                            .collect();
                        let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                            panic!("the guest exports its memory")
                        };
                        let errno = wasi_stub(&name, &args, memory.data_mut(&mut caller));
                        if let Some(slot) = out.first_mut() {
                            *slot = Val::I32(errno);
                        }
                        Ok(())
                    };
                linker
                    .func_new(import.module(), import.name(), ty.clone(), func)
                    .expect("a stub for each function import");
            }
        }
        let pre: InstancePre<()> = linker
            .instantiate_pre(&module)
            .expect("imports are functions");

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = instrument.epochs().then(|| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
        });

        let fibers = matches!(
            instrument,
            Instrument::FuelFiber
                | Instrument::FuelEpochsFiber
                | Instrument::FuelEpochsYields
                | Instrument::Munition
        );
        let yields = matches!(
            instrument,
            Instrument::FuelEpochsYields | Instrument::Munition
        );
        // Munition reads the clock at each yield, for the deadline.
        let clock = instrument == Instrument::Munition;
        report("wasmtime", instrument.name(), args.samples, || {
            let mut store = Store::new(&engine, ());
            if instrument.fuel() {
                store.set_fuel(FUEL).expect("fuel is on");
            }
            if yields {
                store
                    .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                    .expect("fuel is on");
            }
            if instrument.epochs() {
                let deadline = Instant::now() + Duration::from_secs(60);
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(move |_| {
                    Ok(if Instant::now() >= deadline {
                        UpdateDeadline::Interrupt
                    } else {
                        UpdateDeadline::Continue(1)
                    })
                });
            }
            let instance = if fibers {
                block_on(pre.instantiate_async(&mut store), clock)
            } else {
                pre.instantiate(&mut store)
            }
            .expect("instantiation succeeds");
            let call = |store: &mut Store<()>, func: Func, params: &[Val]| {
                let mut results = vec![Val::I32(0); func.ty(&*store).results().len()];
                if fibers {
                    block_on(func.call_async(&mut *store, params, &mut results), clock)
                } else {
                    func.call(&mut *store, params, &mut results)
                }
                .expect("the call returns");
                results
            };
            if let Some(init) = instance.get_func(&mut store, "_initialize") {
                call(&mut store, init, &[]);
            }
            let mut params: Vec<Val> = Vec::new();
            if let Some(binary) = &args.binary {
                let alloc = instance
                    .get_func(&mut store, "alloc")
                    .expect("alloc is exported");
                let ptr = call(&mut store, alloc, &[Val::I32(binary.len() as i32)])[0]
                    .i32()
                    .expect("alloc returns an i32");
                let Some(Extern::Memory(memory)) = instance.get_export(&mut store, "memory") else {
                    panic!("memory is exported")
                };
                memory
                    .write(&mut store, ptr as usize, binary)
                    .expect("in bounds");
                params.extend([Val::I32(ptr), Val::I32(binary.len() as i32)]);
            }
            params.extend(args.ints.iter().map(|&n| Val::I32(n)));
            let func = instance
                .get_func(&mut store, &args.call)
                .expect("the function is exported");
            call(&mut store, func, &params);
            if instrument.fuel() {
                FUEL - store.get_fuel().expect("fuel is on")
            } else {
                0
            }
        });

        stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = ticker {
            ticker.join().expect("the ticker stops");
        }
    }
}

mod wasmi_raw {
    use super::*;
    use wasmi::{Config, Engine, Extern, Func, Linker, Module, Store, Val};

    pub fn run(args: &Args, fuel: bool) {
        let mut config = Config::default();
        config.consume_fuel(fuel);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, &args.wasm[..]).expect("the module compiles");
        let mut linker: Linker<()> = Linker::new(&engine);
        for import in module.imports() {
            if let Some(ty) = import.ty().func() {
                let name = import.name().to_string();
                linker
                    .func_new(
                        import.module(),
                        import.name(),
                        ty.clone(),
                        move |mut caller, params, out| {
                            let args: Vec<i64> = params
                                .iter()
                                .map(|v| v.i64().or(v.i32().map(i64::from)).unwrap_or(0))
                                .collect();
                            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                                panic!("the guest exports its memory")
                            };
                            let errno = wasi_stub(&name, &args, memory.data_mut(&mut caller));
                            if let Some(slot) = out.first_mut() {
                                *slot = Val::I32(errno);
                            }
                            Ok(())
                        },
                    )
                    .expect("a stub for each function import");
            }
        }

        report(
            "wasmi",
            if fuel { "fuel" } else { "none" },
            args.samples,
            || {
                let mut store = Store::new(&engine, ());
                if fuel {
                    store.set_fuel(FUEL).expect("fuel is on");
                }
                let instance = linker
                    .instantiate_and_start(&mut store, &module)
                    .expect("instantiation succeeds");
                let call = |store: &mut Store<()>, func: Func, params: &[Val]| {
                    let mut results = vec![Val::I32(0); func.ty(&*store).results().len()];
                    func.call(&mut *store, params, &mut results)
                        .expect("the call returns");
                    results
                };
                if let Some(init) = instance.get_func(&store, "_initialize") {
                    call(&mut store, init, &[]);
                }
                let mut params: Vec<Val> = Vec::new();
                if let Some(binary) = &args.binary {
                    let alloc = instance
                        .get_func(&store, "alloc")
                        .expect("alloc is exported");
                    let ptr = call(&mut store, alloc, &[Val::I32(binary.len() as i32)])[0]
                        .i32()
                        .expect("alloc returns an i32");
                    let Some(Extern::Memory(memory)) = instance.get_export(&store, "memory") else {
                        panic!("memory is exported")
                    };
                    memory
                        .write(&mut store, ptr as usize, binary)
                        .expect("in bounds");
                    params.extend([Val::I32(ptr), Val::I32(binary.len() as i32)]);
                }
                params.extend(args.ints.iter().map(|&n| Val::I32(n)));
                let func = instance
                    .get_func(&store, &args.call)
                    .expect("the function is exported");
                call(&mut store, func, &params);
                if fuel {
                    FUEL - store.get_fuel().expect("fuel is on")
                } else {
                    0
                }
            },
        );
    }
}

pub fn main(argv: &[String]) {
    let args = parse(argv);
    for instrument in wasmtime_raw::Instrument::ALL {
        wasmtime_raw::run(&args, instrument);
    }
    for fuel in [false, true] {
        wasmi_raw::run(&args, fuel);
    }
}
