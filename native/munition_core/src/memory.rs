//! Scans and compression of guest memory: the work behind the forensic
//! analyser, kept free of the VM so it can be unit-tested with `cargo test`.

/// zstd level for memory snapshots: level 1 already shrinks mostly-zero
/// memories by orders of magnitude and keeps a 64 MiB capture fast.
const ZSTD_LEVEL: i32 = 1;

/// Compresses bytes into one zstd frame that declares its size.
pub fn compress(bytes: &[u8]) -> Vec<u8> {
    // Compressing an in-memory slice cannot fail short of allocation failure.
    zstd::bulk::compress(bytes, ZSTD_LEVEL).unwrap_or_default()
}

/// The content size a zstd frame declares in its header, refused when it
/// declares none or more than `max_size`: read before any decompression, so a
/// hostile frame cannot make the host allocate (no zstd bombs).
pub fn declared_size(data: &[u8], max_size: u64) -> Result<u64, String> {
    let declared = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) => size,
        Ok(None) => return Err("zstd frame does not declare its size".into()),
        Err(_) => return Err("not a zstd frame".into()),
    };
    if declared > max_size {
        return Err(format!(
            "zstd frame declares {declared} bytes, over the bound of {max_size}"
        ));
    }
    Ok(declared)
}

/// Decompresses one frame into `target`, which must be exactly the size the
/// frame declares (see `declared_size`).
pub fn decompress_into(data: &[u8], target: &mut [u8]) -> Result<(), String> {
    let written = zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(data, target))
        .map_err(|e| format!("zstd: {e}"))?;
    if written != target.len() {
        return Err("zstd frame is shorter than it declares".into());
    }
    Ok(())
}

/// Decompresses one frame of at most `max_size` bytes.
pub fn decompress_bounded(data: &[u8], max_size: u64) -> Result<Vec<u8>, String> {
    let declared = declared_size(data, max_size)?;
    let size = usize::try_from(declared).map_err(|_| "zstd frame too large for this host")?;
    let mut bytes = vec![0u8; size];
    decompress_into(data, &mut bytes)?;
    Ok(bytes)
}

/// Every offset at which `pattern` occurs in `haystack` (overlapping matches
/// included), at most `limit` of them.
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

/// Size of the blocks the scans test for all-zero at once: guest memories are
/// mostly zero pages, and a whole-block OR test lets the compiler vectorise
/// the common case instead of branching on every byte.
const BLOCK: usize = 64;

fn is_zero(block: &[u8]) -> bool {
    block.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// The non-zero extents of `bytes` as `(start, length)`, merging extents
/// separated by fewer than `min_gap` zero bytes, at most `limit` of them.
pub fn regions(bytes: &[u8], min_gap: usize, limit: usize) -> Vec<(u64, u64)> {
    let min_gap = min_gap.max(1);
    let mut out: Vec<(u64, u64)> = Vec::new();
    // Current extent as [start, end) of non-zero bytes (end = one past the last non-zero).
    let mut current: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < bytes.len() {
        if i % BLOCK == 0 && i + BLOCK <= bytes.len() && is_zero(&bytes[i..i + BLOCK]) {
            i += BLOCK;
            continue;
        }
        if bytes[i] != 0 {
            current = match current {
                Some((start, end)) if i - end < min_gap => Some((start, i + 1)),
                Some((start, end)) => {
                    out.push((start as u64, (end - start) as u64));
                    if out.len() >= limit {
                        return out;
                    }
                    Some((i, i + 1))
                }
                None => Some((i, i + 1)),
            };
        }
        i += 1;
    }
    if let Some((start, end)) = current {
        if out.len() < limit {
            out.push((start as u64, (end - start) as u64));
        }
    }
    out
}

/// The byte ranges `(start, length)` where `a` and `b` differ, merging ranges
/// separated by fewer than `min_gap` equal bytes, at most `limit` of them. The
/// tail of the longer input counts as different.
pub fn diff(a: &[u8], b: &[u8], min_gap: usize, limit: usize) -> Vec<(u64, u64)> {
    let min_gap = min_gap.max(1);
    let common = a.len().min(b.len());
    let longest = a.len().max(b.len());
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let push = |out: &mut Vec<(u64, u64)>, (start, end): (usize, usize)| {
        out.push((start as u64, (end - start) as u64));
    };
    let mut i = 0;
    while i < common {
        if i % BLOCK == 0 && i + BLOCK <= common && a[i..i + BLOCK] == b[i..i + BLOCK] {
            i += BLOCK;
            continue;
        }
        if a[i] != b[i] {
            current = match current {
                Some((start, end)) if i - end < min_gap => Some((start, i + 1)),
                Some(range) => {
                    push(&mut out, range);
                    if out.len() >= limit {
                        return out;
                    }
                    Some((i, i + 1))
                }
                None => Some((i, i + 1)),
            };
        }
        i += 1;
    }
    if longest > common {
        current = match current {
            Some((start, end)) if common - end < min_gap => Some((start, longest)),
            Some(range) => {
                push(&mut out, range);
                Some((common, longest))
            }
            None => Some((common, longest)),
        };
    }
    if let Some(range) = current {
        if out.len() < limit {
            push(&mut out, range);
        }
    }
    out.truncate(limit);
    out
}

/// Length in bytes of the printable character starting `bytes`, or 0.
///
/// Validates UTF-8 by hand (the RFC 3629 table of well-formed sequences)
/// rather than through `str::from_utf8`: this runs once per byte of memory,
/// and noise-like memory makes most bytes candidates.
fn printable_char(bytes: &[u8], utf8: bool) -> usize {
    let lead = bytes[0];
    if lead == b'\t' || (0x20..=0x7E).contains(&lead) {
        return 1;
    }
    if !utf8 {
        return 0;
    }
    let cont = |i: usize, lo: u8, hi: u8| bytes.get(i).is_some_and(|b| (lo..=hi).contains(b));
    let tail = |from: usize, to: usize| (from..to).all(|i| cont(i, 0x80, 0xBF));
    let ok = match lead {
        // U+0080..U+009F are the C1 controls: not printable.
        0xC2 => cont(1, 0xA0, 0xBF),
        0xC3..=0xDF => cont(1, 0x80, 0xBF),
        0xE0 => cont(1, 0xA0, 0xBF) && tail(2, 3),
        0xED => cont(1, 0x80, 0x9F) && tail(2, 3),
        0xE1..=0xEC | 0xEE..=0xEF => tail(1, 3),
        0xF0 => cont(1, 0x90, 0xBF) && tail(2, 4),
        0xF1..=0xF3 => tail(1, 4),
        0xF4 => cont(1, 0x80, 0x8F) && tail(2, 4),
        _ => return 0,
    };
    if !ok {
        return 0;
    }
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Printable runs of at least `min_len` characters, like the `strings` tool,
/// as `(start, end)` byte offsets, at most `limit` of them. Printable is ASCII 0x20-0x7E
/// and tab; with `utf8` also every well-formed multi-byte UTF-8 sequence
/// (which never encodes a C0 or C1 control). Runs are cut at `max_len` bytes.
pub fn strings(
    bytes: &[u8],
    min_len: usize,
    max_len: usize,
    utf8: bool,
    limit: usize,
) -> Vec<(usize, usize)> {
    let min_len = min_len.max(1);
    let max_len = max_len.max(min_len);
    let mut out = Vec::new();
    // Run start and its length in characters.
    let mut run: Option<(usize, usize)> = None;
    let mut i = 0;
    let flush = |out: &mut Vec<(usize, usize)>, run: Option<(usize, usize)>, end: usize| {
        if let Some((start, chars)) = run {
            if chars >= min_len {
                out.push((start, end));
            }
        }
    };
    while i < bytes.len() && out.len() < limit {
        if run.is_none()
            && i % BLOCK == 0
            && i + BLOCK <= bytes.len()
            && is_zero(&bytes[i..i + BLOCK])
        {
            i += BLOCK;
            continue;
        }
        let width = printable_char(&bytes[i..], utf8);
        if width == 0 {
            flush(&mut out, run.take(), i);
            i += 1;
            continue;
        }
        run = match run {
            Some((start, _)) if i + width - start > max_len => {
                flush(&mut out, Some((start, min_len)), i);
                Some((i, 1))
            }
            Some((start, chars)) => Some((start, chars + 1)),
            None => Some((i, 1)),
        };
        i += width;
    }
    if out.len() < limit {
        flush(&mut out, run, i.min(bytes.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{compress, decompress_bounded, diff, find_all, regions, strings};

    #[test]
    fn decompression_refuses_frames_over_the_bound() {
        let frame = compress(&vec![0u8; 1 << 20]);
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

    #[test]
    fn regions_are_the_non_zero_extents_with_small_gaps_merged() {
        let mut mem = vec![0u8; 1 << 16];
        mem[100..106].copy_from_slice(b"SECRET");
        mem[110] = 1;
        mem[5000] = 7;
        mem[(1 << 16) - 1] = 9;
        assert_eq!(
            regions(&mem, 1, 100),
            vec![(100, 6), (110, 1), (5000, 1), (65535, 1)]
        );
        assert_eq!(
            regions(&mem, 8, 100),
            vec![(100, 11), (5000, 1), (65535, 1)]
        );
        assert_eq!(regions(&mem, 8, 2), vec![(100, 11), (5000, 1)]);
        assert_eq!(regions(&[0u8; 1000], 1, 10), vec![]);
        assert_eq!(regions(&[1u8; 3], 1, 10), vec![(0, 3)]);
    }

    #[test]
    fn diff_reports_changed_ranges_and_the_longer_tail() {
        let a = vec![0u8; 4096];
        let mut b = a.clone();
        b[10] = 1;
        b[12] = 1;
        b[3000..3004].copy_from_slice(b"abcd");
        assert_eq!(diff(&a, &b, 1, 10), vec![(10, 1), (12, 1), (3000, 4)]);
        assert_eq!(diff(&a, &b, 4, 10), vec![(10, 3), (3000, 4)]);
        assert_eq!(diff(&a, &a, 1, 10), vec![]);
        let mut longer = a.clone();
        longer.extend_from_slice(&[0u8; 10]);
        assert_eq!(diff(&a, &longer, 1, 10), vec![(4096, 10)]);
        assert_eq!(diff(&a, &b, 1, 1), vec![(10, 1)]);
    }

    #[test]
    fn printable_char_agrees_with_std_utf8_decoding() {
        let expected = |bytes: &[u8]| -> usize {
            for width in 1..=bytes.len().min(4) {
                if let Ok(s) = std::str::from_utf8(&bytes[..width]) {
                    let c = s.chars().next().unwrap_or('\0');
                    return if c == '\t' || !c.is_control() {
                        width
                    } else {
                        0
                    };
                }
            }
            0
        };
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for a in 0..=255u8 {
            for b in [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                for c in [0x80, 0xBF, 0x41] {
                    samples.push(vec![a, b, c, 0x80]);
                    samples.push(vec![a, b]);
                }
            }
        }
        for sample in samples {
            assert_eq!(
                super::printable_char(&sample, true),
                expected(&sample),
                "{sample:x?}"
            );
        }
    }

    #[test]
    fn strings_finds_ascii_and_utf8_runs_with_offsets() {
        let mut mem = vec![0u8; 300];
        mem[70..76].copy_from_slice(b"hello!");
        mem[80..82].copy_from_slice(b"no");
        let word = "héllo wörld".as_bytes();
        mem[200..200 + word.len()].copy_from_slice(word);
        assert_eq!(
            strings(&mem, 4, 1024, true, 100),
            vec![(70, 76), (200, 200 + word.len())]
        );
        // "héllo wörld" in ASCII only: "llo w" (5) and "rld" (3, too short).
        assert_eq!(
            strings(&mem, 4, 1024, false, 100),
            vec![(70, 76), (203, 208)]
        );
        assert_eq!(strings(&mem, 4, 1024, true, 1), vec![(70, 76)]);
        // C1 controls and lone continuation bytes are not printable.
        assert_eq!(
            strings(&[0xC2, 0x85, b'a', b'b'], 2, 1024, true, 10),
            vec![(2, 4)]
        );
        assert_eq!(strings(b"abcdef", 2, 4, true, 10), vec![(0, 4), (4, 6)]);
    }
}
