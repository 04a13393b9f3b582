//! What each engine is and offers, and the capacity they share.

use munition_core::capacity::{self, Requested};
use once_cell::sync::Lazy;
use rustler::Atom;

use crate::atoms;
use crate::engine::settings::{configure, settings};
use crate::engine::wasmi::config::WASMI_VERSION;
use crate::engine::wasmtime::config::{ENGINE, WASMTIME_VERSION};
use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::trap::{Reason, TrapKind};

/// What `engine_configure/1` is given: `nil` for the default of each key.
#[derive(rustler::NifMap)]
#[rustler(decode)]
struct EngineConfig {
    max_instances: Option<u64>,
    max_memories_per_module: Option<u64>,
    max_concurrent_compiles: Option<u64>,
}

/// Sets the engines' capacity before it is first used. `:ok`, or
/// `{:error, {:bad_config, message}}` for values that do not fit (checked
/// first, even when it is too late), or `{:error, {:too_late, message}}` once
/// the Wasmtime engine exists: its pools are reserved and cannot be resized.
#[rustler::nif]
fn engine_configure(config: EngineConfig) -> MunitionResult<Atom> {
    configure(Requested {
        max_instances: config.max_instances,
        max_memories_per_module: config.max_memories_per_module,
        max_concurrent_compiles: config.max_concurrent_compiles,
    })?;
    Ok(atoms::ok())
}

fn crash_reasons() -> Vec<Atom> {
    Reason::ALL.iter().map(|reason| reason.atom()).collect()
}

fn trap_kinds() -> Vec<Atom> {
    TrapKind::ALL.iter().map(|kind| kind.atom()).collect()
}

/// What the Wasmtime engine is and offers, and the vocabulary of outcomes
/// the native side can produce (for `Munition.Runtime.Config` and the
/// vocabulary test).
#[derive(rustler::NifMap)]
#[rustler(encode)]
struct EngineInfo {
    engine: Atom,
    version: String,
    features: Vec<Atom>,
    crash_reasons: Vec<Atom>,
    trap_kinds: Vec<Atom>,
    max_instances: u64,
    max_memories_per_module: u64,
    max_tables_per_module: u64,
    max_table_elements: u64,
    max_memory_bytes: u64,
    max_concurrent_compiles: u64,
    reserved_address_space: u64,
}

/// `%{engine: :wasmtime, version: "48.0.8", features: [atom], crash_reasons:
/// [atom], trap_kinds: [atom]}` and the capacity: `max_instances`,
/// `max_memories_per_module`, `max_tables_per_module`, `max_table_elements`,
/// `max_memory_bytes`, `max_concurrent_compiles`, and the address space the
/// pools reserve (`reserved_address_space`, bytes).
#[rustler::nif]
fn engine_info() -> EngineInfo {
    Lazy::force(&ENGINE);
    let settings = settings();
    EngineInfo {
        engine: atoms::wasmtime(),
        version: WASMTIME_VERSION.to_string(),
        features: vec![
            atoms::fuel(),
            atoms::pooling(),
            atoms::coredump(),
            atoms::fibers(),
        ],
        crash_reasons: crash_reasons(),
        trap_kinds: trap_kinds(),
        max_instances: settings.max_instances,
        max_memories_per_module: settings.max_memories_per_module,
        max_tables_per_module: capacity::MAX_TABLES_PER_MODULE,
        max_table_elements: capacity::MAX_TABLE_ELEMENTS,
        max_memory_bytes: capacity::MAX_MEMORY_BYTES,
        max_concurrent_compiles: settings.max_concurrent_compiles,
        reserved_address_space: settings.reserved_bytes,
    }
}

/// What `wasmi_engine_info/0` reports, as `engine_info/0` does for Wasmtime.
#[derive(rustler::NifMap)]
#[rustler(encode)]
struct WasmiEngineInfo {
    engine: Atom,
    version: String,
    features: Vec<Atom>,
    crash_reasons: Vec<Atom>,
    trap_kinds: Vec<Atom>,
}

/// `%{engine: :wasmi, version: "2.0.0", features: [:fuel, :interpreter,
/// :lazy_translation], crash_reasons: [atom], trap_kinds: [atom]}`.
#[rustler::nif]
fn wasmi_engine_info() -> WasmiEngineInfo {
    WasmiEngineInfo {
        engine: atoms::wasmi(),
        version: WASMI_VERSION.to_string(),
        features: vec![
            atoms::fuel(),
            atoms::interpreter(),
            atoms::lazy_translation(),
        ],
        crash_reasons: crash_reasons(),
        trap_kinds: trap_kinds(),
    }
}
