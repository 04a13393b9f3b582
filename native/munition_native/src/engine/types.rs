//! The types of an engine, the bottom of the engine layer: what the shared
//! structures (compiled modules, instances, calls, the caches) are generic
//! over. The seam proper (`Engine`, in `engine`) builds on this, so that
//! those structures need not know the seam's methods, and the seam can
//! name them without a circle.

use crate::host::state::StoreState;
use crate::vocabulary::error::MunitionResult;

pub trait EngineTypes: Sized + Send + Sync + 'static {
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
    /// A call checked against the module's types, ready to start in any
    /// instance of it (`Engine::convert` makes one).
    type Call: Send + 'static;

    fn state(store: &Self::Store) -> &StoreState;
    fn state_mut(store: &mut Self::Store) -> &mut StoreState;
    /// Fuel left to the guest; an error when the engine cannot say.
    fn fuel_remaining(store: &Self::Store) -> MunitionResult<u64>;
    /// The memory total of a store mid-execution, if it can be read there.
    fn running_memory_total(running: &Self::Running) -> Option<usize>;
}
