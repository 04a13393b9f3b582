//! The WASI functions Wasmtime's own implementation serves as it is
//! (`wasmtime-wasi`'s `p1`), each called through the entry point its
//! generated linker uses, with the guest's exported memory (some are
//! async, file operations; the others are not). Munition makes
//! them itself (`Make::Wasi`) rather than take them from a linker, so that
//! the one place where the Wasmtime engine makes a built-in records every
//! host call for a replay (`host::journal`).

use wasmtime::{AsContextMut, Caller, Val};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};
use wiggle::GuestMemory;

use super::caller;
use crate::host::builtins::WasiFuture;
use crate::host::state::StoreState;

macro_rules! linked {
    ($($kind:ident $name:ident ($($arg:ident: $ty:ident),*);)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`, Wasmtime's.")]
            pub fn $name<'a>(
                caller: &'a mut Caller<'_, StoreState>,
                params: &'a [Val],
                results: &'a mut [Val],
            ) -> WasiFuture<'a> {
                Box::pin(async move {
                    #[allow(unused_mut, unused_variables)]
                    let mut args = params.iter();
                    $(let $arg = linked!(@take args $ty);)*
                    let hostcall_fuel = caller.as_context_mut().hostcall_fuel();
                    // A guest without memory gets an empty one: a pointer
                    // into it is Wasmtime's `EFAULT`, as from its linker.
                    let memory = caller::memory(caller);
                    let (data, state) = match memory {
                        Some(memory) => memory.data_and_store_mut(&mut *caller),
                        None => (&mut [][..], caller.data_mut()),
                    };
                    let ctx = &mut state.wasi().ctx;
                    ctx.set_hostcall_fuel(hostcall_fuel);
                    let errno = linked!(@call $kind p1::$name(ctx, &mut GuestMemory::Unshared(data), $($arg),*));
                    results[0] = Val::I32(errno);
                    Ok(())
                })
            }
        )*
    };
    (@call async $call:expr) => { $call.await? };
    (@call sync $call:expr) => { $call? };
    (@take $args:ident I32) => { $args.next().and_then(Val::i32).unwrap_or_default() };
    (@take $args:ident I64) => { $args.next().and_then(Val::i64).unwrap_or_default() };
}

linked! {
    // Paid for first by `io`, which the table links instead.
    async fd_write(fd: I32, iovs: I32, count: I32, nwritten: I32);
    async fd_read(fd: I32, iovs: I32, count: I32, nread: I32);
    async fd_pwrite(fd: I32, iovs: I32, count: I32, offset: I64, nwritten: I32);
    async fd_pread(fd: I32, iovs: I32, count: I32, offset: I64, nread: I32);

    async fd_close(fd: I32);
    async fd_seek(fd: I32, offset: I64, whence: I32, newoffset: I32);
    sync fd_tell(fd: I32, offset: I32);
    async fd_fdstat_get(fd: I32, stat: I32);
    sync fd_prestat_get(fd: I32, prestat: I32);
    sync fd_prestat_dir_name(fd: I32, path: I32, len: I32);
    sync args_get(argv: I32, buf: I32);
    sync args_sizes_get(count: I32, size: I32);
    sync environ_get(environ: I32, buf: I32);
    sync environ_sizes_get(count: I32, size: I32);
    async path_open(fd: I32, dirflags: I32, path: I32, len: I32, oflags: I32, base: I64, inheriting: I64, fdflags: I32, opened: I32);
    async path_filestat_get(fd: I32, flags: I32, path: I32, len: I32, stat: I32);
    async path_readlink(fd: I32, path: I32, len: I32, buf: I32, buf_len: I32, used: I32);
    async fd_readdir(fd: I32, buf: I32, buf_len: I32, cookie: I64, used: I32);
    async fd_filestat_get(fd: I32, stat: I32);
    async fd_advise(fd: I32, offset: I64, len: I64, advice: I32);
    sync fd_fdstat_set_flags(fd: I32, flags: I32);
    sync fd_fdstat_set_rights(fd: I32, base: I64, inheriting: I64);
    async fd_renumber(fd: I32, to: I32);
    async fd_sync(fd: I32);
    async fd_datasync(fd: I32);
    sync fd_allocate(fd: I32, offset: I64, len: I64);
    async fd_filestat_set_size(fd: I32, size: I64);
    async fd_filestat_set_times(fd: I32, atime: I64, mtime: I64, flags: I32);
    async path_create_directory(fd: I32, path: I32, len: I32);
    async path_filestat_set_times(fd: I32, flags: I32, path: I32, len: I32, atime: I64, mtime: I64, fst_flags: I32);
    async path_link(fd: I32, flags: I32, path: I32, len: I32, to_fd: I32, to_path: I32, to_len: I32);
    async path_remove_directory(fd: I32, path: I32, len: I32);
    async path_rename(fd: I32, path: I32, len: I32, to_fd: I32, to_path: I32, to_len: I32);
    async path_symlink(path: I32, len: I32, fd: I32, to_path: I32, to_len: I32);
    async path_unlink_file(fd: I32, path: I32, len: I32);
}
