//! What Wasmi gives of a failed store for its dump: every memory and every
//! global, in index order, as Wasmtime's coredump gives them (including
//! those the module keeps to itself, such as a stack pointer), reached
//! through the exports compiling added under reserved names (`module`).
//! Wasmi gives no wasm backtrace.

use wasmi::Mutability;

use super::execution::Wasmi;
use super::value::{from_type, from_val};
use crate::engine::capture::{GlobalSnapshot, MemorySnapshot, Snapshot};
use crate::engine::instance::Live;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::value::{type_atom, WasmValue};

pub fn snapshot(live: &mut Live<Wasmi>, full: bool) -> MunitionResult<Snapshot> {
    let Some(instance) = live.instance else {
        return Ok(Snapshot {
            memories: vec![],
            globals: vec![],
            backtrace: vec![],
        });
    };
    let info = &live.module.info;
    let names = &live.module.native.internals;
    let mut memories = Vec::new();
    for (index, facts) in (0..).zip(&info.memories) {
        let Some(memory) = instance.get_memory(&live.store, &names.memory(index)) else {
            continue;
        };
        memories.push(MemorySnapshot::new(
            index,
            memory.size(&live.store),
            // Wasmi's memory type does not say its page size; the module does.
            facts.page_size,
            memory.data(&live.store),
            full,
        )?);
    }
    let globals = (0..)
        .zip(&info.global_export_names)
        .filter_map(|(index, export)| {
            let global = instance.get_global(&live.store, &names.global(index))?;
            let ty = global.ty(&live.store);
            Some(GlobalSnapshot {
                index,
                r#type: type_atom(&from_type(&ty.content())),
                mutable: ty.mutability() == Mutability::Var,
                value: WasmValue(from_val(&global.get(&live.store))),
                export: export.clone(),
            })
        })
        .collect();
    Ok(Snapshot {
        memories,
        globals,
        // Wasmi records no wasm backtrace.
        backtrace: vec![],
    })
}
