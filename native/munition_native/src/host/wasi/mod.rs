//! WASI preview 1 (`wasi_snapshot_preview1`) for the calls that are granted
//! it: which capability grants each function (`FUNCTIONS`, rows of the
//! built-in table), the per-store WASI state (`WasiRun`) made from the call's
//! configuration, and where each function comes from.
//!
//! Most functions are Wasmtime's own (`wasmtime-wasi`, `p1`), called
//! through its generated entry points (`linked`): Munition links imports
//! one by one from its own table, so an import that is not granted never
//! reaches them, and makes every one of them itself, so each host call is
//! recorded for a replay (`host::journal`). Munition implements the ones it must bound itself: the clocks and
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
//! Munition's own clocks, `sched_yield`, `random_get` and `proc_exit` are
//! written once over `HostCtx` (`own`) and made by every engine like the
//! built-ins. The rest is where an engine's types show: `wasmtime-wasi` is
//! Wasmtime's (its generated preview-1 functions are not for use outside
//! it), so its functions, and Munition's metered wrappers and sleeping
//! `poll_oneoff` around them (`io`, `time`), are Wasmtime functions over a
//! Wasmtime `Caller` (`caller` makes one a `HostCtx`), linked by Wasmtime
//! only. An engine without it (Wasmi) takes the descriptor functions and
//! `poll_oneoff` from `plain`, over stdin, stdout and stderr, and the
//! filesystem rows from `files`, over the preopens and what the guest opens
//! under them, sandboxed by `cap-primitives` as `wasmtime-wasi` sandboxes.

pub mod caller;
pub mod clock;
pub mod error;
pub mod files;
pub mod http;
pub mod io;
pub mod iovec;
pub mod linked;
pub mod own;
pub mod p2;
pub mod pipe;
pub mod plain;
pub mod poll;
pub mod run;
pub mod time;

pub use self::run::{WasiConfig, WasiOutput, WasiRun};

use crate::atoms;
use crate::host::builtins::{Builtin, Make};
use crate::host::journal::Out;
use crate::vocabulary::value::ValueType;

/// The import module of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

macro_rules! wasi_table {
    ($($capability:ident $name:ident ($($param:ident),*) -> ($($result:ident),*) [$($out:expr),*] $make:expr;)*) => {
        /// Every WASI function Munition can grant, with the capability that
        /// grants it (documented in `Munition.Host.WASI`). Sockets and
        /// `proc_raise` are not here: they are refused, needing nothing that
        /// can be granted.
        pub static FUNCTIONS: [Builtin; [$(stringify!($name)),*].len()] = {
            #[allow(unused_imports)]
            use ValueType::{I32, I64};
            use Out::{Fixed, Iovecs, Sized, Strings, Used};
            use crate::host::journal::Strings::{Args, Env};
            [$(Builtin {
                capability: atoms::$capability,
                module: MODULE,
                name: stringify!($name),
                params: &[$($param),*],
                results: &[$($result),*],
                writes: &[$($out),*],
                make: $make,
            },)*]
        };
    };
}

wasi_table! {
    wasi_stdio fd_write (I32, I32, I32, I32) -> (I32) [Fixed { at: 3, len: 4 }] Make::Wasi(io::fd_write);
    wasi_stdio fd_read (I32, I32, I32, I32) -> (I32) [Iovecs { iovs: 1, count: 2, done: 3 }, Fixed { at: 3, len: 4 }] Make::Wasi(io::fd_read);
    wasi_stdio fd_close (I32) -> (I32) [] Make::Wasi(linked::fd_close);
    wasi_stdio fd_seek (I32, I64, I32, I32) -> (I32) [Fixed { at: 3, len: 8 }] Make::Wasi(linked::fd_seek);
    wasi_stdio fd_tell (I32, I32) -> (I32) [Fixed { at: 1, len: 8 }] Make::Wasi(linked::fd_tell);
    wasi_stdio fd_fdstat_get (I32, I32) -> (I32) [Fixed { at: 1, len: 24 }] Make::Wasi(linked::fd_fdstat_get);
    wasi_stdio fd_prestat_get (I32, I32) -> (I32) [Fixed { at: 1, len: 8 }] Make::Wasi(linked::fd_prestat_get);
    wasi_stdio fd_prestat_dir_name (I32, I32, I32) -> (I32) [Sized { at: 1, len: 2, unit: 1 }] Make::Wasi(linked::fd_prestat_dir_name);
    wasi_args args_get (I32, I32) -> (I32) [Strings(Args)] Make::Wasi(linked::args_get);
    wasi_args args_sizes_get (I32, I32) -> (I32) [Fixed { at: 0, len: 4 }, Fixed { at: 1, len: 4 }] Make::Wasi(linked::args_sizes_get);
    wasi_env environ_get (I32, I32) -> (I32) [Strings(Env)] Make::Wasi(linked::environ_get);
    wasi_env environ_sizes_get (I32, I32) -> (I32) [Fixed { at: 0, len: 4 }, Fixed { at: 1, len: 4 }] Make::Wasi(linked::environ_sizes_get);
    wasi_clock clock_res_get (I32, I32) -> (I32) [Fixed { at: 1, len: 8 }] Make::Own(own::clock_res_get);
    wasi_clock clock_time_get (I32, I64, I32) -> (I32) [Fixed { at: 2, len: 8 }] Make::Own(own::clock_time_get);
    wasi_random random_get (I32, I32) -> (I32) [Sized { at: 0, len: 1, unit: 1 }] Make::Own(own::random_get);
    wasi_exit proc_exit (I32) -> () [] Make::Own(own::proc_exit);
    wasi_poll poll_oneoff (I32, I32, I32, I32) -> (I32) [Sized { at: 1, len: 2, unit: 32 }, Fixed { at: 3, len: 4 }] Make::Wasi(time::poll_oneoff);
    wasi_poll sched_yield () -> (I32) [] Make::Own(own::sched_yield);
    wasi_fs path_open (I32, I32, I32, I32, I32, I64, I64, I32, I32) -> (I32) [Fixed { at: 8, len: 4 }] Make::Wasi(linked::path_open);
    wasi_fs path_filestat_get (I32, I32, I32, I32, I32) -> (I32) [Fixed { at: 4, len: 64 }] Make::Wasi(linked::path_filestat_get);
    wasi_fs path_readlink (I32, I32, I32, I32, I32, I32) -> (I32) [Used { at: 3, cap: 4, used: 5 }, Fixed { at: 5, len: 4 }] Make::Wasi(linked::path_readlink);
    wasi_fs fd_pread (I32, I32, I32, I64, I32) -> (I32) [Iovecs { iovs: 1, count: 2, done: 4 }, Fixed { at: 4, len: 4 }] Make::Wasi(io::fd_pread);
    wasi_fs fd_readdir (I32, I32, I32, I64, I32) -> (I32) [Used { at: 1, cap: 2, used: 4 }, Fixed { at: 4, len: 4 }] Make::Wasi(linked::fd_readdir);
    wasi_fs fd_filestat_get (I32, I32) -> (I32) [Fixed { at: 1, len: 64 }] Make::Wasi(linked::fd_filestat_get);
    wasi_fs fd_advise (I32, I64, I64, I32) -> (I32) [] Make::Wasi(linked::fd_advise);
    wasi_fs fd_fdstat_set_flags (I32, I32) -> (I32) [] Make::Wasi(linked::fd_fdstat_set_flags);
    wasi_fs fd_fdstat_set_rights (I32, I64, I64) -> (I32) [] Make::Wasi(linked::fd_fdstat_set_rights);
    wasi_fs fd_renumber (I32, I32) -> (I32) [] Make::Wasi(linked::fd_renumber);
    wasi_fs fd_sync (I32) -> (I32) [] Make::Wasi(linked::fd_sync);
    wasi_fs fd_datasync (I32) -> (I32) [] Make::Wasi(linked::fd_datasync);
    wasi_fs_write fd_pwrite (I32, I32, I32, I64, I32) -> (I32) [Fixed { at: 4, len: 4 }] Make::Wasi(io::fd_pwrite);
    wasi_fs_write fd_allocate (I32, I64, I64) -> (I32) [] Make::Wasi(linked::fd_allocate);
    wasi_fs_write fd_filestat_set_size (I32, I64) -> (I32) [] Make::Wasi(linked::fd_filestat_set_size);
    wasi_fs_write fd_filestat_set_times (I32, I64, I64, I32) -> (I32) [] Make::Wasi(linked::fd_filestat_set_times);
    wasi_fs_write path_create_directory (I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_create_directory);
    wasi_fs_write path_filestat_set_times (I32, I32, I32, I32, I64, I64, I32) -> (I32) [] Make::Wasi(linked::path_filestat_set_times);
    wasi_fs_write path_link (I32, I32, I32, I32, I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_link);
    wasi_fs_write path_remove_directory (I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_remove_directory);
    wasi_fs_write path_rename (I32, I32, I32, I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_rename);
    wasi_fs_write path_symlink (I32, I32, I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_symlink);
    wasi_fs_write path_unlink_file (I32, I32, I32) -> (I32) [] Make::Wasi(linked::path_unlink_file);
}
