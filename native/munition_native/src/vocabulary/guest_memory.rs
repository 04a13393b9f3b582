//! The guest's memory as the host sees it: the export through which a guest
//! shares it, and the errors of a range outside it. Everything that reads
//! or writes guest memory on the guest's behalf (the built-ins, the Elixir
//! bridge) or on Elixir's (the binary ABI) checks its range with
//! `munition_core::guest::bounds`, so there is one notion of "the guest's
//! memory" and one bounds check, on every engine.

use crate::vocabulary::error::MunitionError;

pub use munition_core::guest::bounds;

/// The export through which a guest shares its memory with the host.
pub const EXPORT_NAME: &str = "memory";

/// The most bytes copied in or out on the caller's normal scheduler: a few
/// microseconds of copying, against the ten or more a trip to a dirty
/// scheduler costs (a binary argument and a binary result made two of them
/// on every call of the binary ABI). Larger copies answer `:large`, and the
/// caller makes them with the dirty NIF. A call made with its
/// instantiation copies its binary arguments in and its binary result out
/// itself up to this much too (`engine::call`).
pub const INLINE_COPY: u64 = 64 * 1024;

/// Why Elixir's read or write of `[ptr, ptr + len)` was refused, for a
/// memory of `size` bytes.
pub fn out_of_bounds(ptr: u64, len: u64, size: usize) -> MunitionError {
    MunitionError::OutOfBounds(format!(
        "range {ptr}+{len} is outside guest memory of {size} bytes"
    ))
}

/// Why Elixir cannot read or write a guest's memory at all.
pub fn no_memory() -> MunitionError {
    MunitionError::OutOfBounds(format!("the guest exports no memory named {EXPORT_NAME:?}"))
}
