//! WASI 0.2 (preview 2) for components: `wasmtime-wasi`'s own
//! implementation over the same per-store WASI state as preview 1
//! (`WasiRun`): its context (`WasiP1Ctx` holds the preview-2 context and
//! resource table the preview-1 functions are written over), the bounded
//! stdout and stderr capture, stdin, arguments and environment (never the
//! host's), and preopens. The engine links it (`engine::component`).

use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::host::state::StoreState;

/// A store's WASI 0.2 context: the call's, or an empty one (no stdio, no
/// arguments, no environment, no files) for a call granted none.
impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi().ctx.ctx()
    }
}
