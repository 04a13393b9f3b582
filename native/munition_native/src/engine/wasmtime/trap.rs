//! A failed Wasmtime execution classified in Munition's vocabulary.

use std::fmt;

use wasmtime::{Error, Trap};

use crate::host::state::StoreState;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::trap::{HostFailure, Reason, TrapKind};

/// A guest coming back into wasm past its deadline, from a fuel yield or a
/// host function, and stopped there by the store's call hook (`store`): the
/// engine's own timeout, as an epoch interruption was (Wasmi's message says
/// the same).
#[derive(Debug)]
pub struct DeadlinePassed;

impl fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupt: the guest was still running at its deadline")
    }
}

impl std::error::Error for DeadlinePassed {}

/// The kind of one of Wasmtime's traps.
fn kind(trap: &Trap) -> TrapKind {
    match trap {
        Trap::StackOverflow => TrapKind::StackOverflow,
        Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        Trap::HeapMisaligned => TrapKind::HeapMisaligned,
        Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
        Trap::IndirectCallToNull => TrapKind::IndirectCallToNull,
        Trap::BadSignature => TrapKind::BadSignature,
        Trap::IntegerOverflow => TrapKind::IntegerOverflow,
        Trap::IntegerDivisionByZero => TrapKind::IntegerDivideByZero,
        Trap::BadConversionToInteger => TrapKind::BadConversionToInteger,
        Trap::UnreachableCodeReached => TrapKind::Unreachable,
        Trap::Interrupt => TrapKind::Interrupt,
        Trap::OutOfFuel => TrapKind::OutOfFuel,
        Trap::NullReference => TrapKind::NullReference,
        Trap::AllocationTooLarge => TrapKind::AllocationTooLarge,
        _ => TrapKind::Unknown,
    }
}

/// Classifies a failed guest execution, given what its store noticed: a
/// failure a host function recorded, a memory growth past the limit, a
/// deadline that passed. The first of these wins over the error itself.
pub fn classify(error: &Error, state: &StoreState) -> HostFailure {
    let message = error_chain(error);
    let (reason, trap, message) = if let Some(host) = &state.host_failure {
        (host.reason, host.trap, host.message.clone())
    } else if state.limits.memory_limit_hit {
        (Reason::MemoryLimit, TrapKind::MemoryLimit, message)
    } else if error.downcast_ref::<DeadlinePassed>().is_some() {
        (Reason::Timeout, TrapKind::Interrupt, message)
    } else if let Some(guest_error) = error.downcast_ref::<wiggle::GuestError>() {
        // Wasmtime's WASI functions trap on a pointer outside guest memory
        // (as WASI says they shall) with the pointer's error.
        let trap = match guest_error {
            wiggle::GuestError::PtrNotAligned { .. } => TrapKind::HeapMisaligned,
            _ => TrapKind::MemoryOutOfBounds,
        };
        (Reason::Trap, trap, message)
    } else {
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => (Reason::FuelExhausted, TrapKind::OutOfFuel, message),
            Some(Trap::Interrupt) => (Reason::Timeout, TrapKind::Interrupt, message),
            Some(trap) => (Reason::Trap, kind(trap), message),
            None if state.timed_out => (Reason::Timeout, TrapKind::Interrupt, message),
            None => (Reason::Trap, TrapKind::Unknown, message),
        }
    };
    HostFailure {
        reason,
        trap,
        message,
    }
}
