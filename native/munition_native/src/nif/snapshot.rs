//! The NIFs of snapshots (`Munition.snapshot/4`, see `engine::snapshot`):
//! instrumenting a module, and writing an idle instance of it into a new
//! module or component. Wasmtime's only (core modules and components).

use rustler::{Binary, ResourceArc};

use crate::engine::component::{self, Component};
use crate::engine::instance::InstanceRef;
use crate::engine::snapshot;
use crate::engine::wasmtime::{self, Wasmtime};
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::term::OwnedBytes;

/// `{wasm, instrumented}`: the wasm of `bytes` (WAT made wasm) and the
/// module to run the initialisation in. A parse and a copy of the module:
/// on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn snapshot_instrument(bytes: Binary) -> MunitionResult<(OwnedBytes, OwnedBytes)> {
    let (wasm, instrumented) = snapshot::instrument(bytes.as_slice())?;
    Ok((OwnedBytes(wasm), OwnedBytes(instrumented)))
}

/// The snapshot of an idle instance of `snapshot_instrument(wasm)`'s
/// module, `provenance` in its first section. It scans every memory: on a
/// dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_snapshot(
    instance: ResourceArc<InstanceRef<Wasmtime>>,
    wasm: Binary,
    provenance: Binary,
) -> MunitionResult<OwnedBytes> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    wasmtime::snapshot::snapshot(live, wasm.as_slice(), provenance.as_slice()).map(OwnedBytes)
}

/// The snapshot of an idle instance of `snapshot_instrument(wasm)`'s
/// component, `provenance` in its first section. It runs Wizer's
/// accessors and copies every memory: on a dirty scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn component_instance_snapshot(
    instance: ResourceArc<InstanceRef<Component>>,
    wasm: Binary,
    provenance: Binary,
) -> MunitionResult<OwnedBytes> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    component::snapshot::snapshot(live, wasm.as_slice(), provenance.as_slice()).map(OwnedBytes)
}
