//! WASI 0.2's outgoing HTTP (`wasi:http/types`, `wasi:http/outgoing-handler`)
//! in the one WASI linker: `wasmtime-wasi-http`'s own functions, over the
//! store's WASI state (`host::wasi::http`), where the call's allowlist
//! decides what a request reaches (nothing, unless `:wasi_http` is granted
//! and the host is listed). Linked for every component that imports them,
//! as the files and sockets of `wasmtime-wasi` are: a plugin that imports
//! `wasi:http` and never uses it runs. `wasi:http/incoming-handler` (a
//! server's) is not linked here: Munition calls a component, it does not
//! serve requests to one.

use wasmtime::component::Linker;

use crate::host::state::StoreState;

/// Defines `wasi:http/types` and `wasi:http/outgoing-handler` (their 0.2
/// version: an import of any 0.2 version resolves to them) in `linker`,
/// which has `wasmtime-wasi`'s `wasi:io` already.
pub fn link(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}
