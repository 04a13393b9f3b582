//! The functions naming a path under a directory descriptor: `path_open`,
//! the stats, and the `wasi_fs_write` ones that change the tree. Each
//! resolves its path with `cap-primitives` relative to its directory (see
//! `files`), and checks that the directory is writable before changing
//! anything under it.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use cap_primitives::fs::{
    self as cap, DirOptions, FileType, FollowSymlinks, Metadata, MetadataExt, OpenOptions,
    SystemTimeSpec,
};

use super::{done, errno, errno_of, param, param64, read_path, write_u32, Entry, Files};
use crate::host::context::{HostCtx, Stop};
use crate::host::wasi::own::write_guest;
use crate::vocabulary::value::Value;

const LOOKUP_SYMLINK_FOLLOW: u64 = 1;
const O_CREAT: u64 = 1;
const O_DIRECTORY: u64 = 2;
const O_EXCL: u64 = 4;
const O_TRUNC: u64 = 8;
const FDFLAGS_APPEND: u64 = 1;
const RIGHT_FD_DATASYNC: u64 = 1;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
const RIGHT_FD_READDIR: u64 = 1 << 14;
const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;

pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_BLOCK_DEVICE: u8 = 1;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_DIRECTORY: u8 = 3;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;
pub const FILETYPE_SYMBOLIC_LINK: u8 = 7;

/// A preview-1 `filetype`.
pub fn filetype(ty: FileType) -> u8 {
    use cap_primitives::fs::FileTypeExt;
    if ty.is_dir() {
        FILETYPE_DIRECTORY
    } else if ty.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ty.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ty.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ty.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ty.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

/// A preview-1 `filestat` (64 bytes) of `meta`.
pub fn filestat(meta: &Metadata) -> [u8; 64] {
    let ns = |s: i64, n: i64| {
        (s as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(n as u64)
    };
    let mut stat = [0u8; 64];
    stat[0..8].copy_from_slice(&meta.dev().to_le_bytes());
    stat[8..16].copy_from_slice(&meta.ino().to_le_bytes());
    stat[16] = filetype(meta.file_type());
    stat[24..32].copy_from_slice(&meta.nlink().to_le_bytes());
    stat[32..40].copy_from_slice(&meta.len().to_le_bytes());
    stat[40..48].copy_from_slice(&ns(meta.atime(), meta.atime_nsec()).to_le_bytes());
    stat[48..56].copy_from_slice(&ns(meta.mtime(), meta.mtime_nsec()).to_le_bytes());
    stat[56..64].copy_from_slice(&ns(meta.ctime(), meta.ctime_nsec()).to_le_bytes());
    stat
}

/// The directory at `fd` and whether it is writable.
fn dir(files: &Files, fd: u64) -> Result<(&File, bool), i32> {
    match files.entries.get(&(fd as u32)) {
        Some(Entry::Dir { dir, writable, .. }) => Ok((dir, *writable)),
        Some(Entry::File { .. }) => Err(errno::NOTDIR),
        None => Err(errno::BADF),
    }
}

fn files(ctx: &mut dyn HostCtx) -> &mut Files {
    &mut ctx.state().wasi().plain.files
}

/// Reads the path at `params[ptr]`/`params[ptr + 1]` or returns its errno.
macro_rules! path {
    ($ctx:expr, $func:expr, $params:expr, $results:expr, $at:expr) => {
        match read_path($ctx, $func, param($params, $at), param($params, $at + 1))? {
            Ok(path) => path,
            Err(e) => return done($results, e),
        }
    };
}

/// Unwraps an errno result into an early return of the errno.
macro_rules! check {
    ($results:expr, $value:expr) => {
        match $value {
            Ok(value) => value,
            Err(e) => return done($results, e),
        }
    };
}

/// `path_open(fd, dirflags, path, path_len, oflags, rights_base,
/// rights_inheriting, fdflags, opened)`, as Wasmtime's: reading if the rights
/// ask for `fd_read` or `fd_readdir`, writing if they ask for a write (or
/// `fdflags` for appending); creating, truncating or writing needs a
/// writable directory (`EPERM`); a directory is opened as one.
pub fn path_open(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let path = path!(ctx, "path_open", p, r, 2);
    let (fd, dirflags, oflags) = (param(p, 0), param(p, 1), param(p, 4));
    let (rights, fdflags) = (param64(p, 5), param(p, 7));
    let follow = FollowSymlinks::follow(dirflags & LOOKUP_SYMLINK_FOLLOW != 0);
    let read = rights & (RIGHT_FD_READ | RIGHT_FD_READDIR) != 0;
    let append = fdflags & FDFLAGS_APPEND != 0;
    let write = append
        || rights
            & (RIGHT_FD_WRITE | RIGHT_FD_DATASYNC | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE)
            != 0;
    let (create, trunc) = (oflags & O_CREAT != 0, oflags & O_TRUNC != 0);
    let table = files(ctx);
    let (base, writable) = check!(r, dir(table, fd));
    if (create || trunc || write) && !writable {
        return done(r, errno::PERM);
    }
    let as_dir = oflags & O_DIRECTORY != 0
        || (!create && cap::stat(base, &path, follow).is_ok_and(|meta| meta.is_dir()));
    let entry = if as_dir {
        if create || trunc || oflags & O_EXCL != 0 {
            return done(r, errno::INVAL);
        }
        if write {
            return done(r, errno::ISDIR);
        }
        let opened = match follow {
            FollowSymlinks::Yes => cap::open_dir(base, &path),
            FollowSymlinks::No => cap::open_dir_nofollow(base, &path),
        };
        Entry::Dir {
            dir: check!(r, opened.map_err(|e| errno_of(&e))),
            writable,
            preopen: None,
        }
    } else {
        // Creating or truncating opens for writing, as on Wasmtime (cap-std
        // refuses either without it): the directory is writable, checked above.
        let write = write || create || trunc;
        let mut options = OpenOptions::new();
        options
            .read(read || !write)
            .write(write && !append)
            .append(append)
            .truncate(trunc)
            ._cap_fs_ext_follow(follow);
        if create && oflags & O_EXCL != 0 {
            options.create_new(true);
        } else {
            options.create(create);
        }
        Entry::File {
            file: check!(
                r,
                cap::open(base, &path, &options).map_err(|e| errno_of(&e))
            ),
            read,
            write,
            append,
        }
    };
    let opened = check!(r, table.insert(entry));
    if let Err(stop) = write_u32(ctx, "path_open", param(p, 8), opened) {
        files(ctx).entries.remove(&opened);
        return Err(stop);
    }
    done(r, errno::SUCCESS)
}

/// `path_filestat_get(fd, flags, path, path_len, filestat)`.
pub fn path_filestat_get(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let path = path!(ctx, "path_filestat_get", p, r, 2);
    let follow = FollowSymlinks::follow(param(p, 1) & LOOKUP_SYMLINK_FOLLOW != 0);
    let (base, _) = check!(r, dir(files(ctx), param(p, 0)));
    let meta = check!(r, cap::stat(base, &path, follow).map_err(|e| errno_of(&e)));
    write_guest(ctx, "path_filestat_get", param(p, 4), &filestat(&meta))?;
    done(r, errno::SUCCESS)
}

/// `path_readlink(fd, path, path_len, buf, buf_len, bufused)`: the link's
/// contents, cut to the buffer.
pub fn path_readlink(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let path = path!(ctx, "path_readlink", p, r, 1);
    let (base, _) = check!(r, dir(files(ctx), param(p, 0)));
    let link = check!(r, cap::read_link(base, &path).map_err(|e| errno_of(&e)));
    let link = link.to_string_lossy().into_owned().into_bytes();
    let n = link.len().min(param(p, 4) as usize);
    crate::host::context::charge_bytes(ctx, n)?;
    write_guest(ctx, "path_readlink", param(p, 3), &link[..n])?;
    write_u32(ctx, "path_readlink", param(p, 5), n as u32)?;
    done(r, errno::SUCCESS)
}

/// The writable directory at `fd` (`EPERM` if it is read-only).
fn writable_dir(files: &Files, fd: u64) -> Result<&File, i32> {
    match dir(files, fd)? {
        (dir, true) => Ok(dir),
        (_, false) => Err(errno::PERM),
    }
}

/// One path under one writable directory: `op(dir, path)`.
fn change(
    ctx: &mut dyn HostCtx,
    func: &str,
    p: &[Value],
    r: &mut [Value],
    op: fn(&File, &Path) -> std::io::Result<()>,
) -> Result<(), Stop> {
    let path = path!(ctx, func, p, r, 1);
    let base = check!(r, writable_dir(files(ctx), param(p, 0)));
    check!(r, op(base, &path).map_err(|e| errno_of(&e)));
    done(r, errno::SUCCESS)
}

/// `path_create_directory(fd, path, path_len)`.
pub fn path_create_directory(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    change(ctx, "path_create_directory", p, r, |dir, path| {
        cap::create_dir(dir, path, &DirOptions::new())
    })
}

/// `path_remove_directory(fd, path, path_len)`.
pub fn path_remove_directory(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    change(ctx, "path_remove_directory", p, r, cap::remove_dir)
}

/// `path_unlink_file(fd, path, path_len)`.
pub fn path_unlink_file(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    change(ctx, "path_unlink_file", p, r, cap::remove_file)
}

/// `path_rename(fd, old_path, old_len, new_fd, new_path, new_len)`.
pub fn path_rename(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let old = path!(ctx, "path_rename", p, r, 1);
    let new = path!(ctx, "path_rename", p, r, 4);
    let files = files(ctx);
    let from = check!(r, writable_dir(files, param(p, 0)));
    let to = check!(r, writable_dir(files, param(p, 3)));
    check!(
        r,
        cap::rename(from, &old, to, &new).map_err(|e| errno_of(&e))
    );
    done(r, errno::SUCCESS)
}

/// `path_link(old_fd, old_flags, old_path, old_len, new_fd, new_path,
/// new_len)`: a hard link; following a symlink is `EINVAL`, as on Wasmtime.
pub fn path_link(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let old = path!(ctx, "path_link", p, r, 2);
    let new = path!(ctx, "path_link", p, r, 5);
    if param(p, 1) & LOOKUP_SYMLINK_FOLLOW != 0 {
        return done(r, errno::INVAL);
    }
    let files = files(ctx);
    // Both ends writable, as Wasmtime's `link_at`: a link from a read-only
    // preopen into a writable one would make its file writable through the link.
    let from = check!(r, writable_dir(files, param(p, 0)));
    let to = check!(r, writable_dir(files, param(p, 4)));
    check!(
        r,
        cap::hard_link(from, &old, to, &new).map_err(|e| errno_of(&e))
    );
    done(r, errno::SUCCESS)
}

/// `path_symlink(old_path, old_len, fd, new_path, new_len)`: an absolute
/// target is `EPERM`, as on Wasmtime (it could only lead out).
pub fn path_symlink(ctx: &mut dyn HostCtx, p: &[Value], r: &mut [Value]) -> Result<(), Stop> {
    let old = path!(ctx, "path_symlink", p, r, 0);
    let new = path!(ctx, "path_symlink", p, r, 3);
    if old.is_absolute() {
        return done(r, errno::PERM);
    }
    let base = check!(r, writable_dir(files(ctx), param(p, 2)));
    check!(r, cap::symlink(&old, base, &new).map_err(|e| errno_of(&e)));
    done(r, errno::SUCCESS)
}

const FST_ATIM: u64 = 1;
const FST_ATIM_NOW: u64 = 2;
const FST_MTIM: u64 = 4;
const FST_MTIM_NOW: u64 = 8;

/// The times `fst_flags` asks to set, or `EINVAL` for both a time and now.
pub fn times(
    atim: u64,
    mtim: u64,
    flags: u64,
) -> Result<(Option<SystemTimeSpec>, Option<SystemTimeSpec>), i32> {
    let spec = |time: u64, set: u64, now: u64| match (flags & set != 0, flags & now != 0) {
        (true, true) => Err(errno::INVAL),
        (true, false) => Ok(Some(SystemTimeSpec::Absolute(
            cap_primitives::time::SystemTime::from_std(
                SystemTime::UNIX_EPOCH + Duration::from_nanos(time),
            ),
        ))),
        (false, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
        (false, false) => Ok(None),
    };
    Ok((
        spec(atim, FST_ATIM, FST_ATIM_NOW)?,
        spec(mtim, FST_MTIM, FST_MTIM_NOW)?,
    ))
}

/// `path_filestat_set_times(fd, flags, path, path_len, atim, mtim, fst_flags)`.
pub fn path_filestat_set_times(
    ctx: &mut dyn HostCtx,
    p: &[Value],
    r: &mut [Value],
) -> Result<(), Stop> {
    let path = path!(ctx, "path_filestat_set_times", p, r, 2);
    let (atime, mtime) = check!(r, times(param64(p, 4), param64(p, 5), param(p, 6)));
    let base = check!(r, writable_dir(files(ctx), param(p, 0)));
    let set = if param(p, 1) & LOOKUP_SYMLINK_FOLLOW != 0 {
        cap::set_times(base, &path, atime, mtime)
    } else {
        cap::set_times_nofollow(base, &path, atime, mtime)
    };
    check!(r, set.map_err(|e| errno_of(&e)));
    done(r, errno::SUCCESS)
}
