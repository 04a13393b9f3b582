//! Forensic capture, for every engine: the state of a store whose guest
//! failed, read right after the failure and before anything else runs in
//! it, in one format. What an engine can reach of the store (memories,
//! globals, a backtrace) is `Engine::snapshot`; the NIF puts the rest
//! together (`nif::capture`).

use rustler::Atom;

use crate::host::journal::Report;
use crate::host::wasi::WasiOutput;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::OwnedBytes;
use crate::vocabulary::value::WasmValue;

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct Frame {
    pub func_index: u32,
    pub func_name: Option<String>,
    pub func_offset: Option<u64>,
    pub module_offset: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct MemorySnapshot {
    pub index: u32,
    pub pages: u64,
    pub page_size: u64,
    pub size: u64,
    /// zstd frame of the whole memory (`None` when capturing `:minimal`).
    pub data: Option<OwnedBytes>,
}

impl MemorySnapshot {
    /// Memory `index` of `pages` pages of `page_size` bytes, holding `bytes`,
    /// compressed when `full`: a compression that fails fails the capture
    /// rather than leave a memory out unsaid.
    pub fn new(
        index: u32,
        pages: u64,
        page_size: u64,
        bytes: &[u8],
        full: bool,
    ) -> MunitionResult<Self> {
        Ok(MemorySnapshot {
            index,
            pages,
            page_size,
            size: bytes.len() as u64,
            data: if full { Some(compress(bytes)?) } else { None },
        })
    }
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct GlobalSnapshot {
    pub index: u32,
    #[allow(clippy::struct_field_names)]
    pub r#type: Atom,
    pub mutable: bool,
    pub value: WasmValue,
    pub export: Option<String>,
}

#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct Capture {
    pub reason: Option<Atom>,
    pub trap: Option<Atom>,
    pub message: Option<String>,
    pub backtrace: Vec<Frame>,
    pub fuel_given: u64,
    pub fuel_consumed: u64,
    pub fuel_remaining: u64,
    pub execution_time_us: u64,
    pub memories: Vec<MemorySnapshot>,
    pub globals: Vec<GlobalSnapshot>,
    pub log: Vec<(i32, OwnedBytes)>,
    pub log_dropped: u64,
    /// What the guest wrote to its WASI stdout and stderr so far, when the
    /// call has a WASI configuration.
    pub output: Option<WasiOutput>,
    /// The call's replay log, or why there is none; in a replay, how far it
    /// followed its log (see `host::journal`).
    pub journal: Report,
}

/// What an engine reads of a store for its dump.
pub struct Snapshot {
    pub memories: Vec<MemorySnapshot>,
    pub globals: Vec<GlobalSnapshot>,
    pub backtrace: Vec<Frame>,
}

/// Compresses bytes into one zstd frame that declares its size; a failure is
/// an error, never an empty or partial frame. The one way the native side
/// compresses memory, for dumps and for `zstd_compress/1` alike.
pub fn compress(bytes: &[u8]) -> MunitionResult<OwnedBytes> {
    let frame = munition_core::memory::compress(bytes);
    // `munition_core` reports a failed compression as no bytes at all, and a
    // zstd frame is never empty (it starts with a four-byte magic number).
    if frame.is_empty() {
        return Err(MunitionError::RuntimeFailure(format!(
            "zstd compression of {} bytes failed",
            bytes.len()
        )));
    }
    Ok(OwnedBytes(frame))
}
