//! The forensic capture NIFs, for each engine (see `engine::capture`).

use rustler::{Atom, ResourceArc};

use crate::atoms;
use crate::engine::capture::{capture, Capture};
use crate::engine::instance::InstanceRef;
use crate::engine::Engine;
use crate::vocabulary::error::MunitionResult;

fn read<E: Engine>(instance: &InstanceRef<E>, mode: Atom) -> MunitionResult<Capture> {
    let mut slot = instance.lock();
    capture(slot.idle()?, mode == atoms::full())
}

per_engine! {
    /// Reads a failed store: `mode` `:full` compresses every memory whole,
    /// `:minimal` gives their sizes only.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [instance_capture, wasmi_instance_capture](
        instance: ResourceArc<InstanceRef<E>>,
        mode: Atom,
    ) -> MunitionResult<Capture> {
        read(&instance, mode)
    }
}
