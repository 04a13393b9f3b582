//! The forensic analyser's NIFs: thin wrappers over `munition_core::memory`,
//! where the scans and the compression of captured memory live (and are
//! unit-tested without a VM).

use munition_core::memory;
use rustler::{Binary, Env, NewBinary, NifResult};

use crate::engine::capture::compress;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::OwnedBytes;

/// Decompresses one zstd frame, refusing before any work a frame that does not
/// declare its size or declares more than `max_size` bytes (no zstd bombs).
///
/// Decompresses straight into the Erlang binary: a 64 MiB memory is then
/// allocated and written once, not decompressed into a `Vec` and copied.
#[rustler::nif(schedule = "DirtyCpu")]
fn zstd_decompress<'a>(env: Env<'a>, data: Binary, max_size: u64) -> MunitionResult<Binary<'a>> {
    let declared =
        memory::declared_size(data.as_slice(), max_size).map_err(MunitionError::BadData)?;
    let size = usize::try_from(declared)
        .map_err(|_| MunitionError::BadData("zstd frame too large for this host".into()))?;
    let mut binary = NewBinary::new(env, size);
    memory::decompress_into(data.as_slice(), binary.as_mut_slice())
        .map_err(MunitionError::BadData)?;
    Ok(binary.into())
}

/// `{:ok, frame}` of `compress`, or `{:error, {:runtime_failure, message}}`.
#[rustler::nif(schedule = "DirtyCpu")]
fn zstd_compress(data: Binary) -> MunitionResult<OwnedBytes> {
    compress(data.as_slice())
}

/// The content size a zstd frame declares, read from its header without
/// decompressing anything, so a dump reader can refuse a frame before it
/// allocates for it.
#[rustler::nif]
fn zstd_frame_size(data: Binary) -> MunitionResult<u64> {
    memory::declared_size(data.as_slice(), u64::MAX).map_err(MunitionError::BadData)
}

/// Every offset at which `pattern` occurs in `haystack` (overlapping matches
/// included), at most `limit` of them.
#[rustler::nif(schedule = "DirtyCpu")]
fn memory_search(haystack: Binary, pattern: Binary, limit: usize) -> Vec<u64> {
    memory::find_all(haystack.as_slice(), pattern.as_slice(), limit)
}

/// The non-zero extents of `haystack` as `{start, length}`, merging extents
/// separated by fewer than `min_gap` zero bytes, at most `limit` of them.
#[rustler::nif(schedule = "DirtyCpu")]
fn memory_regions(haystack: Binary, min_gap: u64, limit: usize) -> Vec<(u64, u64)> {
    memory::regions(haystack.as_slice(), min_gap as usize, limit)
}

/// The byte ranges `{start, length}` where `a` and `b` differ (see
/// `munition_core::memory::diff`).
#[rustler::nif(schedule = "DirtyCpu")]
fn memory_diff(a: Binary, b: Binary, min_gap: u64, limit: usize) -> Vec<(u64, u64)> {
    memory::diff(a.as_slice(), b.as_slice(), min_gap as usize, limit)
}

/// Printable runs of at least `min_len` characters, like the `strings` tool,
/// as `{offset, bytes}`, at most `limit` of them. Printable is ASCII 0x20-0x7E
/// and tab; with `utf8` also every well-formed multi-byte UTF-8 sequence
/// (which never encodes a C0 or C1 control). Runs are cut at `max_len` bytes.
#[rustler::nif(schedule = "DirtyCpu")]
fn memory_strings<'a>(
    haystack: Binary<'a>,
    min_len: usize,
    max_len: usize,
    utf8: bool,
    limit: usize,
) -> NifResult<Vec<(u64, Binary<'a>)>> {
    // Sub-binaries of the memory: no copy per string, which matters when
    // noise-like memory holds hundreds of thousands of short runs. Every run
    // lies inside the haystack, so making one cannot fail; if it did, the
    // call raises rather than leave a string out.
    memory::strings(haystack.as_slice(), min_len, max_len, utf8, limit)
        .into_iter()
        .map(|(start, end)| Ok((start as u64, haystack.make_subbinary(start, end - start)?)))
        .collect()
}
