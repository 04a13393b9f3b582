//! What Wasmtime gives of a failed store for its dump: every memory and
//! every global from the coredump it attaches to a trap (including
//! non-exported ones, such as a stack pointer), the exported ones when
//! there is no coredump, and the wasm backtrace.

use wasmtime::{Error, FrameInfo, Global, Memory, Mutability, Store, WasmBacktrace, WasmCoreDump};

use super::execution::Wasmtime;
use super::value::{from_type, from_val};
use crate::engine::capture::{Frame, GlobalSnapshot, MemorySnapshot, Snapshot};
use crate::engine::instance::Live;
use crate::host::state::StoreState;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::value::{type_atom, WasmValue};

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

/// Handles with their wasm indices.
type Indexed<T> = Vec<(u32, T)>;

/// Memories and globals to read, with their indices: all of them from the
/// coredump Wasmtime attached to the trap (every memory of a multi-memory
/// module too), or, when the failure was found outside wasm (a binary
/// result out of bounds) and there is no coredump, the exported ones, each
/// once, under the index its export names.
fn state_handles(live: &mut Live<Wasmtime>) -> (Indexed<Memory>, Indexed<Global>) {
    if let Some(handles) = coredump_handles(live.evidence.as_ref()) {
        // Imports of memories and globals are refused, so the store's
        // memories and globals are the module's own, in index order.
        return handles;
    }
    let Some(instance) = live.instance else {
        return (vec![], vec![]);
    };
    let exports: Vec<(String, wasmtime::Extern)> = instance
        .exports(&mut live.store)
        .map(|e| (e.name().to_string(), e.into_extern()))
        .collect();
    let info = &live.module.info;
    let memories = info
        .memory_export_names
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
    let names = &info.global_export_names;
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

/// Every memory and global of the store, in the order the coredump
/// Wasmtime attached to the failure lists them, when it attached one.
fn coredump_handles(evidence: Option<&Error>) -> Option<(Indexed<Memory>, Indexed<Global>)> {
    let dump = evidence?.downcast_ref::<WasmCoreDump>()?;
    let memories = (0..).zip(dump.memories().iter().cloned()).collect();
    let globals = (0..).zip(dump.globals().iter().cloned()).collect();
    Some((memories, globals))
}

pub fn snapshot(live: &mut Live<Wasmtime>, full: bool) -> MunitionResult<Snapshot> {
    let handles = state_handles(live);
    let names = &live.module.info.global_export_names;
    read(
        &mut live.store,
        live.evidence.as_ref(),
        handles,
        names,
        full,
    )
}

/// What a store holds after a failure, from the coredump alone: for a
/// component, whose many core instances export nothing Munition looks
/// up, every memory and global of them all (none without a coredump:
/// a failure found outside wasm).
pub fn coredump_snapshot(
    store: &mut Store<StoreState>,
    evidence: Option<&Error>,
    full: bool,
) -> MunitionResult<Snapshot> {
    let handles = coredump_handles(evidence).unwrap_or_default();
    read(store, evidence, handles, &[], full)
}

/// Reads `handles` in `store`, with the export names of the globals by
/// index (`names`), and the backtrace of `evidence`.
fn read(
    store: &mut Store<StoreState>,
    evidence: Option<&Error>,
    (memories, globals): (Indexed<Memory>, Indexed<Global>),
    names: &[Option<String>],
    full: bool,
) -> MunitionResult<Snapshot> {
    let memories = memories
        .iter()
        .map(|(index, memory)| {
            MemorySnapshot::new(
                *index,
                memory.size(&*store),
                memory.page_size(&*store),
                memory.data(&*store),
                full,
            )
        })
        .collect::<MunitionResult<_>>()?;
    let globals = globals
        .iter()
        .map(|(index, global)| {
            let ty = global.ty(&*store);
            GlobalSnapshot {
                index: *index,
                r#type: type_atom(&from_type(ty.content())),
                mutable: ty.mutability() == Mutability::Var,
                value: WasmValue(from_val(&global.get(&mut *store))),
                export: names.get(*index as usize).cloned().flatten(),
            }
        })
        .collect();
    let backtrace = evidence
        .and_then(|error| {
            error
                .downcast_ref::<WasmBacktrace>()
                .map(|bt| bt.frames().iter().map(frame).collect())
                .or_else(|| {
                    error
                        .downcast_ref::<WasmCoreDump>()
                        .map(|cd| cd.frames().iter().map(frame).collect())
                })
        })
        // No failure, or one found outside wasm: there is no backtrace.
        .unwrap_or_default();
    Ok(Snapshot {
        memories,
        globals,
        backtrace,
    })
}
