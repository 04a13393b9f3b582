//! The second engine, `Munition.Runtime.Wasmi`: Wasmi 2, an interpreter in
//! Rust, behind the same NIF library. No JIT and no executable memory; a
//! module is validated when it is compiled and each function is translated
//! to Wasmi's bytecode the first time it runs, so a module run once pays
//! only for the code it runs.
//!
//! The guarantees are kept as the Wasmtime side keeps them, by other means:
//!
//! - **bounded**: every call is resumable (`Func::call_resumable`); the
//!   store gets its fuel in slices of `engine::FUEL_SLICE`, and each time a
//!   slice is used up the call is suspended, the deadline and the slice's
//!   time are checked, and it is resumed or handed back as `:yielded`;
//! - **the schedulers' stacks**: Wasmi's executor keeps wasm frames on a
//!   heap stack of its own (wasm-to-wasm calls never recurse natively) and
//!   bounds it (`engine::MAX_RECURSION_DEPTH`): a runaway recursion is a
//!   `:stack_overflow` trap;
//! - **fresh stores**, **capabilities at import resolution** and the
//!   built-ins, from the same table (`crate::builtins`), and Elixir host
//!   functions over the same bridge protocol (`crate::bridge`): a call of
//!   one suspends the guest as a resumable host trap, which frees the
//!   thread until the reply comes.
//!
//! What differs is written in `Munition.Runtime.Wasmi`'s moduledoc.
//!
//! One concept per file: `engine` (the engine and its bounds), `value`
//! (values between the engines' types), `module` (compiling and the cache),
//! `start` (the start function made callable), `store`, `builtins`, `host`
//! (Elixir host functions), `execution` (running in slices), `instance`
//! (the NIFs on a live instance), `capture` (forensics).

pub mod builtins;
pub mod capture;
pub mod engine;
pub mod execution;
pub mod host;
pub mod instance;
pub mod module;
pub mod start;
pub mod store;
pub mod value;
