//! WASI preview 1 (`wasi_snapshot_preview1`) for the calls that are granted
//! it: which capability grants each function (`FUNCTIONS`, rows of the
//! built-in table), the per-store WASI state (`WasiRun`) made from the call's
//! configuration, and where each function comes from.
//!
//! Most functions are Wasmtime's own (`wasmtime-wasi`, `p1`), taken one by
//! one from a linker built once (`linked`): Munition links imports one by
//! one from its own table, so an import that is not granted never reaches
//! them. Munition implements the ones it must bound itself: the clocks and
//! `poll_oneoff`/`sched_yield` (`wasi_time`: time is Munition's, sleeps
//! suspend the guest without holding a thread and end at the deadline),
//! `random_get` and the metered `fd_read`/`fd_write`/`fd_pread`/`fd_pwrite`
//! (`wasi_io`: bytes moved are paid for in fuel), and `proc_exit` (an exit
//! code is a result, not a failure).
//!
//! The guest's stdout and stderr are bounded in-memory pipes
//! (`io::CapturePipe`), its stdin an in-memory pipe, its environment and
//! arguments only what the call gives, its files only the preopens it gives.
//!
//! This is the one part of the host side that speaks an engine's types:
//! `wasmtime-wasi` is Wasmtime's, so its functions are Wasmtime functions
//! over a Wasmtime `Caller` (`caller` makes one a `HostCtx`), and only the
//! Wasmtime engine links them. The Wasmi engine refuses them by name.

pub mod caller;
pub mod io;
pub mod time;

use once_cell::sync::OnceCell;
use rustler::types::atom::Atom;
use rustler::{Binary, Decoder, NifResult, Term};
use wasmtime::{Caller, Error, Func, FuncType, Linker, Store};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use self::caller::{error, error_chain};
use self::io::CapturePipe;
use self::time::GuestClock;
use crate::atoms;
use crate::host::builtins::{Builtin, Make};
use crate::host::context::guest_range;
use crate::host::state::StoreState;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::OwnedBytes;
use crate::vocabulary::value::ValueType;

/// The import module of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// WASI's error numbers that Munition's own functions return. A pointer
/// outside guest memory is no errno: as WASI says and Wasmtime does, the
/// function traps (`:memory_out_of_bounds`).
pub mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
}

macro_rules! wasi_table {
    ($($capability:ident $name:ident ($($param:ident),*) -> ($($result:ident),*) $make:expr;)*) => {
        /// Every WASI function Munition can grant, with the capability that
        /// grants it (documented in `Munition.Host.WASI`). Sockets and
        /// `proc_raise` are not here: they are refused, needing nothing that
        /// can be granted.
        pub static FUNCTIONS: [Builtin; [$(stringify!($name)),*].len()] = {
            #[allow(unused_imports)]
            use ValueType::{I32, I64};
            [$(Builtin {
                capability: atoms::$capability,
                module: MODULE,
                name: stringify!($name),
                params: &[$($param),*],
                results: &[$($result),*],
                make: $make,
            },)*]
        };
    };
}

wasi_table! {
    wasi_stdio fd_write (I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Own(io::fd_write));
    wasi_stdio fd_read (I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Own(io::fd_read));
    wasi_stdio fd_close (I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_stdio fd_seek (I32, I64, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_stdio fd_tell (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_stdio fd_fdstat_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_stdio fd_prestat_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_stdio fd_prestat_dir_name (I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_args args_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_args args_sizes_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_env environ_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_env environ_sizes_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_clock clock_res_get (I32, I32) -> (I32) Make::Wasi(Wasi::Own(time::clock_res_get));
    wasi_clock clock_time_get (I32, I64, I32) -> (I32) Make::Wasi(Wasi::Own(time::clock_time_get));
    wasi_random random_get (I32, I32) -> (I32) Make::Wasi(Wasi::Own(io::random_get));
    wasi_exit proc_exit (I32) -> () Make::Wasi(Wasi::Own(proc_exit));
    wasi_poll poll_oneoff (I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Own(time::poll_oneoff));
    wasi_poll sched_yield () -> (I32) Make::Wasi(Wasi::Own(time::sched_yield));
    wasi_fs path_open (I32, I32, I32, I32, I32, I64, I64, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs path_filestat_get (I32, I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs path_readlink (I32, I32, I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_pread (I32, I32, I32, I64, I32) -> (I32) Make::Wasi(Wasi::Own(io::fd_pread));
    wasi_fs fd_readdir (I32, I32, I32, I64, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_filestat_get (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_advise (I32, I64, I64, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_fdstat_set_flags (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_fdstat_set_rights (I32, I64, I64) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_renumber (I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_sync (I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs fd_datasync (I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write fd_pwrite (I32, I32, I32, I64, I32) -> (I32) Make::Wasi(Wasi::Own(io::fd_pwrite));
    wasi_fs_write fd_allocate (I32, I64, I64) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write fd_filestat_set_size (I32, I64) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write fd_filestat_set_times (I32, I64, I64, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_create_directory (I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_filestat_set_times (I32, I32, I32, I32, I64, I64, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_link (I32, I32, I32, I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_remove_directory (I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_rename (I32, I32, I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_symlink (I32, I32, I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
    wasi_fs_write path_unlink_file (I32, I32, I32) -> (I32) Make::Wasi(Wasi::Linked);
}

/// How a WASI function is made in a Wasmtime store.
pub enum Wasi {
    /// By Munition, where it must bound the function itself.
    Own(fn(&mut Store<StoreState>, FuncType) -> Func),
    /// Taken from Wasmtime's implementation, by the row's name.
    Linked,
}

impl Wasi {
    /// The function `name`, of type `ty`, made in `store`.
    pub fn make(
        &self,
        store: &mut Store<StoreState>,
        name: &str,
        ty: FuncType,
    ) -> MunitionResult<Func> {
        match self {
            Wasi::Own(make) => Ok(make(store, ty)),
            Wasi::Linked => linked(store, name),
        }
    }
}

/// Wasmtime's WASI preview 1, every function defined once for every store of
/// the one engine (the first store's, which is every store's). Its functions
/// reach the store's `WasiP1Ctx` through `StoreState::wasi`.
static LINKER: OnceCell<Result<Linker<StoreState>, String>> = OnceCell::new();

/// Wasmtime's WASI function `name`, made in `store`.
fn linked(store: &mut Store<StoreState>, name: &str) -> MunitionResult<Func> {
    let linker = LINKER
        .get_or_init(|| {
            let mut linker = Linker::new(store.engine());
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut StoreState| {
                &mut state.wasi().ctx
            })
            .map_err(|e| error_chain(&e))?;
            Ok(linker)
        })
        .as_ref()
        .map_err(|message| {
            MunitionError::RuntimeFailure(format!("cannot set up Wasmtime's WASI: {message}"))
        })?;
    let missing = |why: String| {
        MunitionError::Instantiation(format!(
            "Wasmtime's WASI implementation has no function {MODULE}.{name}: {why}"
        ))
    };
    linker
        .get(&mut *store, MODULE, name)
        .map_err(|e| missing(error_chain(&e)))?
        .into_func()
        .ok_or_else(|| missing("not a function".into()))
}

/// Bytes from an Elixir binary.
pub struct Bytes(pub Vec<u8>);

impl<'a> Decoder<'a> for Bytes {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let binary: Binary = term.decode()?;
        Ok(Bytes(binary.as_slice().to_vec()))
    }
}

/// A call's WASI configuration, as `Munition.Options` checked it and
/// `Munition.Host.WASI` reduced it to what the granted capabilities allow.
#[derive(rustler::NifMap)]
#[rustler(decode)]
pub struct WasiConfig {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Bytes,
    /// `{guest_path, host_path, writable}`.
    pub preopens: Vec<(String, String, bool)>,
    pub stdout_limit: u64,
    pub stderr_limit: u64,
    /// `:real` or `:deterministic`.
    pub clock: Atom,
}

/// What a guest wrote to its stdout and stderr, as far as the bounds let it.
#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct WasiOutput {
    pub stdout: OwnedBytes,
    pub stderr: OwnedBytes,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// The WASI state of one store.
pub struct WasiRun {
    /// Wasmtime's context: descriptors, arguments, environment, preopens.
    pub ctx: wasmtime_wasi::p1::WasiP1Ctx,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
    /// The guest's clocks.
    pub clock: GuestClock,
}

impl WasiRun {
    /// The WASI state of a call with `config` and `fuel` (the deterministic
    /// clock counts the fuel consumed). The host's environment, arguments and
    /// stdio are never inherited.
    pub fn new(config: &WasiConfig, fuel: u64) -> MunitionResult<WasiRun> {
        let limit = |bytes: u64| usize::try_from(bytes).unwrap_or(usize::MAX);
        let stdout = CapturePipe::new(limit(config.stdout_limit));
        let stderr = CapturePipe::new(limit(config.stderr_limit));
        let deterministic = config.clock == atoms::deterministic();
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&config.args)
            .envs(&config.env)
            .stdin(MemoryInputPipe::new(config.stdin.0.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // File operations run on wasmtime-wasi's threads, never on a
            // scheduler's: the guest waits for them suspended.
            .allow_blocking_current_thread(false);
        if deterministic {
            // What Wasmtime's own code reads of the clocks (a file time set
            // to "now") is the deterministic clock's starting instant.
            builder
                .wall_clock(time::FixedWallClock)
                .monotonic_clock(time::FixedMonotonicClock);
        }
        for (guest, host, writable) in &config.preopens {
            let perms = if *writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder.preopened_dir(host, guest, perms).map_err(|e| {
                MunitionError::Instantiation(format!(
                    "cannot preopen {host} as {guest}: {}",
                    error_chain(&e)
                ))
            })?;
        }
        Ok(WasiRun {
            ctx: builder.build_p1(),
            stdout,
            stderr,
            clock: GuestClock::new(deterministic, fuel),
        })
    }

    /// An empty WASI state: no stdio, arguments, environment or files.
    pub fn empty() -> WasiRun {
        WasiRun {
            ctx: WasiCtxBuilder::new().build_p1(),
            stdout: CapturePipe::new(0),
            stderr: CapturePipe::new(0),
            clock: GuestClock::new(false, 0),
        }
    }

    /// What the guest has written so far.
    pub fn output(&self) -> WasiOutput {
        let (stdout, stdout_truncated) = self.stdout.contents();
        let (stderr, stderr_truncated) = self.stderr.contents();
        WasiOutput {
            stdout: OwnedBytes(stdout),
            stderr: OwnedBytes(stderr),
            stdout_truncated,
            stderr_truncated,
        }
    }
}

/// `proc_exit(code)`: the guest ends itself. The code is kept on the store
/// and the guest unwound; its execution then ends as `{:exited, code, meta}`
/// (see `execution`), whatever the code.
fn proc_exit(store: &mut Store<StoreState>, ty: FuncType) -> Func {
    Func::new(store, ty, |mut caller, params, _| {
        let code = params[0].unwrap_i32() as u32;
        caller.data_mut().exit_code = Some(code);
        Err(wasmtime::Error::msg(format!("proc_exit({code})")))
    })
}

/// Checks that `[ptr, ptr + len)` lies in the guest's memory, or fails the
/// call as a `:memory_out_of_bounds` trap naming `func`.
pub fn check_range(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    ptr: u64,
    len: u64,
) -> Result<std::ops::Range<usize>, Error> {
    guest_range(caller, func, ptr, len).map_err(error)
}

/// `N` bytes at `ptr` of the guest's memory (see `check_range`).
pub fn read_guest<const N: usize>(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    ptr: u64,
) -> Result<[u8; N], Error> {
    let range = check_range(caller, func, ptr, N as u64)?;
    let mut bytes = [0u8; N];
    if let Some(memory) = caller::memory(caller) {
        bytes.copy_from_slice(&memory.data(&*caller)[range]);
    }
    Ok(bytes)
}

/// Writes `bytes` at `ptr` of the guest's memory (see `check_range`).
pub fn write_guest(
    caller: &mut Caller<'_, StoreState>,
    func: &str,
    ptr: u64,
    bytes: &[u8],
) -> Result<(), Error> {
    let range = check_range(caller, func, ptr, bytes.len() as u64)?;
    if let Some(memory) = caller::memory(caller) {
        memory.data_mut(&mut *caller)[range].copy_from_slice(bytes);
    }
    Ok(())
}
