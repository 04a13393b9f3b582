//! Scans over guest memory that would be slow in Elixir.

use rustler::Binary;

use crate::error::{MunitionError, MunitionResult};
use crate::OwnedBytes;

/// Decompresses one zstd frame, refusing before any work a frame that does not
/// declare its size or declares more than `max_size` bytes (no zstd bombs).
#[rustler::nif(schedule = "DirtyCpu")]
fn zstd_decompress(data: Binary, max_size: u64) -> MunitionResult<OwnedBytes> {
    decompress_bounded(data.as_slice(), max_size).map(OwnedBytes)
}

pub fn decompress_bounded(data: &[u8], max_size: u64) -> MunitionResult<Vec<u8>> {
    let declared = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(MunitionError::BadData(
                "zstd frame does not declare its size".into(),
            ))
        }
        Err(_) => return Err(MunitionError::BadData("not a zstd frame".into())),
    };
    if declared > max_size {
        return Err(MunitionError::BadData(format!(
            "zstd frame declares {declared} bytes, over the bound of {max_size}"
        )));
    }
    let bytes = zstd::bulk::decompress(data, declared as usize)
        .map_err(|e| MunitionError::BadData(format!("zstd: {e}")))?;
    if bytes.len() as u64 != declared {
        return Err(MunitionError::BadData(
            "zstd frame is shorter than it declares".into(),
        ));
    }
    Ok(bytes)
}

/// Compresses bytes into one zstd frame that declares its size.
#[rustler::nif(schedule = "DirtyCpu")]
fn zstd_compress(data: Binary) -> OwnedBytes {
    OwnedBytes(crate::capture::compress(data.as_slice()))
}

/// Every offset at which `pattern` occurs in `haystack` (overlapping matches
/// included), at most `limit` of them.
#[rustler::nif(schedule = "DirtyCpu")]
fn memory_search(haystack: Binary, pattern: Binary, limit: usize) -> Vec<u64> {
    find_all(haystack.as_slice(), pattern.as_slice(), limit)
}

pub fn find_all(haystack: &[u8], pattern: &[u8], limit: usize) -> Vec<u64> {
    if pattern.is_empty() {
        return vec![];
    }
    let finder = memchr::memmem::Finder::new(pattern);
    let mut offsets = Vec::new();
    let mut start = 0;
    while offsets.len() < limit {
        match finder.find(&haystack[start..]) {
            Some(found) => {
                offsets.push((start + found) as u64);
                start += found + 1;
            }
            None => break,
        }
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::{decompress_bounded, find_all};

    #[test]
    fn decompression_refuses_frames_over_the_bound() {
        let frame = crate::capture::compress(&vec![0u8; 1 << 20]);
        assert_eq!(decompress_bounded(&frame, 1 << 20).unwrap().len(), 1 << 20);
        assert!(decompress_bounded(&frame, (1 << 20) - 1).is_err());
        assert!(decompress_bounded(b"garbage", 100).is_err());
        assert!(decompress_bounded(&frame[..frame.len() / 2], 1 << 20).is_err());
    }

    #[test]
    fn finds_overlapping_matches_up_to_the_limit() {
        assert_eq!(find_all(b"aaaa", b"aa", 10), vec![0, 1, 2]);
        assert_eq!(find_all(b"aaaa", b"aa", 2), vec![0, 1]);
        assert_eq!(find_all(b"abc", b"", 10), Vec::<u64>::new());
        assert_eq!(find_all(b"abc", b"zz", 10), Vec::<u64>::new());
    }
}
