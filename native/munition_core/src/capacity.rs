//! How many instances the engine can hold at once, from the virtual address
//! space each one reserves.
//!
//! Fresh instances come from Wasmtime's pooling allocator, which reserves
//! address space for every instance slot once, when the engine is built:
//!
//! * per memory slot: `MAX_MEMORY_BYTES` (4 GiB: the largest memory a call may
//!   ask for, and the reservation that lets compiled code skip bounds checks)
//!   plus a `MEMORY_GUARD_BYTES` (32 MiB) guard region after it, inaccessible
//!   (`PROT_NONE`); `memories_per_module` slots per instance, so any instance
//!   can have that many memories; plus one guard region before the first slot;
//! * per table slot: `MAX_TABLE_ELEMENTS` (100,000) elements of 8 bytes, rounded
//!   up to a page, `MAX_TABLES_PER_MODULE` (4) slots per instance;
//! * per instance: a fiber stack of `FIBER_STACK_SIZE` (2 MiB) plus a guard page.
//!
//! With 4 memories per module an instance reserves 4 x 4.03 GiB, plus
//! 4 x 784 KiB and 2 MiB: about 16.13 GiB; 1,000 instances about 15.8 TiB. None of it is
//! resident until a guest touches it (memory slots are `PROT_NONE` until a
//! memory grows into them), so the cost is address space: plentiful on a
//! 64-bit host (128 TiB of user space on x86-64), but counted in full against
//! `RLIMIT_AS` (`ulimit -v`). Munition therefore takes at most half the
//! address space, and half of `RLIMIT_AS` when one is set, leaving the other
//! half to the VM, compiled code and everything else in the process.

/// The largest linear memory a call may have (`:max_memory`): a 32-bit
/// memory's whole range, and the reservation of each memory slot.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Inaccessible bytes after each memory slot (and before the first), so that
/// compiled code can skip bounds checks for accesses with static offsets below
/// it. Wasmtime's default on 64-bit hosts; the engine sets it explicitly.
pub const MEMORY_GUARD_BYTES: u64 = 32 << 20;

/// Table elements a guest may have (per table); table slots are sized for this.
pub const MAX_TABLE_ELEMENTS: u64 = 100_000;

/// Bytes of one table element in a table slot (a pointer).
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Tables a module may define.
pub const MAX_TABLES_PER_MODULE: u64 = 4;

/// The fiber stack each guest runs on (see `engine::FIBER_STACK_SIZE`).
pub const FIBER_STACK_SIZE: u64 = 2 << 20;

/// Memories a module may have by default, and the most that may be configured.
pub const DEFAULT_MEMORIES_PER_MODULE: u64 = 4;
pub const MAX_MEMORIES_PER_MODULE: u64 = 16;

/// Instances alive at once by default, when the address space allows it.
pub const DEFAULT_MAX_INSTANCES: u64 = 1_000;

/// The address space Munition may reserve when no `RLIMIT_AS` is set: half
/// of the 128 TiB user address space of x86-64 and of aarch64 with 48-bit
/// addresses.
pub const UNLIMITED_BUDGET: u64 = 64 << 40;

/// The most compilations running at once that may be configured.
pub const MAX_CONCURRENT_COMPILES: u64 = 64;

fn round_up(bytes: u64, page_size: u64) -> u64 {
    bytes.div_ceil(page_size) * page_size
}

/// Address space of one memory slot: the memory's reservation and its guard.
pub fn memory_slot_bytes() -> u64 {
    MAX_MEMORY_BYTES + MEMORY_GUARD_BYTES
}

/// Address space of one table slot.
pub fn table_slot_bytes(page_size: u64) -> u64 {
    round_up(MAX_TABLE_ELEMENTS * TABLE_ELEMENT_BYTES, page_size)
}

/// Address space of one fiber stack and its guard page.
pub fn stack_slot_bytes(page_size: u64) -> u64 {
    round_up(FIBER_STACK_SIZE, page_size) + page_size
}

/// Address space one instance slot reserves: its memories, tables and stack.
pub fn per_instance_bytes(memories_per_module: u64, page_size: u64) -> u64 {
    memories_per_module * memory_slot_bytes()
        + MAX_TABLES_PER_MODULE * table_slot_bytes(page_size)
        + stack_slot_bytes(page_size)
}

/// Address space reserved whatever the number of instances: the guard region
/// before the first memory slot.
pub fn fixed_bytes() -> u64 {
    MEMORY_GUARD_BYTES
}

/// Address space the engine reserves for `instances` instance slots.
pub fn reserved_bytes(instances: u64, memories_per_module: u64, page_size: u64) -> u64 {
    fixed_bytes() + instances * per_instance_bytes(memories_per_module, page_size)
}

/// The address space Munition may reserve: half of `RLIMIT_AS` when one is
/// set, and never more than `UNLIMITED_BUDGET`.
pub fn budget(rlimit_as: Option<u64>) -> u64 {
    rlimit_as
        .map_or(UNLIMITED_BUDGET, |limit| limit / 2)
        .min(UNLIMITED_BUDGET)
}

/// The most instance slots that fit in the budget.
pub fn max_instances(rlimit_as: Option<u64>, memories_per_module: u64, page_size: u64) -> u64 {
    budget(rlimit_as).saturating_sub(fixed_bytes())
        / per_instance_bytes(memories_per_module, page_size)
}

/// What the operator asked for (`None`: the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub max_instances: Option<u64>,
    pub max_memories_per_module: Option<u64>,
    pub max_concurrent_compiles: Option<u64>,
}

/// The engine's capacity, settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub max_instances: u64,
    pub max_memories_per_module: u64,
    pub max_concurrent_compiles: u64,
    /// Address space the pools reserve (`reserved_bytes`).
    pub reserved_bytes: u64,
}

/// The host the capacity is computed for.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// `RLIMIT_AS` in bytes, `None` when unlimited.
    pub rlimit_as: Option<u64>,
    pub page_size: u64,
    pub cores: u64,
}

/// Settles `requested` for `host`: defaults for what is not given, and an
/// error naming the value and the arithmetic for what does not fit.
pub fn settle(requested: Requested, host: Host) -> Result<Settings, String> {
    let memories = requested
        .max_memories_per_module
        .unwrap_or(DEFAULT_MEMORIES_PER_MODULE);
    if !(1..=MAX_MEMORIES_PER_MODULE).contains(&memories) {
        return Err(format!(
            "max_memories_per_module must be 1..{MAX_MEMORIES_PER_MODULE}, got: {memories}"
        ));
    }
    let fit = max_instances(host.rlimit_as, memories, host.page_size);
    let per_instance = per_instance_bytes(memories, host.page_size);
    let budget_text = match host.rlimit_as {
        Some(limit) => format!("half of RLIMIT_AS ({limit} bytes)"),
        None => format!("{UNLIMITED_BUDGET} bytes (half the 64-bit user address space)"),
    };
    let instances = match requested.max_instances {
        Some(0) => return Err("max_instances must be a positive integer, got: 0".into()),
        Some(n) if n > fit => {
            return Err(format!(
                "max_instances of {n} does not fit: each instance reserves {per_instance} bytes of \
                 address space ({memories} memories of {} bytes, {MAX_TABLES_PER_MODULE} tables, \
                 a fiber stack), and Munition takes at most {budget_text}, room for {fit}",
                memory_slot_bytes()
            ))
        }
        Some(n) => n,
        None if fit == 0 => {
            return Err(format!(
                "no instance fits: each reserves {per_instance} bytes of address space and \
                 Munition takes at most {budget_text}; raise `ulimit -v` or lower \
                 max_memories_per_module"
            ))
        }
        None => DEFAULT_MAX_INSTANCES.min(fit),
    };
    let compiles = match requested.max_concurrent_compiles {
        Some(n) if (1..=MAX_CONCURRENT_COMPILES).contains(&n) => n,
        Some(n) => {
            return Err(format!(
                "max_concurrent_compiles must be 1..{MAX_CONCURRENT_COMPILES}, got: {n}"
            ))
        }
        None => (host.cores / 2).max(1),
    };
    Ok(Settings {
        max_instances: instances,
        max_memories_per_module: memories,
        max_concurrent_compiles: compiles,
        reserved_bytes: reserved_bytes(instances, memories, host.page_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const PAGE: u64 = 4096;

    fn host(rlimit_as: Option<u64>) -> Host {
        Host {
            rlimit_as,
            page_size: PAGE,
            cores: 2,
        }
    }

    #[test]
    fn an_instance_reserves_its_memories_tables_and_stack() {
        assert_eq!(memory_slot_bytes(), 4 * GIB + 32 * 1024 * 1024);
        assert_eq!(table_slot_bytes(PAGE), 802_816);
        assert_eq!(stack_slot_bytes(PAGE), 2 * 1024 * 1024 + PAGE);
        assert_eq!(
            per_instance_bytes(4, PAGE),
            4 * memory_slot_bytes() + 4 * 802_816 + 2 * 1024 * 1024 + PAGE
        );
        // About 16.13 GiB with four memories, 15.8 TiB for 1,000 instances.
        let per = per_instance_bytes(4, PAGE) as f64 / GIB as f64;
        assert!((16.1..16.2).contains(&per), "{per}");
        let total = reserved_bytes(1_000, 4, PAGE) as f64 / (1u64 << 40) as f64;
        assert!((15.7..15.8).contains(&total), "{total}");
    }

    #[test]
    fn without_rlimit_the_default_is_a_thousand_instances() {
        let settings = settle(Requested::default(), host(None)).unwrap();
        assert_eq!(settings.max_instances, 1_000);
        assert_eq!(settings.max_memories_per_module, 4);
        assert_eq!(settings.max_concurrent_compiles, 1);
        assert_eq!(settings.reserved_bytes, reserved_bytes(1_000, 4, PAGE));
        assert!(settings.reserved_bytes <= budget(None));
    }

    #[test]
    fn under_rlimit_the_default_fits_in_half_of_it() {
        let limit = 200 * GIB;
        let settings = settle(Requested::default(), host(Some(limit))).unwrap();
        // 100 GiB / 16.13 GiB.
        assert_eq!(settings.max_instances, 6);
        assert!(settings.reserved_bytes <= limit / 2);
        // One memory per module fits four times as many.
        let one = Requested {
            max_memories_per_module: Some(1),
            ..Requested::default()
        };
        assert_eq!(settle(one, host(Some(limit))).unwrap().max_instances, 24);
    }

    #[test]
    fn a_limit_with_room_for_no_instance_is_an_error() {
        let error = settle(Requested::default(), host(Some(16 * GIB))).unwrap_err();
        assert!(error.contains("no instance fits"), "{error}");
    }

    #[test]
    fn requested_values_are_kept_when_they_fit() {
        let requested = Requested {
            max_instances: Some(7),
            max_memories_per_module: Some(2),
            max_concurrent_compiles: Some(3),
        };
        let settings = settle(requested, host(None)).unwrap();
        assert_eq!(
            (
                settings.max_instances,
                settings.max_memories_per_module,
                settings.max_concurrent_compiles
            ),
            (7, 2, 3)
        );
    }

    #[test]
    fn requested_values_that_do_not_fit_are_errors_naming_them() {
        let cases = [
            (Some(0), None, None, "max_instances"),
            (
                Some(5_000),
                None,
                None,
                "max_instances of 5000 does not fit",
            ),
            (Some(7), Some(1), None, ""),
            (None, Some(0), None, "max_memories_per_module"),
            (None, Some(17), None, "max_memories_per_module"),
            (None, None, Some(0), "max_concurrent_compiles"),
            (None, None, Some(65), "max_concurrent_compiles"),
        ];
        for (instances, memories, compiles, expected) in cases {
            let requested = Requested {
                max_instances: instances,
                max_memories_per_module: memories,
                max_concurrent_compiles: compiles,
            };
            match settle(requested, host(None)) {
                Ok(_) => assert_eq!(expected, "", "{requested:?}"),
                Err(error) => assert!(error.contains(expected), "{error}"),
            }
        }
        let error = settle(
            Requested {
                max_instances: Some(10),
                ..Requested::default()
            },
            host(Some(200 * GIB)),
        )
        .unwrap_err();
        assert!(error.contains("room for 6"), "{error}");
    }

    #[test]
    fn the_budget_never_exceeds_half_the_address_space() {
        assert_eq!(budget(None), UNLIMITED_BUDGET);
        assert_eq!(budget(Some(u64::MAX)), UNLIMITED_BUDGET);
        assert_eq!(budget(Some(10 * GIB)), 5 * GIB);
        assert_eq!(max_instances(None, 4, PAGE), 4_062);
    }
}
