//! The clocks of WASI 0.2, Munition's as in preview 1 (`host::wasi::own`):
//! real, or deterministic (advancing with the fuel consumed, from
//! 2000-01-01), read from the store's WASI state. `wasmtime-wasi`'s own
//! read its context's clocks, which cannot see the store's fuel: they are
//! shadowed in the one WASI linker.

use wasmtime::component::{Linker, Val};
use wasmtime::StoreContextMut;

use crate::host::context::Stop;
use crate::host::state::StoreState;
use crate::host::wasi::caller::error;
use crate::host::wasi::own;

/// The version of WASI 0.2 `wasmtime-wasi` 48 defines (its WIT's
/// `package wasi:clocks@0.2.12`): an import of any 0.2 version resolves to
/// it.
const MONOTONIC: &str = "wasi:clocks/monotonic-clock@0.2.12";
const WALL: &str = "wasi:clocks/wall-clock@0.2.12";

fn now(store: &mut StoreContextMut<'_, StoreState>) -> Result<(u64, u64), Stop> {
    own::now(store)
}

/// Replaces `now` of both clocks in `linker` (which defines them already).
pub fn shadow(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(MONOTONIC)?
        .func_new("now", |mut store, _ty, _params, results| {
            let (monotonic, _) = now(&mut store).map_err(error)?;
            results[0] = Val::U64(monotonic);
            Ok(())
        })?;
    linker
        .instance(WALL)?
        .func_new("now", |mut store, _ty, _params, results| {
            let (_, wall) = now(&mut store).map_err(error)?;
            results[0] = Val::Record(vec![
                ("seconds".into(), Val::U64(wall / 1_000_000_000)),
                (
                    "nanoseconds".into(),
                    Val::U32((wall % 1_000_000_000) as u32),
                ),
            ]);
            Ok(())
        })?;
    linker.allow_shadowing(false);
    Ok(())
}
