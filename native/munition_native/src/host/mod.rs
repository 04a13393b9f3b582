//! The host side, above the vocabulary and below the engines: the state a
//! store carries besides the guest (`state`), what a host function needs of
//! the store it runs in (`context`, the seam the engines implement), the
//! built-in host functions written once for every engine (`builtins`), the
//! bridge to host functions written in Elixir (`bridge`), the record of
//! every host call and its replay (`journal`), waking a waiting
//! guest (`wakeup`), and WASI preview 1 (`wasi`, which is Wasmtime's own
//! `wasmtime-wasi` and so speaks Wasmtime's types: only the Wasmtime engine
//! links it).

pub mod bridge;
pub mod builtins;
pub mod context;
pub mod journal;
pub mod state;
pub mod wakeup;
pub mod wasi;

use self::builtins::{Builtin, BUILTINS};

/// Every row of the built-ins' table: Munition's own, then WASI's.
pub fn all() -> impl Iterator<Item = &'static Builtin> {
    BUILTINS.iter().chain(wasi::FUNCTIONS.iter())
}

/// The built-in imported as `module`.`name`, if there is one.
pub fn find(module: &str, name: &str) -> Option<&'static Builtin> {
    all().find(|builtin| builtin.module == module && builtin.name == name)
}
