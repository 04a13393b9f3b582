//! Elixir's access to the memory of an idle instance, for each engine: the
//! binary ABI (`result: :binary`, binary arguments) writes arguments into
//! guest memory before a call and reads results out after it. Ranges are
//! checked by the one bounds check of `vocabulary::guest_memory`.

use rustler::{Atom, Binary, Env, NewBinary, ResourceArc};

use crate::atoms;
use crate::engine::instance::InstanceRef;
use crate::engine::wasmi::Wasmi;
use crate::engine::wasmtime::Wasmtime;
use crate::engine::Engine;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::guest_memory::{bounds, no_memory, out_of_bounds};

fn read<'a, E: Engine>(
    env: Env<'a>,
    instance: &InstanceRef<E>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    let mut slot = instance.lock();
    let data = E::memory(slot.idle()?).ok_or_else(no_memory)?;
    let range = bounds(data.len(), ptr, len).ok_or_else(|| out_of_bounds(ptr, len, data.len()))?;
    let bytes = &data[range];
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    Ok(binary.into())
}

fn write<E: Engine>(instance: &InstanceRef<E>, ptr: u64, bytes: Binary) -> MunitionResult<Atom> {
    let mut slot = instance.lock();
    let data = E::memory(slot.idle()?).ok_or_else(no_memory)?;
    let len = bytes.len() as u64;
    let range = bounds(data.len(), ptr, len).ok_or_else(|| out_of_bounds(ptr, len, data.len()))?;
    data[range].copy_from_slice(bytes.as_slice());
    Ok(atoms::ok())
}

/// Reads guest memory for the binary ABI (`result: :binary`), straight
/// into the binary it returns. Dirty: a guest decides how much there is
/// to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmtime>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    read(env, &instance, ptr, len)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmi>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    read(env, &instance, ptr, len)
}
per_engine! {
    /// Writes a binary argument into guest memory (at a pointer the guest's
    /// allocator returned). Dirty: the caller decides how much there is to
    /// copy.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [instance_memory_write, wasmi_instance_memory_write](
        instance: ResourceArc<InstanceRef<E>>,
        ptr: u64,
        bytes: Binary,
    ) -> MunitionResult<Atom> {
        write(&instance, ptr, bytes)
    }
}
