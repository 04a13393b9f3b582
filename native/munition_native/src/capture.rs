//! Forensic capture: the state of a store whose guest failed, read right after
//! the failure and before anything else runs in it.

use rustler::{Atom, ResourceArc};
use wasmtime::{FrameInfo, Global, Memory, Mutability, WasmBacktrace, WasmCoreDump};

use crate::analyser::compress;
use crate::atoms;
use crate::error::MunitionResult;
use crate::execution::Live;
use crate::instance::InstanceRef;
use crate::term::OwnedBytes;
use crate::value::{val_type_atom, WasmValue};
use crate::wasi::WasiOutput;

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
    /// What the guest wrote to its WASI stdout and stderr so far, when the
    /// call has a WASI configuration.
    pub output: Option<WasiOutput>,
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

/// A memory's size and, when `full`, its bytes compressed: a compression
/// that fails fails the capture rather than leave a memory out unsaid.
fn snapshot_memory(
    live: &Live,
    index: u32,
    memory: &Memory,
    full: bool,
) -> MunitionResult<MemorySnapshot> {
    let bytes = memory.data(&live.store);
    Ok(MemorySnapshot {
        index,
        pages: memory.size(&live.store),
        page_size: memory.page_size(&live.store),
        size: bytes.len() as u64,
        data: if full { Some(compress(bytes)?) } else { None },
    })
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

/// Handles with their wasm indices.
type Indexed<T> = Vec<(u32, T)>;

/// Memories and globals to read, with their indices: all of them from the
/// coredump Wasmtime attached to the trap (including non-exported globals such
/// as a stack pointer, and every memory of a multi-memory module), or, when
/// the failure was found outside wasm (a binary result out of bounds) and
/// there is no coredump, the exported ones, each once, under the index its
/// export names.
fn state_handles(live: &mut Live) -> (Indexed<Memory>, Indexed<Global>) {
    if let Some(dump) = live
        .failure
        .as_ref()
        .and_then(|f| f.error.downcast_ref::<WasmCoreDump>())
    {
        // Imports of memories and globals are refused, so the store's
        // memories and globals are the module's own, in index order.
        let memories = (0..).zip(dump.memories().iter().cloned()).collect();
        let globals = (0..).zip(dump.globals().iter().cloned()).collect();
        return (memories, globals);
    }
    let Some(instance) = live.instance else {
        return (vec![], vec![]);
    };
    let exports: Vec<(String, wasmtime::Extern)> = instance
        .exports(&mut live.store)
        .map(|e| (e.name().to_string(), e.into_extern()))
        .collect();
    // Each exported memory once, under its index; one that is not exported
    // cannot be reached without the coredump.
    let memory_names = &live.module.info.memory_export_names;
    let memories = memory_names
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            let name = name.as_deref()?;
            let memory = exports
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, e)| e.clone().into_memory())?;
            Some((index as u32, memory))
        })
        .collect();
    let names = &live.module.info.global_export_names;
    let mut globals: Indexed<Global> = exports
        .iter()
        .filter_map(|(name, e)| {
            let global = e.clone().into_global()?;
            // `names` keeps one export name per global: a global exported
            // under a second name is not found by it, and is listed already.
            let index = names
                .iter()
                .position(|n| n.as_deref() == Some(name.as_str()))?;
            Some((index as u32, global))
        })
        .collect();
    globals.sort_by_key(|(index, _)| *index);
    globals.dedup_by_key(|(index, _)| *index);
    (memories, globals)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn instance_capture(instance: ResourceArc<InstanceRef>, mode: Atom) -> MunitionResult<Capture> {
    let full = mode == atoms::full();
    let mut slot = instance.lock();
    let live = slot.idle()?;

    let (memories, globals) = state_handles(live);
    let memory_snapshots = memories
        .iter()
        .map(|(index, m)| snapshot_memory(live, *index, m, full))
        .collect::<MunitionResult<_>>()?;
    let global_snapshots = globals
        .iter()
        .map(|(index, g)| snapshot_global(live, *index, g))
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
        // No failure, or one found outside wasm: there is no backtrace.
        .unwrap_or_default();
    let fuel_remaining = live.fuel_remaining()?;
    let log = &live.store.data().log;
    let output = live.store.data().wasi.as_ref().map(|wasi| wasi.output());
    Ok(Capture {
        reason: failure.map(|f| f.reason.atom()),
        trap: failure.map(|f| f.trap.atom()),
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
        output,
    })
}
