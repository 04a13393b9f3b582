//! The shared vocabulary, the bottom layer: what every other layer speaks
//! and no engine owns. Errors as Elixir sees them (`error`), Erlang terms
//! (`term`), wasm values as terms (`value`), why a guest stopped (`trap`),
//! and the one name and bounds check of a guest's memory (`guest_memory`).
//! Nothing here knows Wasmtime or Wasmi.

pub mod error;
pub mod guest_memory;
pub mod term;
pub mod trap;
pub mod value;
