//! The files of the persistent cache of compiled code (`config :munition,
//! compile_cache_dir:`), without an engine: bytes stored under a key, and
//! handed back only when they are this user's own and exactly what was
//! stored under that key.
//!
//! An engine's serialised code is loaded with an `unsafe` call (Wasmtime's
//! `Module::deserialize`): bytes it did not produce are undefined
//! behaviour, arbitrary code execution at worst. So a file is loaded only
//! when
//!
//! * the directory and the file are owned by the effective uid and neither
//!   is writable by group or others (another local user cannot have put or
//!   changed them), the file is a regular file (no symbolic link, opened
//!   relative to the directory checked, so neither can be swapped between
//!   the check and the read), and
//! * its trailer has the magic, the format, the key asked for (a file
//!   copied or renamed to another key's name is refused), the payload's
//!   exact length and its BLAKE3 digest (a flipped byte, a truncated or
//!   torn file is refused).
//!
//! What passes is handed back as the open file itself (`Payload`), not a
//! copy: the engine maps it (Wasmtime's `deserialize_open_file`, or
//! `deserialize_file` of the descriptor's `/proc/self/fd` path, which is
//! the same file whatever the directory holds by then), so a load costs
//! neither reading tens of MB into fresh memory nor copying them again
//! into the engine's (25 and 32 ms of the 86 ms that loading the
//! JavaScript plugin's 43 MB took in format 2, which read the file whole).
//! The digest is computed reading through a small buffer.
//!
//! Whatever fails is a `Load::Rejected` with its reason, never a panic, and
//! the caller compiles afresh and stores over it. What this cannot stop: a
//! process of the same uid can write a file that passes every check (it
//! could equally write the NIF or attach a debugger to the node), so the
//! cache directory must be as private as the node's own code.
//!
//! Files are written owner-only (0600, in a directory created 0700) to a
//! temporary name, then renamed over the final one, so a reader sees a
//! whole file or none, and nodes sharing a directory never see each
//! other's half-written files. Nothing is synced: a file torn by a crash
//! fails its digest and is compiled again.
//!
//! ## The file
//!
//! ```text
//! offset  size  field
//!      0     n  the payload (the engine's serialised code, as it wrote it)
//!      n     8  magic "MUNCODE\0"
//!    n+8     4  format version, little-endian (3)
//!   n+12    32  the key
//!   n+44     8  payload length n, little-endian
//!   n+52    32  BLAKE3 of the payload
//! ```
//!
//! The checks are a trailer, not a header (format 2), so that the file
//! starts with the engine's own bytes and can be mapped as it is: an ELF
//! object, which Wasmtime parses by its own offsets, ignoring what follows.
//!
//! named `<hex of the key>.code`. The key (`KeyHasher`) is the caller's to
//! compose: everything the payload depends on (the engine, its version and
//! configuration, the kind of artifact, the content hash of what was
//! compiled).
//!
//! The payload's digest is BLAKE3 (256 bits, as collision-resistant as
//! SHA-256), not SHA-256 (format 1): it is computed over every byte of
//! every load, tens of MB for a component's code, and on this project's
//! machine (SHA extensions, AVX-512) BLAKE3 took 10 ms for the 43 MB of the
//! JavaScript plugin's code where SHA-256 took 24, a quarter of the load.
//! It detects corruption; it is no signature (see above: whoever can write
//! the file can write its digest).

use std::ffi::CString;
use std::fmt;
use std::fs::{DirBuilder, File, Metadata};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 8] = *b"MUNCODE\0";
/// The layout of the trailer; a file of another format is refused.
pub const FORMAT: u32 = 3;
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 8 + 32;

/// The buffer the digest is computed through.
const DIGEST_CHUNK: usize = 1 << 20;

/// What a file is stored under: a SHA-256 of everything its payload
/// depends on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Key([u8; 32]);

impl Key {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The name of the key's file in the cache directory.
    pub fn file_name(&self) -> String {
        format!("{}.code", self.hex())
    }
}

/// Builds a `Key` from parts, each framed by its length so that no two
/// lists of parts give the same key. Also a `std::hash::Hasher`, so that a
/// value that is only `Hash` (Wasmtime's `precompile_compatibility_hash`)
/// can be a part: `hashed` feeds it to a hasher of its own and adds the
/// result. Unlike `DefaultHasher`, whose algorithm may change between Rust
/// releases, SHA-256 of the same writes is the same in every build.
#[derive(Clone)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    /// A hasher for keys of `domain` (what kind of thing is keyed): keys of
    /// two domains never meet.
    pub fn new(domain: &str) -> Self {
        let mut hasher = KeyHasher(Sha256::new());
        hasher.part(domain);
        hasher
    }

    pub fn part(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds `value` as one part: whatever its `Hash` implementation writes.
    pub fn hashed(&mut self, value: &impl Hash) -> &mut Self {
        let mut inner = KeyHasher(Sha256::new());
        value.hash(&mut inner);
        let digest = inner.0.finalize();
        self.part(digest)
    }

    pub fn key(&self) -> Key {
        Key(self.0.clone().finalize().into())
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Only for the trait: keys come from `key`.
    fn finish(&self) -> u64 {
        let key = self.key();
        u64::from_le_bytes(key.0[..8].try_into().unwrap_or_default())
    }
}

/// Which of the two a check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Directory,
    File,
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            What::Directory => "the directory",
            What::File => "the file",
        })
    }
}

/// Why a file was not loaded, or not stored.
#[derive(Debug)]
pub enum Problem {
    /// Owned by another uid than the effective one.
    NotOwned { what: What, uid: u32, euid: u32 },
    /// Writable by group or others.
    Writable { what: What, mode: u32 },
    /// Not a regular file (a symbolic link, a FIFO, a directory...).
    NotRegular,
    /// Not our magic, another format, or the header of another key.
    Header(&'static str),
    /// The file's length is not the trailer's (truncated or extended).
    Length { expected: u64, actual: u64 },
    /// The payload's BLAKE3 digest is not the header's.
    Digest,
    /// The file system said no.
    Io(io::Error),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotOwned { what, uid, euid } => write!(
                f,
                "{what} is owned by uid {uid}, not by this process's effective uid {euid}"
            ),
            Problem::Writable { what, mode } => write!(
                f,
                "{what} is writable by group or others (mode {:04o})",
                mode & 0o7777
            ),
            Problem::NotRegular => f.write_str("the file is not a regular file"),
            Problem::Header(why) => write!(f, "the header {why}"),
            Problem::Length { expected, actual } => write!(
                f,
                "the file has {actual} bytes, its trailer says {expected} (truncated or extended)"
            ),
            Problem::Digest => {
                f.write_str("the payload's BLAKE3 digest is not the header's (corrupt)")
            }
            Problem::Io(error) => write!(f, "{error}"),
        }
    }
}

impl From<io::Error> for Problem {
    fn from(error: io::Error) -> Self {
        Problem::Io(error)
    }
}

/// What `load` found.
#[derive(Debug)]
pub enum Load {
    Hit(Payload),
    /// No directory or no file for the key.
    Miss,
    Rejected(Problem),
}

/// A file that passed every check, open: its first `len` bytes are the
/// payload, followed by the trailer.
#[derive(Debug)]
pub struct Payload {
    file: File,
    len: u64,
}

impl Payload {
    /// The open file, for an engine that maps it (Wasmtime's
    /// `Module::deserialize_open_file`).
    pub fn into_file(self) -> File {
        self.file
    }

    /// A path that opens this very file (the descriptor's, under
    /// `/proc/self/fd`), for an engine that takes a path (Wasmtime's
    /// `Component::deserialize_file`): whatever the directory holds by
    /// then, the file checked is the file loaded. Valid while `self` is.
    pub fn path(&self) -> std::path::PathBuf {
        // Linux's procfs reopens the descriptor's file; elsewhere (BSDs,
        // macOS) `/dev/fd` does.
        let fds = if cfg!(target_os = "linux") {
            "/proc/self/fd"
        } else {
            "/dev/fd"
        };
        std::path::PathBuf::from(format!("{fds}/{}", self.file.as_raw_fd()))
    }

    /// The payload's bytes, read.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(self.len as usize);
        (&self.file).take(self.len).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The checks on the directory and on the file: owned by the effective
/// uid, not writable by group or others.
fn private(metadata: &Metadata, what: What) -> Result<(), Problem> {
    let euid = euid();
    if metadata.uid() != euid {
        return Err(Problem::NotOwned {
            what,
            uid: metadata.uid(),
            euid,
        });
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(Problem::Writable {
            what,
            mode: metadata.mode(),
        });
    }
    Ok(())
}

/// The directory, opened (symbolic links to it followed: it is the
/// directory itself that is checked) and checked.
fn open_dir(dir: &Path) -> Result<File, Problem> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Problem::Io(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let dir = owned(fd)?;
    private(&dir.metadata()?, What::Directory)?;
    Ok(dir)
}

/// Opens `name` in `dir`, never following a symbolic link.
fn open_at(dir: &File, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string,
    // both outliving the call; the mode is read only with `O_CREAT`.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by open(at), owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn trailer(key: &Key, payload: &[u8]) -> [u8; TRAILER_LEN] {
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[0..8].copy_from_slice(&MAGIC);
    trailer[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    trailer[12..44].copy_from_slice(key.bytes());
    trailer[44..52].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    trailer[52..84].copy_from_slice(blake3::hash(payload).as_bytes());
    trailer
}

/// The file stored under `key` in `dir`, open, if `dir` and the file pass
/// every check (see the moduledoc).
pub fn load(dir: &Path, key: &Key) -> Load {
    match read(dir, key) {
        Ok(Some(payload)) => Load::Hit(payload),
        Ok(None) => Load::Miss,
        Err(problem) => Load::Rejected(problem),
    }
}

fn read(dir: &Path, key: &Key) -> Result<Option<Payload>, Problem> {
    let dir = match open_dir(dir) {
        Ok(dir) => dir,
        Err(Problem::Io(error)) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(problem) => return Err(problem),
    };
    // Non-blocking: a FIFO in its place cannot hold the thread.
    let file = match open_at(&dir, &key.file_name(), libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Err(Problem::NotRegular),
        Err(error) => return Err(error.into()),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Problem::NotRegular);
    }
    private(&metadata, What::File)?;

    let actual = metadata.len();
    if actual < TRAILER_LEN as u64 {
        return Err(Problem::Length {
            expected: TRAILER_LEN as u64,
            actual,
        });
    }
    let mut trailer = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut trailer, actual - TRAILER_LEN as u64)?;
    if trailer[0..8] != MAGIC {
        return Err(Problem::Header(
            "has not the magic of a Munition cache file",
        ));
    }
    if trailer[8..12] != FORMAT.to_le_bytes() {
        return Err(Problem::Header("is of another format version"));
    }
    if trailer[12..44] != *key.bytes() {
        return Err(Problem::Header("is for another key"));
    }
    let length = u64::from_le_bytes(trailer[44..52].try_into().unwrap_or_default());
    let expected = length.saturating_add(TRAILER_LEN as u64);
    if expected != actual {
        return Err(Problem::Length { expected, actual });
    }
    if digest(&file, length)?.as_bytes()[..] != trailer[52..84] {
        return Err(Problem::Digest);
    }
    Ok(Some(Payload { file, len: length }))
}

/// The BLAKE3 of the file's first `length` bytes, read through a buffer
/// of `DIGEST_CHUNK`; a file that shrank meanwhile is a `Length` problem.
fn digest(file: &File, length: u64) -> Result<blake3::Hash, Problem> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; DIGEST_CHUNK.min(length as usize)];
    let mut at = 0u64;
    while at < length {
        let want = buffer.len().min((length - at) as usize);
        let read = file.read_at(&mut buffer[..want], at)?;
        if read == 0 {
            return Err(Problem::Length {
                expected: length.saturating_add(TRAILER_LEN as u64),
                actual: at,
            });
        }
        hasher.update(&buffer[..read]);
        at += read as u64;
    }
    Ok(hasher.finalize())
}

/// Suffixes of temporary files, unique within the process (the pid makes
/// them unique between the processes sharing a directory).
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// Stores `payload` under `key` in `dir`, creating `dir` (0700) when
/// missing: to a temporary file (0600), then renamed over the key's file.
/// A directory that fails the checks is not written to (its files would be
/// refused anyway).
pub fn store(dir: &Path, key: &Key, payload: &[u8]) -> Result<(), Problem> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let dir = open_dir(dir)?;
    let name = key.file_name();
    let temporary = format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMPORARY.fetch_add(1, Ordering::Relaxed)
    );
    let mut file = open_at(
        &dir,
        &temporary,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )?;
    let written = file
        .write_all(payload)
        .and_then(|()| file.write_all(&trailer(key, payload)))
        .and_then(|()| rename_at(&dir, &temporary, &name));
    if let Err(error) = written {
        let _ = unlink_at(&dir, &temporary);
        return Err(error.into());
    }
    Ok(())
}

fn rename_at(dir: &File, from: &str, to: &str) -> io::Result<()> {
    let from = CString::new(from).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let to = CString::new(to).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an open descriptor and two NUL-terminated strings, all
    // outliving the call.
    let result =
        unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn unlink_at(dir: &File, name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an open descriptor and a NUL-terminated string, both outliving
    // the call.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// A fresh directory under the system's temporary one, removed when
    /// dropped. Its path does not exist yet: `store` creates it.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let root = std::env::temp_dir().join(format!(
                "munition-code-cache-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            Scratch(root)
        }

        fn dir(&self) -> PathBuf {
            self.0.join("cache")
        }

        fn file(&self, key: &Key) -> PathBuf {
            self.dir().join(key.file_name())
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn key(name: &str) -> Key {
        KeyHasher::new("test").part(name).key()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn hit(load: Load) -> Vec<u8> {
        match load {
            Load::Hit(payload) => payload.read().expect("read the payload"),
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    fn rejected(load: Load) -> Problem {
        match load {
            Load::Rejected(problem) => problem,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn keys_frame_their_parts_and_depend_on_every_one() {
        let ab_c = KeyHasher::new("d").part("ab").part("c").key();
        let a_bc = KeyHasher::new("d").part("a").part("bc").key();
        assert_ne!(ab_c, a_bc);
        assert_ne!(
            KeyHasher::new("d").part("x").key(),
            KeyHasher::new("e").part("x").key()
        );
        assert_eq!(ab_c, KeyHasher::new("d").part("ab").part("c").key());
        assert_eq!(ab_c.hex().len(), 64);
        assert_eq!(ab_c.file_name(), format!("{}.code", ab_c.hex()));
    }

    #[test]
    fn a_hashed_part_is_what_its_hash_implementation_writes() {
        let config = ("x86_64", vec![("opt_level", "speed")], 42u64);
        let one = KeyHasher::new("d").hashed(&config).key();
        assert_eq!(one, KeyHasher::new("d").hashed(&config.clone()).key());
        let other = ("x86_64", vec![("opt_level", "none")], 42u64);
        assert_ne!(one, KeyHasher::new("d").hashed(&other).key());
    }

    #[test]
    fn a_missing_directory_or_file_is_a_miss() {
        let scratch = Scratch::new("missing");
        assert!(matches!(load(&scratch.dir(), &key("a")), Load::Miss));
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        assert!(matches!(load(&scratch.dir(), &key("b")), Load::Miss));
    }

    #[test]
    fn a_stored_payload_comes_back_owner_only() {
        let scratch = Scratch::new("round-trip");
        let payload: Vec<u8> = (0..100_000u32).map(|n| n as u8).collect();
        store(&scratch.dir(), &key("a"), &payload).expect("store");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), payload);
        assert_eq!(mode(&scratch.dir()), 0o700);
        assert_eq!(mode(&scratch.file(&key("a"))), 0o600);
        let file = fs::read(scratch.file(&key("a"))).expect("read");
        assert_eq!(file.len(), payload.len() + TRAILER_LEN);
        assert_eq!(file[..payload.len()], payload[..]);
        let trailer = &file[payload.len()..];
        assert_eq!(&trailer[0..8], b"MUNCODE\0");
        assert_eq!(trailer[8..12], 3u32.to_le_bytes());
        assert_eq!(&trailer[12..44], key("a").bytes());
        assert_eq!(trailer[44..52], (payload.len() as u64).to_le_bytes());
        assert_eq!(&trailer[52..84], blake3::hash(&payload).as_bytes());
        // No temporary file is left.
        let names: Vec<_> = fs::read_dir(scratch.dir())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(key("a").file_name())]);
    }

    #[test]
    fn the_path_of_a_payload_opens_the_file_checked_whatever_replaced_it() {
        let scratch = Scratch::new("path");
        store(&scratch.dir(), &key("a"), b"checked").expect("store");
        let Load::Hit(payload) = load(&scratch.dir(), &key("a")) else {
            panic!("expected a hit");
        };
        store(&scratch.dir(), &key("a"), b"replaced").expect("store");
        let file = fs::read(payload.path()).expect("read through the path");
        assert_eq!(&file[..7], b"checked");
        assert_eq!(
            fs::read(scratch.file(&key("a"))).expect("read")[..8],
            *b"replaced"
        );
    }

    #[test]
    fn an_empty_payload_round_trips() {
        let scratch = Scratch::new("empty");
        store(&scratch.dir(), &key("a"), b"").expect("store");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), b"");
    }

    #[test]
    fn storing_again_replaces_the_file() {
        let scratch = Scratch::new("replace");
        store(&scratch.dir(), &key("a"), b"old").expect("store");
        store(&scratch.dir(), &key("a"), b"new").expect("store");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), b"new");
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let scratch = Scratch::new("flip");
        let payload = b"compiled code, as the engine wrote it".to_vec();
        store(&scratch.dir(), &key("a"), &payload).expect("store");
        let path = scratch.file(&key("a"));
        let good = fs::read(&path).expect("read");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&path, &bad).expect("write");
            let problem = rejected(load(&scratch.dir(), &key("a")));
            let expected = match at.checked_sub(payload.len()) {
                // The payload, or the digest in the trailer.
                None | Some(52..) => matches!(problem, Problem::Digest),
                // The magic, the format, the key.
                Some(0..=43) => matches!(problem, Problem::Header(_)),
                Some(44..=51) => matches!(problem, Problem::Length { .. }),
            };
            assert!(expected, "byte {at}: {problem}");
        }
        fs::write(&path, &good).expect("write");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), payload);
    }

    #[test]
    fn a_truncated_or_extended_file_is_rejected() {
        let scratch = Scratch::new("truncate");
        store(&scratch.dir(), &key("a"), &[7u8; 1000]).expect("store");
        let path = scratch.file(&key("a"));
        let good = fs::read(&path).expect("read");
        // Shorter than a trailer: its length says so. Longer: the bytes where
        // the trailer should end the file are not one.
        for len in [0, 1, TRAILER_LEN - 1] {
            fs::write(&path, &good[..len]).expect("write");
            let problem = rejected(load(&scratch.dir(), &key("a")));
            assert!(
                matches!(problem, Problem::Length { .. }),
                "{len}: {problem}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        for bad in [&good[..TRAILER_LEN], &good[..good.len() - 1], &longer[..]] {
            fs::write(&path, bad).expect("write");
            let problem = rejected(load(&scratch.dir(), &key("a")));
            assert!(
                matches!(problem, Problem::Header(_) | Problem::Length { .. }),
                "{}: {problem}",
                bad.len()
            );
        }
        // A trailer copied onto a shorter payload: its length is not the file's.
        let mut shorter = good[..10].to_vec();
        shorter.extend_from_slice(&good[good.len() - TRAILER_LEN..]);
        fs::write(&path, &shorter).expect("write");
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(matches!(problem, Problem::Length { .. }), "{problem}");
    }

    #[test]
    fn another_keys_file_under_this_keys_name_is_rejected() {
        let scratch = Scratch::new("other-key");
        store(&scratch.dir(), &key("a"), b"code of a").expect("store");
        fs::rename(scratch.file(&key("a")), scratch.file(&key("b"))).expect("rename");
        let problem = rejected(load(&scratch.dir(), &key("b")));
        assert!(
            matches!(problem, Problem::Header("is for another key")),
            "{problem}"
        );
    }

    #[test]
    fn a_file_writable_by_group_or_others_is_rejected() {
        let scratch = Scratch::new("file-mode");
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        let path = scratch.file(&key("a"));
        for mode in [0o620, 0o602, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let problem = rejected(load(&scratch.dir(), &key("a")));
            assert!(
                matches!(
                    problem,
                    Problem::Writable {
                        what: What::File,
                        ..
                    }
                ),
                "{mode:o}: {problem}"
            );
        }
        // Readable by others is not a reason: only who can write matters.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), b"code");
    }

    #[test]
    fn a_directory_writable_by_group_or_others_is_rejected_and_not_written() {
        let scratch = Scratch::new("dir-mode");
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        fs::set_permissions(scratch.dir(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(
            matches!(
                problem,
                Problem::Writable {
                    what: What::Directory,
                    ..
                }
            ),
            "{problem}"
        );
        assert!(store(&scratch.dir(), &key("b"), b"more").is_err());
        assert!(!scratch.file(&key("b")).exists());
    }

    #[test]
    fn a_symbolic_link_is_rejected_even_to_a_good_file() {
        let scratch = Scratch::new("symlink");
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        let elsewhere = scratch.0.join("elsewhere.code");
        fs::rename(scratch.file(&key("a")), &elsewhere).expect("rename");
        std::os::unix::fs::symlink(&elsewhere, scratch.file(&key("a"))).expect("symlink");
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(matches!(problem, Problem::NotRegular), "{problem}");
    }

    #[test]
    fn a_directory_in_the_files_place_is_rejected() {
        let scratch = Scratch::new("not-a-file");
        store(&scratch.dir(), &key("b"), b"code").expect("store");
        fs::create_dir(scratch.file(&key("a"))).expect("mkdir");
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(matches!(problem, Problem::NotRegular), "{problem}");
    }

    #[test]
    fn a_path_that_is_a_file_is_rejected_not_a_panic() {
        let scratch = Scratch::new("dir-is-file");
        fs::create_dir_all(&scratch.0).expect("mkdir");
        fs::write(scratch.dir(), b"not a directory").expect("write");
        assert!(matches!(load(&scratch.dir(), &key("a")), Load::Rejected(_)));
        assert!(store(&scratch.dir(), &key("a"), b"code").is_err());
    }

    /// Only root can give a file away; elsewhere the check is the same
    /// comparison, proved by the Elixir tests when they run as root.
    #[test]
    fn a_file_or_directory_of_another_owner_is_rejected() {
        if euid() != 0 {
            return;
        }
        let scratch = Scratch::new("owner");
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        let chown = |path: &Path, uid: u32| {
            let path = CString::new(path.as_os_str().as_bytes()).expect("path");
            // SAFETY: a NUL-terminated path; gid -1 leaves the group.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, u32::MAX) }, 0);
        };
        chown(&scratch.file(&key("a")), 65534);
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(
            matches!(
                problem,
                Problem::NotOwned {
                    what: What::File,
                    uid: 65534,
                    ..
                }
            ),
            "{problem}"
        );
        // Storing again replaces it with a file of our own.
        store(&scratch.dir(), &key("a"), b"code").expect("store");
        assert_eq!(hit(load(&scratch.dir(), &key("a"))), b"code");

        chown(&scratch.dir(), 65534);
        let problem = rejected(load(&scratch.dir(), &key("a")));
        assert!(
            matches!(
                problem,
                Problem::NotOwned {
                    what: What::Directory,
                    ..
                }
            ),
            "{problem}"
        );
    }

    #[test]
    fn problems_say_what_and_why() {
        let problem = Problem::Writable {
            what: What::Directory,
            mode: 0o40775,
        };
        assert_eq!(
            problem.to_string(),
            "the directory is writable by group or others (mode 0775)"
        );
        let problem = Problem::NotOwned {
            what: What::File,
            uid: 65534,
            euid: 0,
        };
        assert_eq!(
            problem.to_string(),
            "the file is owned by uid 65534, not by this process's effective uid 0"
        );
    }
}
