//! The NIFs, the top layer: each names the engine it acts for and calls
//! the code written once over the seam (`engine::Engine`). The Wasmtime
//! engine's NIFs keep their first names (`module_*`, `instance_*`), the
//! Wasmi engine's are the same names with `wasmi_` in front; the two take
//! and give the same shapes. Besides: the host's (`host_*`), the analyser's
//! scans (`memory_*`, `zstd_*`), the fuel meter's (`meter_*`) and a
//! pool's places (`pool_*`).

/// Declares a NIF once for both engines: `fn [wasmtime_name, wasmi_name]`
/// with a body in terms of `E`, the engine. Each is made in a module of
/// its name where `E` is that engine, so the NIF names stay as they were
/// and the two cannot drift apart.
macro_rules! per_engine {
    ($(#[$meta:meta])* fn [$wasmtime:ident, $wasmi:ident] $($rest:tt)*) => {
        pub mod $wasmtime {
            #[allow(unused_imports)]
            use super::*;
            #[allow(dead_code)]
            type E = crate::engine::wasmtime::Wasmtime;
            $(#[$meta])*
            fn $wasmtime $($rest)*
        }

        pub mod $wasmi {
            #[allow(unused_imports)]
            use super::*;
            #[allow(dead_code)]
            type E = crate::engine::wasmi::Wasmi;
            $(#[$meta])*
            fn $wasmi $($rest)*
        }
    };
    ($(#[$meta:meta])* fn [$wasmtime:ident, $wasmi:ident, $component:ident] $($rest:tt)*) => {
        per_engine! { $(#[$meta])* fn [$wasmtime, $wasmi] $($rest)* }

        pub mod $component {
            #[allow(unused_imports)]
            use super::*;
            #[allow(dead_code)]
            type E = crate::engine::component::Component;
            $(#[$meta])*
            fn $component $($rest)*
        }
    };
}

pub mod analyser;
pub mod capture;
pub mod engine;
pub mod host;
pub mod instance;
pub mod memory;
pub mod meter;
pub mod module;
pub mod pool;
pub mod snapshot;
