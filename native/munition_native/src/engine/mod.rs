//! The engines, behind one seam: the `Engine` trait. Everything an engine
//! does differently (compiling to its own code, making a store and an
//! instance, running a guest in slices, reading a failed store) is a method
//! of the trait, implemented once per engine in a folder of its own
//! (`wasmtime/`, `wasmi/`). Everything else is written once here, over the
//! trait: compiling off the schedulers and caching (`compile`), module
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

/// An engine's `impl Engine`, with the items every engine has in the same
/// form written here once: its module registry and live-store counter
/// (statics of its own), its resource types' registration, its compile
/// step (`module::compile` of its folder), and its store's state (the
/// store's data on both engines). The engine's own items follow.
macro_rules! engine_impl {
    ($engine:ident { $($items:tt)* }) => {
        rustler::codegen_runtime::inventory::submit!(
            rustler::codegen_runtime::ResourceRegistration::new::<
                crate::engine::module::ModuleRef<$engine>,
            >()
        );
        rustler::codegen_runtime::inventory::submit!(
            rustler::codegen_runtime::ResourceRegistration::new::<
                crate::engine::instance::InstanceRef<$engine>,
            >()
        );
        rustler::codegen_runtime::inventory::submit!(
            rustler::codegen_runtime::ResourceRegistration::new::<
                crate::engine::compile::scheduler::Ticket<$engine>,
            >()
        );

        impl crate::engine::Engine for $engine {
            fn registry() -> &'static crate::engine::compile::cache::Registry<Self> {
                static REGISTRY: once_cell::sync::Lazy<
                    crate::engine::compile::cache::Registry<$engine>,
                > = once_cell::sync::Lazy::new(crate::engine::compile::cache::Registry::new);
                &REGISTRY
            }

            fn live_stores() -> &'static crate::host::state::LiveStores {
                static LIVE_STORES: crate::host::state::LiveStores =
                    crate::host::state::LiveStores::new();
                &LIVE_STORES
            }

            fn compile(
                wasm: &[u8],
                facts: munition_core::limits::Facts,
                hash: String,
            ) -> crate::vocabulary::error::MunitionResult<crate::engine::module::Compiled<Self>> {
                module::compile(wasm, facts, hash)
            }

            fn state(store: &Self::Store) -> &crate::host::state::StoreState {
                store.data()
            }

            $($items)*
        }
    };
}

pub mod call;
pub mod capture;
pub mod compile;
pub mod instance;
pub mod link;
pub mod module;
pub mod reaper;
pub mod settings;
pub mod wasmi;
pub mod wasmtime;

use std::sync::Arc;
use std::time::Duration;

use munition_core::limits::Facts;
use rustler::Env;

use self::call::Call;
use self::capture::Snapshot;
use self::compile::cache::Registry;
use self::instance::{InstanceConfig, Live, Progress, Slot};
use self::module::Compiled;
use crate::host::state::{LiveStores, StoreState};
use crate::vocabulary::error::MunitionResult;

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

/// One engine: what differs between Wasmtime and Wasmi.
pub trait Engine: Sized + Send + Sync + 'static {
    /// Binary modules up to this many bytes that the express lane would
    /// take are compiled at lookup, on the caller's scheduler, when that is
    /// cheaper than a trip to a compile thread (0: never).
    const INLINE_COMPILE: usize;

    /// The engine's compiled module.
    type Native: Send + Sync + 'static;
    /// Where an exported function is found in an instance.
    type Export: Clone + Send + Sync + 'static;
    type Store: Send + 'static;
    type Instance: Copy + Send + 'static;
    /// A guest execution in progress, with its store.
    type Running: Send + 'static;
    /// What a failure keeps for the capture besides its classification.
    type Evidence: Send + 'static;

    /// The engine's module cache and compilations.
    fn registry() -> &'static Registry<Self>;
    /// The engine's stores alive.
    fn live_stores() -> &'static LiveStores;

    /// Validates and compiles `wasm` (measured as `facts` by the shared
    /// steps, see `compile`), refusing what Munition does not run.
    fn compile(wasm: &[u8], facts: Facts, hash: String) -> MunitionResult<Compiled<Self>>;

    fn state(store: &Self::Store) -> &StoreState;
    /// Fuel left to the guest; an error when the engine cannot say.
    fn fuel_remaining(store: &Self::Store) -> MunitionResult<u64>;
    /// The bytes of the guest's exported memory, once it is instantiated.
    fn memory(live: &mut Live<Self>) -> Option<&mut [u8]>;

    /// Makes an instance of `module` in a fresh store and runs the first
    /// slice of its first execution: its start function, then `call`, when
    /// given and the instance is ready, in the same step.
    fn instantiate(
        env: Env,
        module: Arc<Compiled<Self>>,
        config: &InstanceConfig,
        call: Option<Call<Self>>,
    ) -> MunitionResult<(Slot<Self>, Progress)>;
    /// Starts a checked call on the idle instance and runs its first slice.
    fn call(env: Env, slot: &mut Slot<Self>, call: Call<Self>) -> MunitionResult<Progress>;
    /// Runs the next slice of the execution in progress.
    fn resume(env: Env, slot: &mut Slot<Self>, slice: Duration) -> MunitionResult<Progress>;
    /// The memory total of a store mid-execution, if it can be read there.
    fn running_memory_total(running: &Self::Running) -> Option<usize>;

    /// The memories, globals and backtrace of a failed (or idle) store.
    fn snapshot(live: &mut Live<Self>, full: bool) -> MunitionResult<Snapshot>;
}
