//! Why a guest stopped, in Munition's vocabulary: the crash reason, the trap
//! kind, and a failure as both, whichever engine ran the guest.
//!
//! The two enums are the native side's whole vocabulary of outcomes: each is
//! declared with its atom and its `ALL` list in one place (`vocabulary!`), so
//! what `engine_info/0` reports cannot drift from what the code produces. The
//! Elixir side (`Munition.Reason`) checks these lists against its own.

use rustler::Atom;

use crate::atoms;

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

/// Why a guest execution failed: what a host function recorded on the store
/// before unwinding the guest (an `abort`, an Elixir host function that
/// raised or timed out, a wild pointer), which decides the reason, trap kind
/// and message of the dump, or what an engine classified its error as.
#[derive(Clone, Debug)]
pub struct HostFailure {
    pub reason: Reason,
    pub trap: TrapKind,
    pub message: String,
}
