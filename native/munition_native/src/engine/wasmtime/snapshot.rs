//! Wasmtime's side of a snapshot (`engine::snapshot`): Wizer reads an idle
//! Munition store, through the exports its instrumentation added.

use std::future::{ready, Future};

use wasmtime::{Instance, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType};

use super::execution::Wasmtime;
use crate::engine::instance::Live;
use crate::engine::snapshot;
use crate::host::state::StoreState;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// An idle store and its instance, as Wizer reads them. An export Wizer
/// asks for that is not there (an instance of another module) is noted,
/// and the snapshot refused, rather than a panic.
struct Reader<'a> {
    store: &'a mut Store<StoreState>,
    instance: Instance,
    missing: Vec<String>,
}

impl InstanceState for Reader<'_> {
    fn global_get(&mut self, name: &str, _: ValType) -> impl Future<Output = SnapshotVal> + Send {
        let value = match self.instance.get_global(&mut *self.store, name) {
            Some(global) => match global.get(&mut *self.store) {
                Val::I32(x) => Some(SnapshotVal::I32(x)),
                Val::I64(x) => Some(SnapshotVal::I64(x)),
                Val::F32(x) => Some(SnapshotVal::F32(x)),
                Val::F64(x) => Some(SnapshotVal::F64(x)),
                Val::V128(x) => Some(SnapshotVal::V128(x.as_u128())),
                // Refused by Wizer's instrumentation: no mutable global of
                // a reference type gets this far.
                _ => None,
            },
            None => None,
        };
        ready(value.unwrap_or_else(|| {
            self.missing.push(format!("global {name}"));
            SnapshotVal::I32(0)
        }))
    }

    fn memory_contents(
        &mut self,
        name: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => {
                self.missing.push(format!("memory {name}"));
                contents(&[]);
            }
        }
        ready(())
    }
}

/// The snapshot of `live`, an idle instance of the instrumented `wasm`
/// whose initialisation returned.
pub fn snapshot(
    live: &mut Live<Wasmtime>,
    wasm: &[u8],
    provenance: &[u8],
) -> MunitionResult<Vec<u8>> {
    let instance = *live.instantiated()?;
    let mut reader = Reader {
        store: &mut live.store,
        instance,
        missing: Vec::new(),
    };
    let bytes = snapshot::snapshot(wasm, &mut reader, provenance)?;
    if !reader.missing.is_empty() {
        return Err(MunitionError::InvalidState(format!(
            "the instance is not of the instrumented module: no {}",
            reader.missing.join(", ")
        )));
    }
    Ok(bytes)
}
