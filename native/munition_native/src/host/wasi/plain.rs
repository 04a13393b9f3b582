//! WASI preview 1 for an engine without `wasmtime-wasi` (Wasmi): the
//! functions that Wasmtime's own implementation serves from its descriptor
//! table, written once over `HostCtx`: stdin 0, stdout 1 and stderr 2 here,
//! the descriptors from 3 up (preopens, files) handed to `files`; and
//! `poll_oneoff`, whose sleep the engine turns into a suspension
//! (`Sleep`: the guest's execution ends its slice waiting, holding no
//! thread, and the engine finishes the call when it resumes it).
//!
//! They answer as Wasmtime's do: the same errnos (a seek on stdio is
//! `ESPIPE`, a closed or unknown descriptor `EBADF`), the same descriptor
//! stats (filetype unknown, not a terminal; `fd_read` or `fd_write` rights),
//! the same capture pipes and bounds. Bytes moved are paid for in fuel, and
//! every guest range is checked before it is read or written (outside
//! memory: a `:memory_out_of_bounds` trap).
//!
//! The filesystem's own functions (the rows of `wasi_fs` and
//! `wasi_fs_write`) are `files`'; `find` names them too, so every row of the
//! table has an implementation on such an engine (the WASI contract's
//! hostile-guest test calls each on both engines).

use std::time::{Duration, Instant};

use super::files::fd::{self as files_fd, Move};
use super::files::{path as files_path, Files};
use super::iovec::iovecs;
use super::own::{errno, write_guest};
use super::poll::{event, sleep_deterministic, Poll, EVENT_FD_READ, POLL};
use crate::host::builtins::{i32_param, HostFn};
use crate::host::context::{charge_bytes, HostCtx, Stop};
use crate::vocabulary::value::Value;

const SPIPE: i32 = 70;
const RIGHTS_FD_READ: u64 = 1 << 1;
const RIGHTS_FD_WRITE: u64 = 1 << 6;

/// The descriptors and what they read from: stdin's bytes and how far the
/// guest has read, which of the three are still open.
pub struct Plain {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub stdin: Vec<u8>,
    read: usize,
    open: [bool; 3],
    /// The descriptors from 3 up: preopens and what the guest opened.
    pub files: Files,
}

impl Plain {
    pub fn new(args: &[String], env: &[(String, String)], stdin: &[u8]) -> Plain {
        Plain {
            args: args.to_vec(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            stdin: stdin.to_vec(),
            read: 0,
            open: [true; 3],
            files: Files::default(),
        }
    }

    fn is_open(&self, fd: u32) -> bool {
        self.open.get(fd as usize).copied().unwrap_or(false)
    }
}

/// The function `name` of this module, if it has one.
pub fn find(name: &str) -> Option<HostFn> {
    Some(match name {
        "args_get" => args_get,
        "args_sizes_get" => args_sizes_get,
        "environ_get" => environ_get,
        "environ_sizes_get" => environ_sizes_get,
        "fd_write" => fd_write,
        "fd_read" => fd_read,
        "fd_close" => fd_close,
        "fd_seek" => fd_seek,
        "fd_tell" => fd_tell,
        "fd_fdstat_get" => fd_fdstat_get,
        "fd_prestat_get" => fd_prestat_get,
        "fd_prestat_dir_name" => fd_prestat_dir_name,
        "poll_oneoff" => poll_oneoff,
        "fd_pread" => files_fd::fd_pread,
        "fd_pwrite" => files_fd::fd_pwrite,
        "fd_readdir" => files_fd::fd_readdir,
        "fd_filestat_get" => files_fd::fd_filestat_get,
        "fd_advise" => files_fd::fd_advise,
        "fd_fdstat_set_flags" => files_fd::fd_fdstat_set_flags,
        "fd_fdstat_set_rights" => files_fd::fd_fdstat_set_rights,
        "fd_renumber" => files_fd::fd_renumber,
        "fd_sync" => files_fd::fd_sync,
        "fd_datasync" => files_fd::fd_datasync,
        "fd_allocate" => files_fd::fd_allocate,
        "fd_filestat_set_size" => files_fd::fd_filestat_set_size,
        "fd_filestat_set_times" => files_fd::fd_filestat_set_times,
        "path_open" => files_path::path_open,
        "path_filestat_get" => files_path::path_filestat_get,
        "path_readlink" => files_path::path_readlink,
        "path_create_directory" => files_path::path_create_directory,
        "path_filestat_set_times" => files_path::path_filestat_set_times,
        "path_link" => files_path::path_link,
        "path_remove_directory" => files_path::path_remove_directory,
        "path_rename" => files_path::path_rename,
        "path_symlink" => files_path::path_symlink,
        "path_unlink_file" => files_path::path_unlink_file,
        _ => return None,
    })
}

fn param(params: &[Value], index: usize) -> u64 {
    i32_param(params, index) as u32 as u64
}

fn done(results: &mut [Value], errno: i32) -> Result<(), Stop> {
    results[0] = Value::I32(errno);
    Ok(())
}

/// The sizes of a list of strings, each NUL-terminated: `(count, bytes)`.
fn sizes(
    ctx: &mut dyn HostCtx,
    func: &str,
    params: &[Value],
    results: &mut [Value],
    list: fn(&Plain) -> &[String],
) -> Result<(), Stop> {
    let plain = &ctx.state().wasi().plain;
    let strings = list(plain);
    let count = strings.len() as u32;
    let bytes: usize = strings.iter().map(|s| s.len() + 1).sum();
    write_guest(ctx, func, param(params, 0), &count.to_le_bytes())?;
    write_guest(ctx, func, param(params, 1), &(bytes as u32).to_le_bytes())?;
    done(results, errno::SUCCESS)
}

/// A list of strings: pointers at `params[0]`, NUL-terminated bytes at
/// `params[1]`, paid for by the byte.
fn strings(
    ctx: &mut dyn HostCtx,
    func: &str,
    params: &[Value],
    results: &mut [Value],
    list: fn(&Plain) -> &[String],
) -> Result<(), Stop> {
    let strings = list(&ctx.state().wasi().plain).to_vec();
    let (pointers, mut buf) = (param(params, 0), param(params, 1));
    for (index, string) in strings.iter().enumerate() {
        charge_bytes(ctx, string.len() + 5)?;
        let at = pointers + 4 * index as u64;
        write_guest(ctx, func, at, &(buf as u32).to_le_bytes())?;
        let mut bytes = string.as_bytes().to_vec();
        bytes.push(0);
        write_guest(ctx, func, buf, &bytes)?;
        buf += bytes.len() as u64;
    }
    done(results, errno::SUCCESS)
}

fn args_sizes_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    sizes(ctx, "args_sizes_get", p, r, |plain| &plain.args)
}

fn args_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    strings(ctx, "args_get", p, r, |plain| &plain.args)
}

fn environ_sizes_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    sizes(ctx, "environ_sizes_get", p, r, |plain| &plain.env)
}

fn environ_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    strings(ctx, "environ_get", p, r, |plain| &plain.env)
}

/// `fd_write(fd, iovs, iovs_len, nwritten)`: to the capture pipes.
fn fd_write(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    let buffers = match iovecs(ctx, "fd_write", param(params, 1), param(params, 2))? {
        Ok(buffers) => buffers,
        Err(errno) => return done(results, errno),
    };
    if fd >= 3 {
        let out = param(params, 3);
        return files_fd::move_bytes(
            ctx,
            "fd_write",
            fd,
            buffers,
            Move::Write(None),
            out,
            results,
        );
    }
    if !(fd == 1 || fd == 2) || !ctx.state().wasi().plain.is_open(fd) {
        return done(results, errno::BADF);
    }
    let mut written = 0u64;
    for range in buffers {
        charge_bytes(ctx, range.len())?;
        written += range.len() as u64;
        if let (Some(data), state) = ctx.memory_and_state() {
            let wasi = state.wasi();
            let pipe = if fd == 1 { &wasi.stdout } else { &wasi.stderr };
            pipe.push(&data[range]);
        }
    }
    let written = u32::try_from(written).unwrap_or(u32::MAX);
    write_guest(ctx, "fd_write", param(params, 3), &written.to_le_bytes())?;
    done(results, errno::SUCCESS)
}

/// `fd_read(fd, iovs, iovs_len, nread)`: from stdin's bytes.
fn fd_read(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    let buffers = match iovecs(ctx, "fd_read", param(params, 1), param(params, 2))? {
        Ok(buffers) => buffers,
        Err(errno) => return done(results, errno),
    };
    if fd >= 3 {
        let out = param(params, 3);
        return files_fd::move_bytes(ctx, "fd_read", fd, buffers, Move::Read(None), out, results);
    }
    if fd != 0 || !ctx.state().wasi().plain.is_open(fd) {
        return done(results, errno::BADF);
    }
    let mut read = 0u64;
    for range in buffers {
        let plain = &ctx.state().wasi().plain;
        let n = (plain.stdin.len() - plain.read).min(range.len());
        charge_bytes(ctx, n)?;
        let (Some(data), state) = ctx.memory_and_state() else {
            break;
        };
        let plain = &mut state.wasi().plain;
        data[range.start..range.start + n]
            .copy_from_slice(&plain.stdin[plain.read..plain.read + n]);
        plain.read += n;
        read += n as u64;
        if n < range.len() {
            break;
        }
    }
    write_guest(
        ctx,
        "fd_read",
        param(params, 3),
        &(read as u32).to_le_bytes(),
    )?;
    done(results, errno::SUCCESS)
}

fn fd_close(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    if fd >= 3 {
        return files_fd::close(ctx, fd, results);
    }
    let plain = &mut ctx.state().wasi().plain;
    if !plain.is_open(fd) {
        return done(results, errno::BADF);
    }
    plain.open[fd as usize] = false;
    done(results, errno::SUCCESS)
}

/// Stdio cannot seek (`ESPIPE`); anything else is not open (`EBADF`).
fn not_seekable(
    ctx: &mut dyn HostCtx,
    params: &[Value],
    results: &mut [Value],
) -> Result<(), Stop> {
    let open = ctx.state().wasi().plain.is_open(param(params, 0) as u32);
    done(results, if open { SPIPE } else { errno::BADF })
}

/// `fd_seek(fd, offset, whence, newoffset)`.
fn fd_seek(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    if fd < 3 {
        return not_seekable(ctx, params, results);
    }
    let offset = match params.get(1) {
        Some(Value::I64(offset)) => *offset,
        _ => 0,
    };
    let (whence, out) = (param(params, 2), param(params, 3));
    files_fd::seek(ctx, fd, offset, whence, out, "fd_seek", results)
}

/// `fd_tell(fd, offset)`.
fn fd_tell(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    if fd < 3 {
        return not_seekable(ctx, params, results);
    }
    files_fd::seek(ctx, fd, 0, 1, param(params, 1), "fd_tell", results)
}

/// `fd_fdstat_get(fd, stat)`: as Wasmtime's for stdio that is no terminal.
fn fd_fdstat_get(
    ctx: &mut dyn HostCtx,
    params: &[Value],
    results: &mut [Value],
) -> Result<(), Stop> {
    let fd = param(params, 0) as u32;
    if fd >= 3 {
        return files_fd::fdstat(ctx, fd, param(params, 1), results);
    }
    if !ctx.state().wasi().plain.is_open(fd) {
        return done(results, errno::BADF);
    }
    let rights = if fd == 0 {
        RIGHTS_FD_READ
    } else {
        RIGHTS_FD_WRITE
    };
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    stat[16..24].copy_from_slice(&rights.to_le_bytes());
    write_guest(ctx, "fd_fdstat_get", param(params, 1), &stat)?;
    done(results, errno::SUCCESS)
}

/// `fd_prestat_get(fd, prestat)`: the preopens are from 3 up.
fn fd_prestat_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    files_fd::fd_prestat_get(ctx, p, r)
}

/// `fd_prestat_dir_name(fd, path, path_len)`.
fn fd_prestat_dir_name(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    files_fd::fd_prestat_dir_name(ctx, p, r)
}

/// A `poll_oneoff` waiting for its clock subscriptions: the guest is
/// suspended until `until` (or its deadline), then `poll.finish` writes the
/// events that are due.
pub struct Sleep {
    pub until: Instant,
    pub poll: Poll,
}

/// `poll_oneoff(in, out, nsubscriptions, nevents)`, as Wasmtime's engine
/// answers it (`poll`, `time`): descriptors are always ready (stdin for
/// reading, stdout and stderr for writing; anything else is an event with
/// `EBADF`); with none ready the guest sleeps until its earliest clock
/// subscription: at once on the deterministic clock, else by leaving a
/// `Sleep` on its WASI state for the engine to suspend it.
fn poll_oneoff(ctx: &mut dyn HostCtx, params: &[Value], results: &mut [Value]) -> Result<(), Stop> {
    let (input, output) = (param(params, 0), param(params, 1));
    let (count, nevents) = (param(params, 2), param(params, 3));
    let poll = match Poll::read(ctx, input, output, count, nevents)? {
        Ok(poll) => poll,
        Err(errno) => return done(results, errno),
    };
    let mut events = Vec::new();
    for &(userdata, kind, fd) in &poll.fds {
        let plain = &mut ctx.state().wasi().plain;
        // A file is always ready, as on Wasmtime; a directory never is.
        let ready = match (fd, kind) {
            (3.., _) => matches!(plain.files.get(fd), Some(super::files::Entry::File { .. })),
            (_, EVENT_FD_READ) => fd == 0 && plain.is_open(fd),
            _ => (fd == 1 || fd == 2) && plain.is_open(fd),
        };
        let error = if ready { errno::SUCCESS } else { errno::BADF };
        events.push(event(userdata, error, kind));
    }
    if let Some(ns) = poll.sleep_ns().filter(|_| events.is_empty()) {
        if !sleep_deterministic(ctx, ns) {
            // Past the deadline is as good as forever.
            let until = Instant::now()
                .checked_add(Duration::from_nanos(ns))
                .unwrap_or(ctx.state().deadline);
            ctx.state().wasi().sleeping = Some(Sleep { until, poll });
            return Err(Stop::Failed(format!("{POLL}: sleeping")));
        }
    }
    results[0] = Value::I32(poll.finish(ctx, events)?);
    Ok(())
}
