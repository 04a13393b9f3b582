//! The parts of Munition's native side that need no Erlang VM: scanning a
//! module's binary (and checking it against the compile limits), the engine's
//! capacity arithmetic, the compile queue and its de-duplication, wasm values
//! and the rules a store keeps for its guest (memory bounds and limits, log,
//! fuel), the replay log of a call, exporting a module's internals under
//! reserved names (its start function, memories and globals), scanning or
//! compressing guest memory, the fuel meter's counters, a pool's places, the
//! files of the persistent cache of compiled code, and whether the machine's
//! CPUs are oversubscribed. The NIF crate (`munition_native`) wraps them;
//! keeping them here lets `cargo test` run them, which a crate full of `enif_*`
//! calls cannot do without a VM.

pub mod capacity;
pub mod code_cache;
pub mod compile_queue;
pub mod guest;
pub mod internals;
pub mod journal;
pub mod limits;
pub mod machine;
pub mod memory;
pub mod meter;
pub mod place;
pub mod scan;
pub mod snapshot;
pub mod value;
