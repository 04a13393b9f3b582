//! Elixir's access to the memory of an idle instance, for each engine: the
//! binary ABI (`result: :binary`, binary arguments) writes arguments into
//! guest memory before a call and reads results out after it. Ranges are
//! checked by the one bounds check of `vocabulary::guest_memory`.

use rustler::{Atom, Binary, Encoder, Env, NewBinary, ResourceArc, Term};

use crate::atoms;
use crate::engine::instance::InstanceRef;
use crate::engine::wasmi::Wasmi;
use crate::engine::wasmtime::Wasmtime;
use crate::engine::Engine;
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::guest_memory::{bounds, no_memory, out_of_bounds, INLINE_COPY};

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

fn read_inline<'a, E: Engine>(
    env: Env<'a>,
    instance: &InstanceRef<E>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Term<'a>> {
    if len > INLINE_COPY {
        return Ok(atoms::large().encode(env));
    }
    read(env, instance, ptr, len).map(|binary| binary.encode(env))
}

fn write_inline<E: Engine>(
    instance: &InstanceRef<E>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<Atom> {
    if bytes.len() as u64 > INLINE_COPY {
        return Ok(atoms::large());
    }
    write(instance, ptr, bytes)
}

// The reads are written out per engine: a NIF taking an `Env` does not go
// through `per_engine!`.

/// Reads guest memory for the binary ABI (`result: :binary`), straight
/// into the binary it returns, or `:large` for more than `INLINE_COPY`
/// bytes: read those with the dirty NIF.
#[rustler::nif]
fn instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmtime>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Term<'a>> {
    read_inline(env, &instance, ptr, len)
}

#[rustler::nif]
fn wasmi_instance_memory_read<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmi>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Term<'a>> {
    read_inline(env, &instance, ptr, len)
}

/// The read of more than `INLINE_COPY` bytes. Dirty: a guest decides how
/// much there is to copy.
#[rustler::nif(schedule = "DirtyCpu")]
fn instance_memory_read_dirty<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmtime>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    read(env, &instance, ptr, len)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn wasmi_instance_memory_read_dirty<'a>(
    env: Env<'a>,
    instance: ResourceArc<InstanceRef<Wasmi>>,
    ptr: u64,
    len: u64,
) -> MunitionResult<Binary<'a>> {
    read(env, &instance, ptr, len)
}

per_engine! {
    /// Writes a binary argument into guest memory (at a pointer the guest's
    /// allocator returned): `:ok`, or `:large` for more than `INLINE_COPY`
    /// bytes, written with the dirty NIF.
    #[rustler::nif]
    fn [instance_memory_write, wasmi_instance_memory_write](
        instance: ResourceArc<InstanceRef<E>>,
        ptr: u64,
        bytes: Binary,
    ) -> MunitionResult<Atom> {
        write_inline(&instance, ptr, bytes)
    }
}

per_engine! {
    /// The write of more than `INLINE_COPY` bytes. Dirty: the caller
    /// decides how much there is to copy.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [instance_memory_write_dirty, wasmi_instance_memory_write_dirty](
        instance: ResourceArc<InstanceRef<E>>,
        ptr: u64,
        bytes: Binary,
    ) -> MunitionResult<Atom> {
        write(&instance, ptr, bytes)
    }
}
