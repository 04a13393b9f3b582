//! The host side, above the vocabulary and below the engines: the state a
//! store carries besides the guest (`state`), what a host function needs of
//! the store it runs in (`context`, the seam the engines implement), the
//! built-in host functions written once for every engine (`builtins`), the
//! bridge to host functions written in Elixir (`bridge`), waking a waiting
//! guest (`wakeup`), and WASI preview 1 (`wasi`, which is Wasmtime's own
//! `wasmtime-wasi` and so speaks Wasmtime's types: only the Wasmtime engine
//! links it).

pub mod bridge;
pub mod builtins;
pub mod context;
pub mod state;
pub mod wakeup;
pub mod wasi;
