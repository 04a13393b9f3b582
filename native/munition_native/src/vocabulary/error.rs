//! The one error type every fallible NIF returns.
//!
//! Each variant reaches Elixir as `{:error, {kind, message}}`: `kind` is an
//! atom a caller can match, `message` is the `Display` text.

use rustler::{Encoder, Env, Term};

use crate::atoms;

#[derive(Debug, thiserror::Error)]
pub enum MunitionError {
    #[error("{0}")]
    InvalidModule(String),
    #[error("{0}")]
    FunctionNotFound(String),
    #[error("{0}")]
    BadArgs(String),
    #[error("{0}")]
    MemoryLimit(String),
    /// Valid wasm that Munition does not run (more memories or tables than an
    /// instance slot holds, an instance too large for its slot).
    #[error("{0}")]
    Unsupported(String),
    /// A module over one of the compile limits (`munition_core::limits`).
    #[error("{0}")]
    ModuleLimit(String),
    /// The engine's capacity asked for after the engine was built.
    #[error("{0}")]
    TooLate(String),
    /// An engine capacity that cannot be had.
    #[error("{0}")]
    BadConfig(String),
    /// The imports cannot be linked as given (an import with no link, a link
    /// to a built-in that does not exist), or the store cannot be set up.
    #[error("{0}")]
    Instantiation(String),
    /// The instance was used after cleanup, or a call was made on an instance
    /// whose instantiation failed.
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    OutOfBounds(String),
    /// Every instance slot is in use (see `engine::pooling`).
    #[error("{0}")]
    Overloaded(String),
    /// State a snapshot cannot capture, or a module whose state it cannot
    /// (see `engine::snapshot`).
    #[error("{0}")]
    NotCapturable(String),
    /// Bytes that do not decode: a corrupt or hostile compressed frame.
    #[error("{0}")]
    BadData(String),
    /// The host failed at something that does not fail short of a broken
    /// host (an allocation, the engine's own bookkeeping): never the guest's
    /// doing, never to be papered over with a made-up value.
    #[error("{0}")]
    RuntimeFailure(String),
}

impl Encoder for MunitionError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        let kind = match self {
            MunitionError::InvalidModule(_) => atoms::invalid_module(),
            MunitionError::FunctionNotFound(_) => atoms::function_not_found(),
            MunitionError::BadArgs(_) => atoms::bad_args(),
            MunitionError::MemoryLimit(_) => atoms::memory_limit(),
            MunitionError::Unsupported(_) => atoms::unsupported(),
            MunitionError::ModuleLimit(_) => atoms::module_limit(),
            MunitionError::TooLate(_) => atoms::too_late(),
            MunitionError::BadConfig(_) => atoms::bad_config(),
            MunitionError::Instantiation(_) => atoms::instantiation_failed(),
            MunitionError::InvalidState(_) => atoms::invalid_state(),
            MunitionError::OutOfBounds(_) => atoms::out_of_bounds(),
            MunitionError::Overloaded(_) => atoms::overloaded(),
            MunitionError::BadData(_) => atoms::bad_data(),
            MunitionError::NotCapturable(_) => atoms::not_capturable(),
            MunitionError::RuntimeFailure(_) => atoms::runtime_failure(),
        };
        (kind, bounded(self.to_string())).encode(env)
    }
}

/// The longest error message that reaches Elixir. Some messages quote their
/// input (a WAT parse error quotes the offending line, which in hostile
/// input can be the whole input): a caller must never get back a result as
/// large as what it sent, nor log one.
pub const MAX_MESSAGE_BYTES: usize = 4096;

fn bounded(message: String) -> String {
    munition_core::guest::bounded_message(message, MAX_MESSAGE_BYTES)
}

pub type MunitionResult<T> = Result<T, MunitionError>;
