//! What Wasmi gives of a failed store for its dump: its memories and
//! globals are reached through the instance's exports only, so a dump has
//! the *exported* memories and globals (not, say, a stack pointer the
//! module keeps to itself), and Wasmi gives no wasm backtrace.

use wasmi::Mutability;

use super::execution::Wasmi;
use super::value::{from_type, from_val};
use crate::engine::capture::{GlobalSnapshot, MemorySnapshot, Snapshot};
use crate::engine::instance::Live;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::value::{type_atom, WasmValue};

/// Wasm's page size, for a memory the module's facts do not list.
const WASM_PAGE_SIZE: u64 = 65_536;

pub fn snapshot(live: &mut Live<Wasmi>, full: bool) -> MunitionResult<Snapshot> {
    let Some(instance) = live.instance else {
        return Ok(Snapshot {
            memories: vec![],
            globals: vec![],
            backtrace: vec![],
        });
    };
    let info = &live.module.info;
    let mut memories = Vec::new();
    for (index, name) in info.memory_export_names.iter().enumerate() {
        let Some(memory) = name
            .as_deref()
            .and_then(|name| instance.get_memory(&live.store, name))
        else {
            continue;
        };
        // Wasmi's memory type does not say its page size; the module does.
        let page_size = info
            .memories
            .get(index)
            .map_or(WASM_PAGE_SIZE, |memory| memory.page_size);
        memories.push(MemorySnapshot::new(
            index as u32,
            memory.size(&live.store),
            page_size,
            memory.data(&live.store),
            full,
        )?);
    }
    let globals = info
        .global_export_names
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            let name = name.as_deref()?;
            let global = instance.get_global(&live.store, name)?;
            let ty = global.ty(&live.store);
            Some(GlobalSnapshot {
                index: index as u32,
                r#type: type_atom(&from_type(&ty.content())),
                mutable: ty.mutability() == Mutability::Var,
                value: WasmValue(from_val(&global.get(&live.store))),
                export: Some(name.to_string()),
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
