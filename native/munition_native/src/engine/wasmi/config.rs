//! The one Wasmi engine of the VM, and the bounds of its executions.

use once_cell::sync::Lazy;
use wasmi::{CompilationMode, Config, CustomFuelCosts, Engine};

pub const WASMI_VERSION: &str = "2.0.0";

/// Fuel put in the store at a time. When it is used up the call suspends
/// (Wasmi's out-of-fuel resumption) and the slice checks its time and the
/// deadline. A million units is 0.3 ms of a tight loop here (Wasmi runs
/// about 3 G units a second of plain instructions) and 64 MB of a bulk
/// operation (charged a unit per 64 bytes): a runaway on Wasmi stops about
/// 0.5 ms later than at 100,000. Fewer resumptions matter more: Wasmi
/// charges a block's whole body when the block is entered, so an
/// interpreter's dispatch loop (QuickJS's: every case of its switch, each
/// turn) pays hundreds of thousands of units for a few instructions. At
/// 100,000 QuickJS suspended about once every 0.6 µs, and each resumption
/// costs 0.1-0.2 µs: `eval` of a 100,000-turn JavaScript loop took 125 ms
/// against 63 ms at a million (58 ms at ten million).
pub const FUEL_SLICE: u64 = 1_000_000;

/// Nested wasm calls a guest may make before `:stack_overflow`. Wasmi keeps
/// them on its own heap stack, never on the thread's: this bounds that
/// stack's memory, not the scheduler's.
pub const MAX_RECURSION_DEPTH: usize = 20_000;

/// Bytes of Wasmi's value stack (locals and operands of every frame).
pub const MAX_STACK_HEIGHT: usize = 16 * 1024 * 1024;

/// What Wasmi charges besides instructions: copying bytes as by default,
/// but translating and validating a function nothing. Wasmi charges a
/// lazily translated function's translation to the call that first reaches
/// it, from the fuel in the store, and cannot resume a call whose
/// translation ran out of it: with the store holding at most `FUEL_SLICE`,
/// any function of more than about 14 KiB of code (7 units a byte) ended
/// its guest as `:fuel_exhausted` however large the budget. Translation is
/// bounded by the module's size (checked at compile time) and done once per
/// module, not per call, so it is not the guest's to pay for either.
const FUEL_COSTS: CustomFuelCosts = CustomFuelCosts {
    bytes_copied_per_fuel: 64,
    fuel_per_bytes_translated: 0,
    fuel_per_bytes_validated: 0,
};

pub static ENGINE: Lazy<Engine> = Lazy::new(|| {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .fuel_cost(FUEL_COSTS)
        // Validated when compiled (an invalid module is refused before
        // anything runs), translated when first called.
        .compilation_mode(CompilationMode::LazyTranslation)
        .set_max_recursion_depth(MAX_RECURSION_DEPTH)
        .set_max_stack_height(MAX_STACK_HEIGHT)
        .wasm_multi_memory(true);
    Engine::new(&config)
});
