//! The engines, behind one seam: the `Engine` trait. Everything an engine
//! does differently (compiling to its own code, making a store and an
//! instance, running a guest in slices, reading a failed store) is a method
//! of the trait, implemented once per engine in a folder of its own
//! (`wasmtime/`, `wasmi/`). Everything else is written once here, over the
//! trait and its types (`types`): compiling off the schedulers and caching
//! (`compile`), module
//! facts (`module`), linking imports to the host's functions (`link`),
//! checking and converting a call (`call`), instances and their slots
//! (`instance`), and the forensic capture (`capture`). The NIFs (`nif/`)
//! name an engine and call these.
//!
//! The seam is a trait with associated types, not an enum of engines: each
//! engine's handles (its store, instance, execution) stay its own types,
//! checked at compile time, and a call pays no dispatch; a module or an
//! instance of one engine is a different resource type from the other's,
//! so handing one to the other engine's NIF is a `badarg`.

// The `engine_impl!` macro the engines' folders use; first, so they see it.
#[macro_use]
mod macros;

pub mod call;
pub mod capture;
pub mod compile;
pub mod component;
pub mod give_way;
pub mod instance;
pub mod link;
pub mod module;
pub mod reaper;
pub mod settings;
pub mod snapshot;
pub mod types;
pub mod wasmi;
pub mod wasmtime;

use std::sync::Arc;
use std::time::Duration;

use munition_core::limits::Facts;
use rustler::Env;

use self::call::AtOnce;
use self::capture::Snapshot;
use self::compile::cache::Registry;
use self::compile::disk::Disk;
use self::instance::{InstanceConfig, Live, Progress, Slot};
use self::module::Compiled;
pub use self::types::EngineTypes;
use crate::host::state::LiveStores;
use crate::vocabulary::error::MunitionResult;
use rustler::Term;

/// How long a guest runs before it hands its scheduler thread back. Between
/// slices other dirty work, including other guests, gets its turn, so runaway
/// guests cannot starve the VM's dirty schedulers.
pub const SLICE: Duration = Duration::from_millis(2);

/// The first slice of an instantiation or a call runs on the caller's normal
/// scheduler, for at most this long: most guest calls finish within it and so
/// never pay for a trip to a dirty scheduler (waking one costs more than many
/// small calls). A guest still running after it continues on dirty
/// schedulers, `SLICE` at a time. Well under the BEAM's 1 ms guideline for
/// normal-scheduler NIFs, and the guest is on its own stack either way.
pub const FIRST_SLICE: Duration = Duration::from_micros(100);

/// One engine: what differs between Wasmtime and Wasmi (with its types,
/// `EngineTypes`).
pub trait Engine: EngineTypes {
    /// Binary modules up to this many bytes that the express lane would
    /// take are compiled at lookup, on the caller's scheduler, when that is
    /// cheaper than a trip to a compile thread (0: never).
    const INLINE_COMPILE: usize;
    /// Whether the engine runs components (`engine::component`) rather
    /// than core modules.
    const COMPONENTS: bool = false;

    /// The engine's module cache and compilations.
    fn registry() -> &'static Registry<Self>;
    /// The engine's stores alive.
    fn live_stores() -> &'static LiveStores;

    /// Validates and compiles `wasm` (measured as `facts` by the shared
    /// steps, see `compile`), refusing what Munition does not run. With
    /// `disk`, an engine that keeps compiled code there loads it instead
    /// when it is there, and stores what it compiles; Wasmi, whose
    /// compiling costs about what loading would, is never given one.
    fn compile(
        wasm: &[u8],
        facts: Facts,
        hash: String,
        disk: Option<&Disk>,
    ) -> MunitionResult<Compiled<Self>>;

    /// Finds `function` among the module's exports and converts `params`
    /// to its parameter types, before there is an instance
    /// (`:function_not_found`, `:bad_args`): every engine of one kind
    /// refuses the same calls with the same errors.
    fn convert(
        module: &Compiled<Self>,
        function: &str,
        params: &[Term],
    ) -> MunitionResult<Self::Call>;

    /// `convert` for the call made with an instantiation. An engine that
    /// copies binary arguments in and reads a binary result itself, in the
    /// same guest execution (`call::BinaryAbi`, Wasmtime's), converts them;
    /// the others refuse a binary argument here (it is no number) and the
    /// call is made the long way, and leave a binary result to be read
    /// after.
    fn convert_at_once(module: &Compiled<Self>, at_once: &AtOnce) -> MunitionResult<Self::Call> {
        Self::convert(module, at_once.function, &at_once.params)
    }

    /// The bytes of the guest's exported memory, once it is instantiated.
    fn memory(live: &mut Live<Self>) -> Option<&mut [u8]>;

    /// Makes an instance of `module` in a fresh store and runs the first
    /// slice of its first execution: its start function, then `call`, when
    /// given and the instance is ready, in the same step.
    fn instantiate(
        env: Env,
        module: Arc<Compiled<Self>>,
        config: &InstanceConfig,
        call: Option<Self::Call>,
    ) -> MunitionResult<(Slot<Self>, Progress)>;
    /// Starts a checked call on the idle instance and runs its first slice.
    fn call(env: Env, slot: &mut Slot<Self>, call: Self::Call) -> MunitionResult<Progress>;
    /// Runs the next slice of the execution in progress.
    fn resume(env: Env, slot: &mut Slot<Self>, slice: Duration) -> MunitionResult<Progress>;
    /// The memories, globals and backtrace of a failed (or idle) store.
    fn snapshot(live: &mut Live<Self>, full: bool) -> MunitionResult<Snapshot>;
}
