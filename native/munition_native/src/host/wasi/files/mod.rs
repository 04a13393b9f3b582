//! WASI preview 1's files for an engine without `wasmtime-wasi` (Wasmi):
//! the descriptors from 3 up (the preopened directories, then what the
//! guest opens), and the functions of the `wasi_fs` and `wasi_fs_write`
//! rows over them (`fd`: descriptor functions, `path`: functions naming a
//! path under a directory descriptor), written over `HostCtx`.
//!
//! Every path is resolved by `cap-primitives` (4.0.3, the crate
//! `wasmtime-wasi` itself sandboxes with, so the tree holds one copy): a
//! path is opened relative to its directory's descriptor and no `..`,
//! absolute path or symlink leads out of it, the guest getting an errno
//! (`EPERM`, as Wasmtime's answers). A directory is writable only when its
//! preopen is (marked `:read_write` and `:wasi_fs_write` granted): anything
//! that would create, truncate, write or remove under a read-only one is
//! `EPERM` before the host is touched, as on Wasmtime.
//!
//! Each operation is one bounded system call or a few (a read or write
//! moves one buffer, at most 128 MiB; a directory listing stops when the
//! guest's buffer is full), and runs on the thread running the guest's
//! slice (a dirty CPU scheduler): Wasmi has no fiber to park the guest on while another thread
//! works. Bytes moved are paid for in fuel before they move (8 a unit, as
//! for stdio), paths by their length; every guest range is checked before it
//! is read or written (outside memory: a `:memory_out_of_bounds` trap).

pub mod fd;
pub mod path;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;

use cap_primitives::{ambient_authority, fs::open_ambient_dir};

use super::own::write_guest;
use crate::host::context::{charge_bytes, guest_range, HostCtx, Stop};
use crate::vocabulary::value::Value;

/// WASI's error numbers the file functions return (besides `own::errno`).
pub mod errno {
    pub use super::super::own::errno::*;
    pub const ACCES: i32 = 2;
    pub const EXIST: i32 = 20;
    pub const ILSEQ: i32 = 25;
    pub const IO: i32 = 29;
    pub const ISDIR: i32 = 31;
    pub const LOOP: i32 = 32;
    pub const MLINK: i32 = 34;
    pub const NAMETOOLONG: i32 = 37;
    pub const NFILE: i32 = 41;
    pub const NOENT: i32 = 44;
    pub const NOSPC: i32 = 51;
    pub const NOTDIR: i32 = 54;
    pub const NOTEMPTY: i32 = 55;
    pub const NOTSUP: i32 = 58;
    pub const OVERFLOW: i32 = 61;
    pub const PERM: i32 = 63;
    pub const ROFS: i32 = 69;
    pub const SPIPE: i32 = 70;
    pub const XDEV: i32 = 75;
}

/// At most this many descriptors open at once (`ENFILE` past it).
pub const MAX_OPEN: usize = 1024;

/// An open descriptor from 3 up.
pub enum Entry {
    Dir {
        dir: File,
        /// Whether paths under it may be created, written or removed.
        writable: bool,
        /// The guest's name for it, if it is a preopen.
        preopen: Option<String>,
    },
    File {
        file: File,
        read: bool,
        write: bool,
        append: bool,
    },
}

/// The descriptors from 3 up.
#[derive(Default)]
pub struct Files {
    pub entries: BTreeMap<u32, Entry>,
}

impl Files {
    /// Opens each preopen `(guest_path, host_path, writable)` as 3, 4, ...
    pub fn preopen(&mut self, preopens: &[(String, String, bool)]) -> Result<(), String> {
        for (guest, host, writable) in preopens {
            let dir = open_ambient_dir(&PathBuf::from(host), ambient_authority())
                .map_err(|e| format!("cannot preopen {host} as {guest}: {e}"))?;
            self.insert(Entry::Dir {
                dir,
                writable: *writable,
                preopen: Some(guest.clone()),
            })
            .map_err(|_| "too many preopens".to_string())?;
        }
        Ok(())
    }

    /// Puts `entry` at the lowest free descriptor from 3 up.
    pub fn insert(&mut self, entry: Entry) -> Result<u32, i32> {
        if self.entries.len() >= MAX_OPEN {
            return Err(errno::NFILE);
        }
        let mut fd = 3;
        for &used in self.entries.keys() {
            if used != fd {
                break;
            }
            fd += 1;
        }
        self.entries.insert(fd, entry);
        Ok(fd)
    }

    pub fn get(&mut self, fd: u32) -> Option<&mut Entry> {
        self.entries.get_mut(&fd)
    }
}

/// The WASI errno for a host I/O error, as Wasmtime maps them: the OS's
/// error number where there is one, else by kind (a path leading out of
/// its directory is `PermissionDenied` from `cap-primitives`: `EPERM`).
pub fn errno_of(error: &io::Error) -> i32 {
    if let Some(code) = error.raw_os_error() {
        return match code {
            libc::EPERM => errno::PERM,
            libc::ENOENT => errno::NOENT,
            libc::EACCES => errno::ACCES,
            libc::EEXIST => errno::EXIST,
            libc::ENOTDIR => errno::NOTDIR,
            libc::EISDIR => errno::ISDIR,
            libc::EINVAL => errno::INVAL,
            libc::ENOSPC => errno::NOSPC,
            libc::ENOTEMPTY => errno::NOTEMPTY,
            libc::ELOOP => errno::LOOP,
            libc::ENAMETOOLONG => errno::NAMETOOLONG,
            libc::EXDEV => errno::XDEV,
            libc::EMLINK => errno::MLINK,
            libc::EBADF => errno::BADF,
            libc::ESPIPE => errno::SPIPE,
            libc::EROFS => errno::ROFS,
            libc::EOVERFLOW => errno::OVERFLOW,
            libc::EOPNOTSUPP => errno::NOTSUP,
            _ => errno::IO,
        };
    }
    match error.kind() {
        io::ErrorKind::NotFound => errno::NOENT,
        io::ErrorKind::PermissionDenied => errno::PERM,
        io::ErrorKind::AlreadyExists => errno::EXIST,
        io::ErrorKind::InvalidInput => errno::INVAL,
        _ => errno::IO,
    }
}

/// `params[index]` as an unsigned 32-bit number.
pub fn param(params: &[Value], index: usize) -> u64 {
    match params.get(index) {
        Some(Value::I32(v)) => *v as u32 as u64,
        _ => 0,
    }
}

/// `params[index]` as an unsigned 64-bit number.
pub fn param64(params: &[Value], index: usize) -> u64 {
    match params.get(index) {
        Some(Value::I64(v)) => *v as u64,
        _ => 0,
    }
}

pub fn done(results: &mut [Value], errno: i32) -> Result<(), Stop> {
    results[0] = Value::I32(errno);
    Ok(())
}

/// The longest path copied out of guest memory: longer is `ENAMETOOLONG`
/// (the host's own limit is 4 KiB), before a byte of it is copied.
pub const PATH_LIMIT: usize = 64 << 10;

/// The path of `len` bytes at `ptr`, paid for by the byte; `Ok(Err(ILSEQ))`
/// when it is not UTF-8, as preview 1's paths must be.
pub fn read_path(
    ctx: &mut dyn HostCtx,
    func: &str,
    ptr: u64,
    len: u64,
) -> Result<Result<PathBuf, i32>, Stop> {
    let range = guest_range(ctx, func, ptr, len)?;
    if range.len() > PATH_LIMIT {
        return Ok(Err(errno::NAMETOOLONG));
    }
    charge_bytes(ctx, range.len())?;
    let bytes = match ctx.memory_and_state() {
        (Some(data), _) => data[range].to_vec(),
        (None, _) => Vec::new(),
    };
    Ok(String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| errno::ILSEQ))
}

/// Writes a 32-bit number at `ptr` of guest memory.
pub fn write_u32(ctx: &mut dyn HostCtx, func: &str, ptr: u64, value: u32) -> Result<(), Stop> {
    write_guest(ctx, func, ptr, &value.to_le_bytes())
}

/// Writes a 64-bit number at `ptr` of guest memory.
pub fn write_u64(ctx: &mut dyn HostCtx, func: &str, ptr: u64, value: u64) -> Result<(), Stop> {
    write_guest(ctx, func, ptr, &value.to_le_bytes())
}
