//! The NIFs, the top layer: each names the engine it acts for and calls
//! the code written once over the seam (`engine::Engine`). The Wasmtime
//! engine's NIFs keep their first names (`module_*`, `instance_*`), the
//! Wasmi engine's are the same names with `wasmi_` in front; the two take
//! and give the same shapes. Besides: the host's (`host_*`), the analyser's
//! scans (`memory_*`, `zstd_*`) and the fuel meter's (`meter_*`).

pub mod analyser;
pub mod capture;
pub mod engine;
pub mod host;
pub mod instance;
pub mod memory;
pub mod meter;
pub mod module;
