//! The rules a store keeps for its guest, the same on every engine: which
//! byte ranges of its memory may be touched, how much memory it may have
//! (`GuestLimits`), how much log it may write (`GuestLog`), how fuel a host
//! function charges is taken, and when releasing its store is too slow for
//! a normal scheduler. Plain arithmetic, so `cargo test` checks it.

use std::ops::Range;

use crate::scan::MemoryInfo;

/// The byte range `[ptr, ptr + len)` of a memory of `size` bytes, if it lies
/// wholly inside it: the one bounds check, for both engines' memories.
pub fn bounds(size: usize, ptr: u64, len: u64) -> Option<Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= size).then_some(start..end)
}

/// The memory limit of one store: `max_memory` bounds the bytes of all the
/// guest's memories together, which is what the host pays for. Growing past
/// it is a crash with `:memory_limit` rather than wasm's silent `-1`, so a
/// guest cannot probe the limit and the operator sees the attempt.
#[derive(Debug)]
pub struct GuestLimits {
    pub max_memory: usize,
    pub max_table_elements: usize,
    pub memory_limit_hit: bool,
    /// Bytes of all the store's memories, as this limiter approved them.
    pub memory_total: usize,
    /// Why the limit was hit, for the dump (the first growth refused).
    pub message: Option<String>,
}

impl GuestLimits {
    /// A limit of `max_memory` bytes and `max_table_elements` per table,
    /// nothing grown yet.
    pub fn new(max_memory: u64, max_table_elements: usize) -> Self {
        GuestLimits {
            // Only short of 64-bit: a limit over the address space is no limit.
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            max_table_elements,
            memory_limit_hit: false,
            memory_total: 0,
            message: None,
        }
    }

    /// Decides a memory growth for either engine's limiter: `Ok(true)` to
    /// allow it (counted), `Ok(false)` for wasm's -1 (past the memory's own
    /// maximum, not counted), `Err(message)` past `max_memory`.
    pub fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, String> {
        // A growth past the memory's own declared maximum fails (wasm's -1)
        // and must not count: refused here, it is never counted.
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        // `current` is what this memory had (0 when it is being created).
        let others = self.memory_total.saturating_sub(current);
        let total = others.saturating_add(desired);
        if total > self.max_memory {
            self.memory_limit_hit = true;
            let others = if others > 0 {
                format!(" (with {others} bytes in the guest's other memories)")
            } else {
                String::new()
            };
            let message = format!(
                "memory limit: growing linear memory from {current} to {desired} bytes{others} exceeds max_memory of {} bytes",
                self.max_memory
            );
            self.message.get_or_insert_with(|| message.clone());
            return Err(message);
        }
        // A growth the system then fails (rare: the pool's slots are
        // reserved) stays counted: the limit errs on the strict side.
        self.memory_total = total;
        Ok(true)
    }

    pub fn table_growing(&self, desired: usize) -> bool {
        desired <= self.max_table_elements
    }
}

/// Refuses before any guest code runs what can be refused: memories whose
/// initial sizes are already over the limit, which bounds all of them
/// together. The message says which.
pub fn preflight(memories: &[MemoryInfo], max_memory: u64) -> Result<(), String> {
    let initial = |memory: &MemoryInfo| memory.min_pages.saturating_mul(memory.page_size);
    let total = memories
        .iter()
        .fold(0u64, |total, memory| total.saturating_add(initial(memory)));
    if total <= max_memory {
        return Ok(());
    }
    Err(match memories {
        [memory] => format!(
            "memory 0 starts at {total} bytes ({} pages), over max_memory of {max_memory} bytes",
            memory.min_pages
        ),
        _ => format!(
            "the module's {} memories start at {total} bytes together ({}), over max_memory of {max_memory} bytes",
            memories.len(),
            memories
                .iter()
                .enumerate()
                .map(|(index, memory)| format!("memory {index}: {} pages", memory.min_pages))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Guest log lines (`munition.log`), capped in total bytes so a guest cannot
/// grow the host's memory through them.
#[derive(Debug)]
pub struct GuestLog {
    pub lines: Vec<(i32, Vec<u8>)>,
    pub bytes: usize,
    pub limit: usize,
    pub dropped: u64,
}

impl GuestLog {
    pub fn new(limit: usize) -> Self {
        GuestLog {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    /// Keeps the line if it fits in what is left of the limit; checked
    /// before copying, so a guest logging huge ranges costs no host memory.
    pub fn push(&mut self, level: i32, line: &[u8]) {
        if self.bytes + line.len() > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push((level, line.to_vec()));
    }
}

/// Bytes a built-in may handle per unit of fuel: work proportional to a
/// guest-chosen length is paid for like the guest's own instructions, so a
/// loop of large calls exhausts its budget instead of running for free.
pub const BYTES_PER_FUEL: u64 = 8;

/// Fuel for handling `bytes` bytes.
pub fn fuel_for(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_FUEL)
}

/// Takes `cost` from fuel kept in two places, the store's and a reserve
/// (an engine that hands the store its budget in slices keeps the rest
/// aside): from the store first. The new `(in_store, reserve)`, or `None`
/// when both together cannot pay.
pub fn take_fuel(in_store: u64, reserve: u64, cost: u64) -> Option<(u64, u64)> {
    if cost <= in_store {
        return Some((in_store - cost, reserve));
    }
    let from_reserve = cost - in_store;
    (from_reserve <= reserve).then(|| (0, reserve - from_reserve))
}

/// Memory up to which a store is released on a normal scheduler. Releasing
/// costs in proportion to the pages the guest touched, with either engine:
/// about 8 ms for 64 MiB here to reset Wasmtime's pool slot, 5–7.6 ms to
/// unmap Wasmi's memory; too long for a normal scheduler.
pub const INLINE_RELEASE_LIMIT: usize = 4 * 1024 * 1024;

/// Whether a store whose memories total `memory_total` bytes (as its limiter
/// counted them, exported or not) may be released on a normal scheduler.
pub fn releases_inline(memory_total: usize) -> bool {
    memory_total <= INLINE_RELEASE_LIMIT
}

/// The AssemblyScript string at `ptr` of guest memory `data` (UTF-16LE, its
/// byte length in the u32 just before the pointer, at most 4 KiB read).
/// Best effort: the guest is already aborting, so a bad pointer yields a
/// placeholder saying where the string was rather than a second failure.
pub fn assemblyscript_string(data: &[u8], ptr: i32) -> String {
    let ptr = ptr as u32 as usize;
    let decoded = (|| {
        let len_bytes = data.get(ptr.checked_sub(4)?..ptr)?;
        let len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
        let bytes = data.get(ptr..ptr.checked_add(len.min(4096))?)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    })();
    decoded.unwrap_or_else(|| format!("<string at {ptr}>"))
}

/// `message` cut to at most `max` bytes (on a character boundary) with a
/// note of how much was cut: a message that quotes hostile input must never
/// be as large as the input.
pub fn bounded_message(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes cut)", total - end));
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_whole_ranges_inside_the_memory() {
        assert_eq!(bounds(10, 2, 8), Some(2..10));
        assert_eq!(bounds(10, 2, 9), None);
        assert_eq!(bounds(10, 10, 0), Some(10..10));
        assert_eq!(bounds(10, u64::MAX, 2), None);
    }

    #[test]
    fn limits_count_all_memories_and_keep_the_first_message() {
        let mut limits = GuestLimits::new(100, 10);
        assert_eq!(limits.memory_growing(0, 60, None), Ok(true));
        assert_eq!(limits.memory_growing(0, 30, None), Ok(true));
        let refused = limits.memory_growing(30, 50, None).unwrap_err();
        assert!(refused.contains("with 60 bytes in the guest's other memories"));
        assert!(limits.memory_limit_hit);
        assert_eq!(limits.memory_total, 90);
        let _ = limits.memory_growing(30, 60, None);
        assert_eq!(limits.message.as_deref(), Some(refused.as_str()));
    }

    #[test]
    fn a_growth_past_the_memorys_own_maximum_is_not_counted() {
        let mut limits = GuestLimits::new(100, 10);
        assert_eq!(limits.memory_growing(0, 50, Some(40)), Ok(false));
        assert_eq!(limits.memory_total, 0);
        assert!(!limits.memory_limit_hit);
        assert!(limits.table_growing(10) && !limits.table_growing(11));
    }

    #[test]
    fn preflight_names_the_memories_over_the_limit() {
        let memory = |min_pages| MemoryInfo {
            min_pages,
            max_pages: None,
            page_size: 65_536,
            memory64: false,
            imported: false,
        };
        assert_eq!(preflight(&[memory(1)], 65_536), Ok(()));
        assert!(preflight(&[memory(2)], 65_536)
            .unwrap_err()
            .starts_with("memory 0 starts at 131072 bytes (2 pages)"));
        assert!(preflight(&[memory(1), memory(1)], 65_536)
            .unwrap_err()
            .contains("memory 0: 1 pages, memory 1: 1 pages"));
    }

    #[test]
    fn the_log_drops_lines_past_its_limit() {
        let mut log = GuestLog::new(5);
        log.push(1, b"abc");
        log.push(1, b"def");
        log.push(2, b"gh");
        assert_eq!(log.lines, vec![(1, b"abc".to_vec()), (2, b"gh".to_vec())]);
        assert_eq!(log.dropped, 1);
    }

    #[test]
    fn fuel_comes_from_the_store_then_the_reserve() {
        assert_eq!(fuel_for(0), 0);
        assert_eq!(fuel_for(9), 2);
        assert_eq!(take_fuel(10, 5, 4), Some((6, 5)));
        assert_eq!(take_fuel(10, 5, 12), Some((0, 3)));
        assert_eq!(take_fuel(10, 5, 15), Some((0, 0)));
        assert_eq!(take_fuel(10, 5, 16), None);
    }

    #[test]
    fn stores_over_4_mib_are_not_released_inline() {
        assert!(releases_inline(INLINE_RELEASE_LIMIT));
        assert!(!releases_inline(INLINE_RELEASE_LIMIT + 1));
    }

    #[test]
    fn assemblyscript_strings_read_or_say_where_they_were() {
        let mut data = vec![0u8; 4];
        data[..4].copy_from_slice(&4u32.to_le_bytes());
        data.extend_from_slice(&[b'h', 0, b'i', 0]);
        assert_eq!(assemblyscript_string(&data, 4), "hi");
        assert_eq!(assemblyscript_string(&data, 2), "<string at 2>");
        assert_eq!(assemblyscript_string(&data, -1), "<string at 4294967295>");
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(bounded_message("short".into(), 10), "short");
        let cut = bounded_message("ééé".into(), 3);
        assert_eq!(cut, "é… (4 more bytes cut)");
    }
}
