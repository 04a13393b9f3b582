//! Snapshots (`Munition.snapshot/4`), for every engine: a module whose
//! initialisation has run, its state (every memory, every mutable global)
//! written into a new module, with `wasmtime-wizer`'s two halves and
//! Munition's own store in between.
//!
//! Wizer's `run` instantiates and initialises in a store of its own, with
//! no fuel, no deadline and no capabilities; its split API does not: it
//! instruments the module (`instrument`: every memory and mutable global
//! exported under a name of Wizer's), leaves running it to the caller, and
//! reads the state back through a trait, `InstanceState`, that any store
//! can implement. So the initialisation is an ordinary Munition call of the
//! instrumented module (fuel, deadline, capabilities, WASI, host functions,
//! slices and dumps are every call's), and each engine reads its idle store
//! for Wizer (`engine::wasmtime::snapshot`). Components the same, with
//! Wizer's component half: its instrumentation adds accessor functions
//! that read every core instance's state, which Munition calls in the idle
//! store (`engine::component::snapshot`). This file holds what is the
//! same for every engine: instrumenting, driving Wizer's snapshot (its
//! futures are ready at once over an idle store), and the byte surgery
//! after it (`munition_core::snapshot`: the provenance section written
//! first, the data segments merged to a count every compile limit takes).
//!
//! Not to be confused with `engine::capture::Snapshot`, what a dump reads
//! of a failed store.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use munition_core::snapshot::{coalesce, coalesce_component, with_provenance, MAX_SEGMENTS};
use wasmtime_wizer::{ComponentInstanceState, InstanceState, Wizer};

use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// Wizer as Munition uses it: every export kept, the initialisation
/// function too (it is any export of the caller's choosing, such as an
/// interpreter's `eval`, that later calls may want again), except a
/// reactor's `_initialize`, which Wizer drops: it ran before the snapshot
/// and must never run again.
fn wizer() -> Wizer {
    let mut wizer = Wizer::new();
    wizer.keep_init_func(true);
    wizer
}

/// Whether `wasm` is a component: its header says version 0x0d, layer 1.
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.get(4..8) == Some(&[0x0du8, 0, 1, 0][..])
}

/// The wasm of `bytes` (wasm, or WAT text made wasm) and the instrumented
/// module, or component, to run the initialisation in. A module whose
/// state Wizer cannot capture (imported memories, tables or globals,
/// instructions that change tables or drop segments, mutable globals of
/// reference types), or a component it cannot take apart (nested
/// components with modules, a module instantiated twice, aliases of
/// modules or components, a start function), is `:not_capturable`;
/// invalid wasm is `:invalid_module`.
pub fn instrument(bytes: &[u8]) -> MunitionResult<(Vec<u8>, Vec<u8>)> {
    let wasm = wat::parse_bytes(bytes)
        .map_err(|e| MunitionError::InvalidModule(e.to_string()))?
        .into_owned();
    let instrumented = catch_unwind(|| {
        if is_component(&wasm) {
            wizer().instrument_component(&wasm).map(|(_, bytes)| bytes)
        } else {
            wizer().instrument(&wasm).map(|(_, bytes)| bytes)
        }
    });
    let instrumented = match instrumented {
        Ok(Ok(instrumented)) => instrumented,
        Ok(Err(error)) => {
            let message = error_chain(&error);
            return Err(if message.starts_with("wasm validation failed") {
                MunitionError::InvalidModule(message)
            } else {
                MunitionError::NotCapturable(format!(
                    "wasmtime-wizer cannot snapshot it: {message}"
                ))
            });
        }
        Err(_) => return Err(panicked("instrumenting")),
    };
    Ok((wasm, instrumented))
}

/// The snapshot of `state`, an idle instance of `instrument(wasm)`'s
/// module, as a new module starting with the provenance section, its data
/// segments merged down to `MAX_SEGMENTS` (see `munition_core::snapshot`).
pub fn snapshot(
    wasm: &[u8],
    state: &mut (impl InstanceState + Send),
    provenance: &[u8],
) -> MunitionResult<Vec<u8>> {
    let wizer = wizer();
    // The module's context is remade from the same bytes (a parse; the
    // instrumented module is the same): it borrows them, and the bytes of
    // a call in flight between NIF calls are Elixir's.
    let run = AssertUnwindSafe(|| -> MunitionResult<Vec<u8>> {
        let (context, _instrumented) = wizer
            .instrument(wasm)
            .map_err(|e| MunitionError::NotCapturable(error_chain(&e)))?;
        ready(wizer.snapshot(&context, state))?
            .map_err(|e| MunitionError::NotCapturable(error_chain(&e)))
    });
    let snapshot = catch_unwind(run).map_err(|_| panicked("snapshotting"))??;
    let snapshot = coalesce(&snapshot, MAX_SEGMENTS).map_err(MunitionError::RuntimeFailure)?;
    Ok(with_provenance(&snapshot, provenance))
}

/// The snapshot of `state`, an idle instance of `instrument(wasm)`'s
/// component, as a new component starting with the provenance section.
/// Wizer reads a component's state by calling the accessor functions its
/// instrumentation added (`engine::component::snapshot`); each core
/// module's data segments are merged as a module's are.
pub fn snapshot_component(
    wasm: &[u8],
    state: &mut impl ComponentInstanceState,
    provenance: &[u8],
) -> MunitionResult<Vec<u8>> {
    let wizer = wizer();
    let run = AssertUnwindSafe(|| -> MunitionResult<Vec<u8>> {
        let (context, _instrumented) = wizer
            .instrument_component(wasm)
            .map_err(|e| MunitionError::NotCapturable(error_chain(&e)))?;
        drive(wizer.snapshot_component(&context, state))?
            .map_err(|e| MunitionError::NotCapturable(error_chain(&e)))
    });
    let snapshot = catch_unwind(run).map_err(|_| panicked("snapshotting"))??;
    let snapshot =
        coalesce_component(&snapshot, MAX_SEGMENTS).map_err(MunitionError::RuntimeFailure)?;
    Ok(with_provenance(&snapshot, provenance))
}

/// The output of a future that must be ready at once: Wizer's snapshot is
/// async for stores that need it, and an idle store never makes it wait.
fn ready<F: Future>(future: F) -> MunitionResult<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(MunitionError::RuntimeFailure(
            "wasmtime-wizer's snapshot waited on an idle store".into(),
        )),
    }
}

/// The most polls `drive` makes: a component's accessors run wasm, on a
/// fiber, which yields every `FUEL_YIELD_INTERVAL` of fuel; Wizer's
/// accessors burn a few instructions each, whatever the memory's size.
const MAX_POLLS: usize = 1 << 20;

/// The output of a future that runs wasm on Wasmtime's fibers and waits on
/// nothing else: it is polled again at each yield (fuel or epoch), which
/// wakes it at once.
fn drive<F: Future>(future: F) -> MunitionResult<F::Output> {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Ok(output);
        }
    }
    Err(MunitionError::RuntimeFailure(
        "wasmtime-wizer's snapshot of a component did not finish".into(),
    ))
}

fn panicked(what: &str) -> MunitionError {
    MunitionError::RuntimeFailure(format!("wasmtime-wizer panicked {what} the module"))
}
