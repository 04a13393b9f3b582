//! Where a guest's memory is, and which byte ranges of it may be touched.
//!
//! Everything that reads or writes guest memory on the guest's behalf (the
//! built-ins, the Elixir bridge) or on Elixir's (the binary ABI) finds the
//! memory and checks its range here, so there is one notion of "the guest's
//! memory" and one bounds check.

use std::ops::Range;

use wasmtime::{AsContext, AsContextMut, Caller, Extern, Instance, Memory};

use crate::error::MunitionError;

/// The export through which a guest shares its memory with the host.
pub const EXPORT_NAME: &str = "memory";

/// The guest's exported memory, seen from inside one of its host functions.
pub fn from_caller<T>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    caller.get_export(EXPORT_NAME).and_then(Extern::into_memory)
}

/// The guest's exported memory, seen from outside (between executions).
pub fn from_instance(store: impl AsContextMut, instance: Instance) -> Option<Memory> {
    instance.get_memory(store, EXPORT_NAME)
}

/// The byte range `[ptr, ptr + len)` of a memory of `size` bytes, if it lies
/// wholly inside it: the one bounds check, for both engines' memories.
pub fn bounds(size: usize, ptr: u64, len: u64) -> Option<Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= size).then_some(start..end)
}

/// Why Elixir's read or write of `[ptr, ptr + len)` was refused, for a
/// memory of `size` bytes.
pub fn out_of_bounds(ptr: u64, len: u64, size: usize) -> MunitionError {
    MunitionError::OutOfBounds(format!(
        "range {ptr}+{len} is outside guest memory of {size} bytes"
    ))
}

/// The byte range `[ptr, ptr + len)` of `memory`, if it lies wholly inside
/// it. Checked without copying anything.
pub fn range(store: impl AsContext, memory: &Memory, ptr: u64, len: u64) -> Option<Range<usize>> {
    bounds(memory.data_size(store), ptr, len)
}

/// The guest's exported memory and the range `[ptr, ptr + len)` of it, seen
/// from inside a host function: `None` when there is no such memory or the
/// range is not wholly inside it.
pub fn caller_range<T>(
    caller: &mut Caller<'_, T>,
    ptr: u64,
    len: u64,
) -> Option<(Memory, Range<usize>)> {
    let memory = from_caller(caller)?;
    let range = range(&*caller, &memory, ptr, len)?;
    Some((memory, range))
}
