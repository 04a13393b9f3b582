//! Elixir's access to the memory of an idle instance: the binary ABI
//! (`result: :binary`, binary arguments) writes arguments into guest memory
//! before a call and reads results out after it. Ranges are checked by
//! `guest_memory`, as for everything else that touches guest memory.

use rustler::{Atom, Binary, Env, NewBinary, ResourceArc};
use wasmtime::Memory;

use crate::atoms;
use crate::error::{MunitionError, MunitionResult};
use crate::execution::Live;
use crate::guest_memory::{self, out_of_bounds, EXPORT_NAME};
use crate::instance::InstanceRef;

fn exported_memory(live: &mut Live) -> MunitionResult<Memory> {
    live.exported_memory().ok_or_else(|| {
        MunitionError::OutOfBounds(format!("the guest exports no memory named {EXPORT_NAME:?}"))
    })
}

/// Reads guest memory for the binary ABI (`result: :binary`), straight into
/// the binary it returns. Dirty: a guest decides how much there is to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = exported_memory(live)?;
    let range = guest_memory::range(&live.store, &memory, ptr, len)
        .ok_or_else(|| out_of_bounds(ptr, len, memory.data_size(&live.store)))?;
    let bytes = &memory.data(&live.store)[range];
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Ok(binary.into())
}

/// Writes a binary argument into guest memory (at a pointer the guest's
/// allocator returned). Dirty: the caller decides how much there is to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_write(
    instance: ResourceArc<InstanceRef>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<Atom> {
    let mut slot = instance.lock();
    let live = slot.idle()?;
    let memory = exported_memory(live)?;
    let len = bytes.len() as u64;
    let range = guest_memory::range(&live.store, &memory, ptr, len)
        .ok_or_else(|| out_of_bounds(ptr, len, memory.data_size(&live.store)))?;
    memory.data_mut(&mut live.store)[range].copy_from_slice(bytes.as_slice());
    Ok(atoms::ok())
}
