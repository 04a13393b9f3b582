//! The forensic capture NIFs, for each engine (see `engine::capture`).

use rustler::{Atom, ResourceArc};

use crate::atoms;
use crate::engine::capture::{Capture, Snapshot};
use crate::engine::instance::InstanceRef;
use crate::engine::instance::Live;
use crate::engine::Engine;
use crate::vocabulary::error::MunitionResult;

/// Reads the idle store of `live`, its memories whole when `full`.
fn capture<E: Engine>(live: &mut Live<E>, full: bool) -> MunitionResult<Capture> {
    let Snapshot {
        memories,
        globals,
        backtrace,
    } = E::snapshot(live, full)?;
    let fuel_remaining = E::fuel_remaining(&live.store)?;
    let journal = E::state_mut(&mut live.store).journal.report();
    let failure = live.failure.as_ref();
    let state = E::state(&live.store);
    Ok(Capture {
        reason: failure.map(|f| f.reason.atom()),
        trap: failure.map(|f| f.trap.atom()),
        message: failure.map(|f| f.message.clone()),
        backtrace,
        fuel_given: live.fuel_given,
        fuel_consumed: live.fuel_given.saturating_sub(fuel_remaining),
        fuel_remaining,
        execution_time_us: live.elapsed.as_micros() as u64,
        memories,
        globals,
        log: state.log_terms(),
        log_dropped: state.log.dropped,
        output: state.output(),
        journal,
    })
}

fn read<E: Engine>(instance: &InstanceRef<E>, mode: Atom) -> MunitionResult<Capture> {
    let mut slot = instance.lock();
    capture(slot.idle()?, mode == atoms::full())
}

per_engine! {
    /// Reads a failed store: `mode` `:full` compresses every memory whole,
    /// `:minimal` gives their sizes only.
    #[rustler::nif(schedule = "DirtyCpu")]
    fn [instance_capture, wasmi_instance_capture, component_instance_capture](
        instance: ResourceArc<InstanceRef<E>>,
        mode: Atom,
    ) -> MunitionResult<Capture> {
        read(&instance, mode)
    }
}
