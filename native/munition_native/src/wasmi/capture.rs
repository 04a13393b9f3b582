//! Forensic capture of a failed Wasmi store, in the same `Capture` the
//! Wasmtime side fills (`crate::capture`), so dumps are one format.
//!
//! What Wasmi can give, and so what differs: its memories and globals are
//! reached through the instance's exports only, so a dump has the
//! *exported* memories and globals (not, say, a stack pointer the module
//! keeps to itself), and Wasmi gives no wasm backtrace: `backtrace` is
//! always empty. Reason, trap kind, message, fuel, time and log are as on
//! Wasmtime.

use rustler::{Atom, ResourceArc};
use wasmi::Mutability;

use super::execution::Live;
use super::instance::WasmiInstanceRef;
use super::store::fuel_left;
use super::value::{to_shared, type_to_shared};
use crate::analyser::compress;
use crate::atoms;
use crate::capture::{Capture, GlobalSnapshot, MemorySnapshot};
use crate::error::MunitionResult;
use crate::value::{val_type_atom, WasmValue};

/// Wasm's page size, for a memory the module's facts do not list.
const WASM_PAGE_SIZE: u64 = 65_536;

fn memories(live: &Live, full: bool) -> MunitionResult<Vec<MemorySnapshot>> {
    let Some(instance) = live.instance else {
        return Ok(vec![]);
    };
    let names = &live.module.info.memory_export_names;
    let mut snapshots = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(memory) = name
            .as_deref()
            .and_then(|name| instance.get_memory(&live.store, name))
        else {
            continue;
        };
        let bytes = memory.data(&live.store);
        // Wasmi's memory type does not say its page size; the module does.
        let page_size = live
            .module
            .info
            .memories
            .get(index)
            .map_or(WASM_PAGE_SIZE, |info| info.page_size);
        snapshots.push(MemorySnapshot {
            index: index as u32,
            pages: memory.size(&live.store),
            page_size,
            size: bytes.len() as u64,
            data: if full { Some(compress(bytes)?) } else { None },
        });
    }
    Ok(snapshots)
}

fn globals(live: &Live) -> Vec<GlobalSnapshot> {
    let Some(instance) = live.instance else {
        return vec![];
    };
    live.module
        .info
        .global_export_names
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            let name = name.as_deref()?;
            let global = instance.get_global(&live.store, name)?;
            let ty = global.ty(&live.store);
            Some(GlobalSnapshot {
                index: index as u32,
                r#type: val_type_atom(&type_to_shared(&ty.content())),
                mutable: ty.mutability() == Mutability::Var,
                value: WasmValue(to_shared(&global.get(&live.store))),
                export: Some(name.to_string()),
            })
        })
        .collect()
}

/// Reads a failed store, as `instance_capture/2` does for Wasmtime.
#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_capture(
    instance: ResourceArc<WasmiInstanceRef>,
    mode: Atom,
) -> MunitionResult<Capture> {
    let full = mode == atoms::full();
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let failure = live.failure.as_ref();
    let fuel_remaining = fuel_left(&live.store);
    let log = &live.store.data().log;
    Ok(Capture {
        reason: failure.map(|f| f.reason.atom()),
        trap: failure.map(|f| f.trap.atom()),
        message: failure.map(|f| f.message.clone()),
        // Wasmi records no wasm backtrace.
        backtrace: vec![],
        fuel_given: live.fuel_given,
        fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
        fuel_remaining,
        execution_time_us: live.elapsed.as_micros() as u64,
        memories: memories(live, full)?,
        globals: globals(live),
        log: log.to_terms(),
        log_dropped: log.dropped,
        output: None,
    })
}
