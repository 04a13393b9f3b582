//! The descriptor functions over files and directories (descriptors from 3
//! up; `plain` serves stdio and hands the rest here): the byte movers, one
//! buffer a call as Wasmtime's move it, seeking, stats, listing a
//! directory, the preopens' names, and closing and renumbering.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use cap_primitives::fs::{read_base_dir, Metadata, SystemTimeSpec};

use super::path::{filestat, filetype, times, FILETYPE_DIRECTORY, FILETYPE_UNKNOWN};
use super::{done, errno, errno_of, param, param64, write_u32, write_u64, Entry, Files};
use crate::host::context::{charge_bytes, guest_range, HostCtx, Stop};
use crate::host::wasi::iovec::iovecs;
use crate::host::wasi::own::write_guest;
use crate::vocabulary::value::Value;

const FDFLAGS_APPEND: u16 = 1;
/// `fd_datasync`, `fd_seek`, `fd_fdstat_set_flags`, `fd_sync`, `fd_tell`,
/// `fd_advise`, `fd_filestat_get`, `fd_filestat_set_times`, `poll_fd_readwrite`.
const RIGHTS_FILE: u64 =
    1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 7 | 1 << 21 | 1 << 23 | 1 << 27;
const RIGHTS_READ: u64 = 1 << 1;
/// `fd_write`, `fd_allocate`, `fd_filestat_set_size`.
const RIGHTS_WRITE: u64 = 1 << 6 | 1 << 8 | 1 << 22;
/// Every right of preview 1.
const RIGHTS_ALL: u64 = (1 << 29) - 1;
/// A directory's: every right but a file's reads, writes and seeks.
const RIGHTS_DIR: u64 = RIGHTS_ALL & !(RIGHTS_READ | RIGHTS_WRITE | 1 << 2 | 1 << 5);

fn files(ctx: &mut dyn HostCtx) -> &mut Files {
    &mut ctx.state().wasi().plain.files
}

/// How a byte mover moves: reading or writing, at the file's position or
/// at an offset.
#[derive(Clone, Copy)]
pub enum Move {
    Read(Option<u64>),
    Write(Option<u64>),
}

/// Moves the first non-empty of `buffers` between guest memory and the file
/// at `fd` (3 or more), paid for first, and writes the count at `out`.
pub fn move_bytes(
    ctx: &mut dyn HostCtx,
    func: &str,
    fd: u32,
    buffers: Vec<Range<usize>>,
    how: Move,
    out: u64,
    r: &mut [Value],
) -> Result<(), Stop> {
    let allowed = match files(ctx).get(fd) {
        Some(Entry::File { read, write, .. }) => match how {
            Move::Read(_) => *read,
            Move::Write(_) => *write,
        },
        _ => false,
    };
    if !allowed {
        return done(r, errno::BADF);
    }
    let range = buffers.into_iter().find(|range| !range.is_empty());
    let range = range.unwrap_or(0..0);
    charge_bytes(ctx, range.len())?;
    let moved = match ctx.memory_and_state() {
        (Some(data), state) => match state.wasi().plain.files.get(fd) {
            Some(Entry::File { file, .. }) => {
                let buf = &mut data[range];
                match how {
                    Move::Read(None) => (&*file).read(buf),
                    Move::Read(Some(at)) => file.read_at(buf, at),
                    Move::Write(None) => (&*file).write(buf),
                    Move::Write(Some(at)) => file.write_at(buf, at),
                }
            }
            _ => Ok(0),
        },
        (None, _) => Ok(0),
    };
    let moved = match moved {
        Ok(n) => n,
        Err(e) => return done(r, errno_of(&e)),
    };
    write_u32(ctx, func, out, moved as u32)?;
    done(r, errno::SUCCESS)
}

/// `fd_pread` and `fd_pwrite`: stdio cannot (`ESPIPE` for the direction it
/// goes, else `EBADF`, as on Wasmtime).
fn positioned(
    ctx: &mut dyn HostCtx,
    func: &str,
    p: &[Value],
    r: &mut [Value],
    read: bool,
) -> Result<(), Stop> {
    let buffers = match iovecs(ctx, func, param(p, 1), param(p, 2))? {
        Ok(buffers) => buffers,
        Err(errno) => return done(r, errno),
    };
    let (fd, at) = (param(p, 0) as u32, param64(p, 3));
    if fd < 3 {
        let spipe = if read { fd == 0 } else { fd != 0 };
        return done(r, if spipe { errno::SPIPE } else { errno::BADF });
    }
    let how = if read {
        Move::Read(Some(at))
    } else {
        Move::Write(Some(at))
    };
    move_bytes(ctx, func, fd, buffers, how, param(p, 4), r)
}

/// `fd_pread(fd, iovs, iovs_len, offset, nread)`.
pub fn fd_pread(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    positioned(ctx, "fd_pread", p, r, true)
}

/// `fd_pwrite(fd, iovs, iovs_len, offset, nwritten)`.
pub fn fd_pwrite(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    positioned(ctx, "fd_pwrite", p, r, false)
}

/// `fd_seek(fd, offset, whence, newoffset)` on a file from 3 up.
pub fn seek(
    ctx: &mut dyn HostCtx,
    fd: u32,
    offset: i64,
    whence: u64,
    out: u64,
    func: &str,
    r: &mut [Value],
) -> Result<(), Stop> {
    let Some(Entry::File { file, .. }) = files(ctx).get(fd) else {
        return done(r, errno::BADF);
    };
    let from = match whence {
        0 if offset >= 0 => SeekFrom::Start(offset as u64),
        1 => SeekFrom::Current(offset),
        2 => SeekFrom::End(offset),
        _ => return done(r, errno::INVAL),
    };
    let position = match (&*file).seek(from) {
        Ok(position) => position,
        Err(e) => return done(r, errno_of(&e)),
    };
    write_u64(ctx, func, out, position)?;
    done(r, errno::SUCCESS)
}

/// `fd_close(fd)` from 3 up (preopens too, as on Wasmtime).
pub fn close(ctx: &mut dyn HostCtx, fd: u32, r: &mut [Value]) -> Result<(), Stop> {
    let closed = files(ctx).entries.remove(&fd).is_some();
    done(r, if closed { errno::SUCCESS } else { errno::BADF })
}

/// `fd_fdstat_get(fd, stat)` from 3 up.
pub fn fdstat(ctx: &mut dyn HostCtx, fd: u32, out: u64, r: &mut [Value]) -> Result<(), Stop> {
    let mut stat = [0u8; 24];
    match files(ctx).get(fd) {
        Some(Entry::Dir { .. }) => {
            stat[0] = FILETYPE_DIRECTORY;
            stat[8..16].copy_from_slice(&RIGHTS_DIR.to_le_bytes());
            stat[16..24].copy_from_slice(&RIGHTS_ALL.to_le_bytes());
        }
        Some(Entry::File {
            file,
            read,
            write,
            append,
        }) => {
            stat[0] =
                Metadata::from_file(file).map_or(FILETYPE_UNKNOWN, |m| filetype(m.file_type()));
            let flags = if *append { FDFLAGS_APPEND } else { 0 };
            stat[2..4].copy_from_slice(&flags.to_le_bytes());
            let mut rights = RIGHTS_FILE;
            rights |= if *read { RIGHTS_READ } else { 0 };
            rights |= if *write { RIGHTS_WRITE } else { 0 };
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            stat[16..24].copy_from_slice(&rights.to_le_bytes());
        }
        None => return done(r, errno::BADF),
    }
    write_guest(ctx, "fd_fdstat_get", out, &stat)?;
    done(r, errno::SUCCESS)
}

/// The open file or directory at `params[0]`, through `op`; stdio is
/// `EBADF` here.
fn with_entry(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
    op: impl FnOnce(&mut Entry) -> Result<(), i32>,
) -> Result<(), Stop> {
    let Some(entry) = files(ctx).get(param(p, 0) as u32) else {
        return done(r, errno::BADF);
    };
    done(r, op(entry).err().unwrap_or(errno::SUCCESS))
}

/// `fd_filestat_get(fd, filestat)`: stdio's is all zeros (filetype
/// unknown), as on Wasmtime.
pub fn fd_filestat_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let fd = param(p, 0) as u32;
    let stat = if fd < 3 {
        [0u8; 64]
    } else {
        let file = match files(ctx).get(fd) {
            Some(Entry::File { file, .. } | Entry::Dir { dir: file, .. }) => file,
            None => return done(r, errno::BADF),
        };
        match Metadata::from_file(file) {
            Ok(meta) => filestat(&meta),
            Err(e) => return done(r, errno_of(&e)),
        }
    };
    write_guest(ctx, "fd_filestat_get", param(p, 1), &stat)?;
    done(r, errno::SUCCESS)
}

/// `fd_readdir(fd, buf, buf_len, cookie, bufused)`: `.` and `..`, then the
/// directory's entries, from the `cookie`th on, as many as fit (the last one
/// cut, as preview 1 says: a full buffer means there may be more).
pub fn fd_readdir(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let range = guest_range(ctx, "fd_readdir", param(p, 1), param(p, 2))?;
    let cookie = param64(p, 3);
    let Some(Entry::Dir { dir, .. }) = files(ctx).get(param(p, 0) as u32) else {
        return done(r, errno::BADF);
    };
    let own = Metadata::from_file(dir)
        .map(|m| cap_primitives::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    let entries = match read_base_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return done(r, errno_of(&e)),
    };
    let dots = [
        (own, FILETYPE_DIRECTORY, ".".to_string()),
        (0, FILETYPE_DIRECTORY, "..".to_string()),
    ];
    let listed = entries.filter_map(Result::ok).map(|entry| {
        let ty = entry.file_type().map_or(FILETYPE_UNKNOWN, filetype);
        let ino = std::os::unix::fs::DirEntryExt::ino(&entry);
        (ino, ty, entry.file_name().to_string_lossy().into_owned())
    });
    let mut out = Vec::new();
    let mut visited = 0usize;
    for (index, (ino, ty, name)) in dots.into_iter().chain(listed).enumerate() {
        visited += 1;
        let next = index as u64 + 1;
        if next <= cookie {
            continue;
        }
        if out.len() >= range.len() {
            break;
        }
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[ty, 0, 0, 0]);
        out.extend_from_slice(name.as_bytes());
    }
    out.truncate(range.len());
    // Every entry walked is paid for, skipped ones too (as a 24-byte header
    // each): a listing from a far cookie into a small buffer is not free.
    charge_bytes(ctx, out.len() + visited * 24)?;
    if let (Some(data), _) = ctx.memory_and_state() {
        data[range.start..range.start + out.len()].copy_from_slice(&out);
    }
    write_u32(ctx, "fd_readdir", param(p, 4), out.len() as u32)?;
    done(r, errno::SUCCESS)
}

/// `fd_prestat_get(fd, prestat)`: a preopen's tag (directory) and name length.
pub fn fd_prestat_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let Some(Entry::Dir {
        preopen: Some(name),
        ..
    }) = files(ctx).get(param(p, 0) as u32)
    else {
        return done(r, errno::BADF);
    };
    let mut prestat = [0u8; 8];
    prestat[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
    write_guest(ctx, "fd_prestat_get", param(p, 1), &prestat)?;
    done(r, errno::SUCCESS)
}

/// `fd_prestat_dir_name(fd, path, path_len)`: `ENAMETOOLONG` if it does not fit.
pub fn fd_prestat_dir_name(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    let Some(Entry::Dir {
        preopen: Some(name),
        ..
    }) = files(ctx).get(param(p, 0) as u32)
    else {
        return done(r, errno::BADF);
    };
    let name = name.clone().into_bytes();
    if (name.len() as u64) > param(p, 2) {
        return done(r, errno::NAMETOOLONG);
    }
    write_guest(ctx, "fd_prestat_dir_name", param(p, 1), &name)?;
    done(r, errno::SUCCESS)
}

/// `fd_renumber(from, to)`: `to` closed, `from` moved there.
pub fn fd_renumber(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let (from, to) = (param(p, 0) as u32, param(p, 1) as u32);
    let files = files(ctx);
    if !files.entries.contains_key(&from) || !files.entries.contains_key(&to) {
        return done(r, errno::BADF);
    }
    if let Some(entry) = files.entries.remove(&from) {
        files.entries.insert(to, entry);
    }
    done(r, errno::SUCCESS)
}

/// `fd_advise(fd, offset, len, advice)`: checked, then nothing to do.
pub fn fd_advise(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let advice = param(p, 3);
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File { .. } if advice <= 5 => Ok(()),
        Entry::File { .. } => Err(errno::INVAL),
        Entry::Dir { .. } => Err(errno::BADF),
    })
}

/// `fd_sync(fd)`.
pub fn fd_sync(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File { file, .. } | Entry::Dir { dir: file, .. } => {
            file.sync_all().map_err(|e| errno_of(&e))
        }
    })
}

/// `fd_datasync(fd)`.
pub fn fd_datasync(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File { file, .. } | Entry::Dir { dir: file, .. } => {
            file.sync_data().map_err(|e| errno_of(&e))
        }
    })
}

/// `fd_fdstat_set_flags(fd, flags)`: flags cannot change (`ENOTSUP`) but to
/// what they are.
pub fn fd_fdstat_set_flags(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    let flags = param(p, 1);
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File { append, .. } if flags == u64::from(*append) => Ok(()),
        _ => Err(errno::NOTSUP),
    })
}

/// `fd_fdstat_set_rights(fd, base, inheriting)`: rights are not narrowed
/// here (`ENOTSUP`), as on Wasmtime.
pub fn fd_fdstat_set_rights(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    with_entry(ctx, p, r, |_| Err(errno::NOTSUP))
}

/// `fd_allocate(fd, offset, len)`: `ENOTSUP`, as on Wasmtime.
pub fn fd_allocate(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File { .. } => Err(errno::NOTSUP),
        Entry::Dir { .. } => Err(errno::BADF),
    })
}

/// `fd_filestat_set_size(fd, size)` of a file open for writing.
pub fn fd_filestat_set_size(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    let size = param64(p, 1);
    with_entry(ctx, p, r, |entry| match entry {
        Entry::File {
            file, write: true, ..
        } => file.set_len(size).map_err(|e| errno_of(&e)),
        _ => Err(errno::BADF),
    })
}

/// `fd_filestat_set_times(fd, atim, mtim, fst_flags)` of a file open for
/// writing or a writable directory (else `EPERM`).
pub fn fd_filestat_set_times(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    let specs = times(param64(p, 1), param64(p, 2), param(p, 3));
    with_entry(ctx, p, r, |entry| {
        let (atime, mtime) = specs?;
        let file = match entry {
            Entry::File {
                file, write: true, ..
            }
            | Entry::Dir {
                dir: file,
                writable: true,
                ..
            } => file,
            _ => return Err(errno::PERM),
        };
        futimens(file, atime, mtime)
    })
}

fn futimens(
    file: &std::fs::File,
    atime: Option<SystemTimeSpec>,
    mtime: Option<SystemTimeSpec>,
) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    let spec = |time: Option<SystemTimeSpec>| match time {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(SystemTimeSpec::SymbolicNow) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(SystemTimeSpec::Absolute(time)) => {
            let since = time
                .into_std()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            libc::timespec {
                tv_sec: since.as_secs() as libc::time_t,
                tv_nsec: since.subsec_nanos() as _,
            }
        }
    };
    let specs = [spec(atime), spec(mtime)];
    // SAFETY: a descriptor this table owns, and two timespecs.
    if unsafe { libc::futimens(file.as_raw_fd(), specs.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(errno_of(&std::io::Error::last_os_error()))
    }
}
