//! The parts of Munition's native side that need no Erlang VM: scanning a
//! module's binary and scanning or compressing guest memory. The NIF crate
//! (`munition_native`) wraps them; keeping them here lets `cargo test` run
//! them, which a crate full of `enif_*` calls cannot do without a VM.

pub mod memory;
pub mod scan;
