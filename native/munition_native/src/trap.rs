//! Why a guest stopped, in Munition's vocabulary: the crash reason, the trap
//! kind, and the classification of a failed guest execution into both.
//!
//! The two enums are the native side's whole vocabulary of outcomes: each is
//! declared with its atom and its `ALL` list in one place (`vocabulary!`), so
//! what `engine_info/0` reports cannot drift from what the code produces. The
//! Elixir side (`Munition.Reason`) checks these lists against its own.

use rustler::Atom;
use wasmtime::{Error, Trap};

use crate::atoms;
use crate::error::error_chain;

/// An enum of outcomes with its atoms and the list of all its variants,
/// written once.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $atom:ident,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn atom(self) -> Atom {
                match self {
                    $($name::$variant => atoms::$atom(),)*
                }
            }
        }
    };
}

vocabulary! {
    /// Why a guest that ran failed (`{:crash, reason, dump}`).
    Reason {
        FuelExhausted => fuel_exhausted,
        Trap => trap,
        Timeout => timeout,
        MemoryLimit => memory_limit,
        HostError => host_error,
    }
}

vocabulary! {
    /// Which trap stopped a guest (`dump.trap`).
    TrapKind {
        StackOverflow => stack_overflow,
        MemoryOutOfBounds => memory_out_of_bounds,
        HeapMisaligned => heap_misaligned,
        TableOutOfBounds => table_out_of_bounds,
        IndirectCallToNull => indirect_call_to_null,
        BadSignature => bad_signature,
        IntegerOverflow => integer_overflow,
        IntegerDivideByZero => integer_divide_by_zero,
        BadConversionToInteger => bad_conversion_to_integer,
        Unreachable => unreachable,
        NullReference => null_reference,
        AllocationTooLarge => allocation_too_large,
        /// Fuel ran out.
        OutOfFuel => out_of_fuel,
        /// The deadline passed.
        Interrupt => interrupt,
        /// Growing memory past `max_memory`.
        MemoryLimit => memory_limit,
        /// The guest called AssemblyScript's `abort`.
        Abort => abort,
        /// An Elixir host function failed.
        HostError => host_error,
        Unknown => unknown,
    }
}

impl TrapKind {
    /// The kind of one of Wasmtime's traps.
    pub fn of(trap: &Trap) -> TrapKind {
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
}

/// A failure a host function recorded on the store before unwinding the
/// guest (an `abort`, an Elixir host function that raised or timed out, a
/// wild pointer): it decides the reason, trap kind and message of the dump.
#[derive(Clone, Debug)]
pub struct HostFailure {
    pub reason: Reason,
    pub trap: TrapKind,
    pub message: String,
}

/// A classified failure, kept with its error until the capture reads it (the
/// error carries Wasmtime's backtrace and coredump).
pub struct Failure {
    pub reason: Reason,
    pub trap: TrapKind,
    pub message: String,
    pub error: Error,
}

/// Classifies a failed guest execution, given what its store noticed: a
/// failure a host function recorded, a memory growth past the limit, a
/// deadline that passed. The first of these wins over the error itself.
pub fn classify(
    error: Error,
    host_failure: Option<&HostFailure>,
    memory_limit_hit: bool,
    timed_out: bool,
) -> Failure {
    let message = error_chain(&error);
    let (reason, trap, message) = if let Some(host) = host_failure {
        (host.reason, host.trap, host.message.clone())
    } else if memory_limit_hit {
        (Reason::MemoryLimit, TrapKind::MemoryLimit, message)
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
            Some(trap) => (Reason::Trap, TrapKind::of(trap), message),
            None if timed_out => (Reason::Timeout, TrapKind::Interrupt, message),
            None => (Reason::Trap, TrapKind::Unknown, message),
        }
    };
    Failure {
        reason,
        trap,
        message,
        error,
    }
}
