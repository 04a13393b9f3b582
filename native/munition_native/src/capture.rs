//! Forensic capture: the state of a store whose guest failed, read right after
//! the failure and before anything else runs in it.

use rustler::{Atom, ResourceArc};
use wasmtime::{FrameInfo, Global, Memory, Mutability, WasmBacktrace, WasmCoreDump};

use crate::atoms;
use crate::call::WasmValue;
use crate::error::MunitionResult;
use crate::instance::{InstanceRef, Live};
use crate::module::val_type_atom;
use crate::OwnedBytes;

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct Frame {
    pub func_index: u32,
    pub func_name: Option<String>,
    pub func_offset: Option<u64>,
    pub module_offset: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct MemorySnapshot {
    pub index: u32,
    pub pages: u64,
    pub page_size: u64,
    pub size: u64,
    /// zstd frame of the whole memory (`None` when capturing `:minimal`).
    pub data: Option<OwnedBytes>,
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct GlobalSnapshot {
    pub index: u32,
    #[allow(clippy::struct_field_names)]
    pub r#type: Atom,
    pub mutable: bool,
    pub value: WasmValue,
    pub export: Option<String>,
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct Capture {
    pub reason: Option<Atom>,
    pub trap: Option<Atom>,
    pub message: Option<String>,
    pub backtrace: Vec<Frame>,
    pub fuel_given: u64,
    pub fuel_consumed: u64,
    pub fuel_remaining: u64,
    pub execution_time_us: u64,
    pub memories: Vec<MemorySnapshot>,
    pub globals: Vec<GlobalSnapshot>,
    pub log: Vec<(i32, OwnedBytes)>,
    pub log_dropped: u64,
}

fn frame(info: &FrameInfo) -> Frame {
    let symbol = info.symbols().first();
    Frame {
        func_index: info.func_index(),
        func_name: info.func_name().map(str::to_string),
        func_offset: info.func_offset().map(|o| o as u64),
        module_offset: info.module_offset().map(|o| o as u64),
        file: symbol.and_then(|s| s.file()).map(str::to_string),
        line: symbol.and_then(|s| s.line()),
        column: symbol.and_then(|s| s.column()),
    }
}

fn snapshot_memory(live: &Live, index: u32, memory: &Memory, full: bool) -> MemorySnapshot {
    let bytes = memory.data(&live.store);
    MemorySnapshot {
        index,
        pages: memory.size(&live.store),
        page_size: memory.page_size(&live.store),
        size: bytes.len() as u64,
        data: full.then(|| OwnedBytes(munition_core::memory::compress(bytes))),
    }
}

fn snapshot_global(live: &mut Live, index: u32, global: &Global) -> GlobalSnapshot {
    let ty = global.ty(&live.store);
    let value = global.get(&mut live.store);
    GlobalSnapshot {
        index,
        r#type: val_type_atom(ty.content()),
        mutable: ty.mutability() == Mutability::Var,
        value: WasmValue(value),
        export: live
            .module
            .info
            .global_export_names
            .get(index as usize)
            .cloned()
            .flatten(),
    }
}

/// Memories and globals to read: all of them from the coredump Wasmtime
/// attached to the trap (including non-exported globals such as a stack
/// pointer), or the exported ones when there was no coredump.
fn state_handles(live: &mut Live) -> (Vec<Memory>, Vec<Global>) {
    if let Some(dump) = live
        .failure
        .as_ref()
        .and_then(|f| f.error.downcast_ref::<WasmCoreDump>())
    {
        return (dump.memories().to_vec(), dump.globals().to_vec());
    }
    let Some(instance) = live.instance else {
        return (vec![], vec![]);
    };
    let exports: Vec<_> = instance
        .exports(&mut live.store)
        .map(|e| e.into_extern())
        .collect();
    let memories = exports
        .iter()
        .filter_map(|e| e.clone().into_memory())
        .collect();
    let globals = exports
        .iter()
        .filter_map(|e| e.clone().into_global())
        .collect();
    (memories, globals)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn instance_capture(instance: ResourceArc<InstanceRef>, mode: Atom) -> MunitionResult<Capture> {
    let full = mode == atoms::full();
    let mut slot = instance.lock();
    let live = slot.idle()?;

    let (memories, globals) = state_handles(live);
    let imported_globals = live.module.info.imported_globals;
    let memory_snapshots = memories
        .iter()
        .enumerate()
        .map(|(i, m)| snapshot_memory(live, i as u32, m, full))
        .collect();
    let global_snapshots = globals
        .iter()
        .enumerate()
        .map(|(i, g)| snapshot_global(live, imported_globals + i as u32, g))
        .collect();

    let failure = live.failure.as_ref();
    let backtrace = failure
        .and_then(|f| {
            f.error
                .downcast_ref::<WasmBacktrace>()
                .map(|bt| bt.frames().iter().map(frame).collect())
                .or_else(|| {
                    f.error
                        .downcast_ref::<WasmCoreDump>()
                        .map(|cd| cd.frames().iter().map(frame).collect())
                })
        })
        .unwrap_or_default();
    let fuel_remaining = live.fuel_remaining();
    let log = &live.store.data().log;
    Ok(Capture {
        reason: failure.map(|f| f.reason.atom()),
        trap: failure.map(|f| f.trap),
        message: failure.map(|f| f.message.clone()),
        backtrace,
        fuel_given: live.fuel_given,
        fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
        fuel_remaining,
        execution_time_us: live.elapsed.as_micros() as u64,
        memories: memory_snapshots,
        globals: global_snapshots,
        log: log.to_terms(),
        log_dropped: log.dropped,
    })
}
