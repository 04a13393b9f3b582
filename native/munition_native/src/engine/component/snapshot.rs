//! A component's side of a snapshot (`engine::snapshot`): Wizer reads an
//! idle Munition store by calling the accessor functions its
//! instrumentation added to the component (the instance
//! `wasmtime:wizer/access`, one function per memory and mutable global of
//! each core instance), in the store the initialisation ran in.
//!
//! What the component model keeps outside the core instances cannot be
//! written into a component: the handles a guest holds to the host's
//! resources (a WASI stream, a pollable) are numbers in its memory, and
//! the resources behind them are entries of the store's resource table
//! that a fresh instance does not have. An initialisation that leaves any
//! open is refused, naming how many.

use std::time::{Duration, Instant};

use wasmtime::component::{ComponentType, Instance, Lift, WasmList};
use wasmtime::Store;
use wasmtime_wasi::WasiView;
use wasmtime_wizer::ComponentInstanceState;

use super::Component;
use crate::engine::instance::Live;
use crate::engine::snapshot;
use crate::host::state::StoreState;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// Fuel for Wizer's accessors, whatever the initialisation left: each is
/// a few instructions (a memory grown by a page, a global read), and they
/// are Munition's reading, not the guest's work.
const READ_FUEL: u64 = 10_000_000;

/// How long reading may take, past the initialisation's own deadline: the
/// accessors' wasm runs under the epoch deadline like any.
const READ_TIME: Duration = Duration::from_secs(10);

/// An idle store and its instance, as Wizer reads them. An accessor that
/// fails (a memory that cannot grow by the page Wizer's accessor needs, an
/// export that is not there) is noted, and the snapshot refused.
struct Reader<'a> {
    store: &'a mut Store<StoreState>,
    instance: Instance,
    failed: Option<String>,
}

impl Reader<'_> {
    /// Calls `func` of the exported `instance`, a function of no
    /// parameters and one result, and gives its result to `use_ret`.
    async fn call<R, O>(
        &mut self,
        instance: &str,
        func: &str,
        use_ret: impl FnOnce(&Store<StoreState>, R) -> O,
    ) -> Option<O>
    where
        R: ComponentType + Lift + Send + Sync + 'static,
    {
        if self.failed.is_some() {
            return None;
        }
        let result: wasmtime::Result<O> = async {
            let (_, parent) = self
                .instance
                .get_export(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::Error::msg(format!("no export {instance}")))?;
            let (_, index) = self
                .instance
                .get_export(&mut *self.store, Some(&parent), func)
                .ok_or_else(|| wasmtime::Error::msg(format!("no export {instance}#{func}")))?;
            let typed = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, index)?;
            let (ret,) = typed.call_async(&mut *self.store, ()).await?;
            Ok(use_ret(&*self.store, ret))
        }
        .await;
        match result {
            Ok(output) => Some(output),
            Err(error) => {
                self.failed = Some(format!("{instance}#{func}: {}", error_chain(&error)));
                None
            }
        }
    }
}

impl ComponentInstanceState for Reader<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        // `contents` is Wizer's and must be called: with nothing when the
        // accessor failed (the snapshot is refused then).
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        })
        .await;
        if let Some(contents) = contents.take() {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, r| r).await.unwrap_or(0)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, r| r).await.unwrap_or(0)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, r: f32| r.to_bits())
            .await
            .unwrap_or(0)
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, r: f64| r.to_bits())
            .await
            .unwrap_or(0)
    }
}

/// The snapshot of `live`, an idle instance of the instrumented component
/// `wasm` whose initialisation returned.
pub fn snapshot(
    live: &mut Live<Component>,
    wasm: &[u8],
    provenance: &[u8],
) -> MunitionResult<Vec<u8>> {
    let instance = *live.instantiated()?;
    let open = live.store.data_mut().ctx().table.iter_mut().count();
    if open > 0 {
        return Err(MunitionError::NotCapturable(format!(
            "the initialisation left {open} WASI 0.2 resource(s) open (streams, pollables, \
             descriptors...): the guest keeps their handles in its memory, while the resources \
             live in the store's table, which a fresh instance does not have"
        )));
    }
    live.store
        .set_fuel(READ_FUEL)
        .map_err(|e| MunitionError::InvalidState(error_chain(&e)))?;
    live.store.data_mut().deadline = Instant::now() + READ_TIME;
    let mut reader = Reader {
        store: &mut live.store,
        instance,
        failed: None,
    };
    let bytes = snapshot::snapshot_component(wasm, &mut reader, provenance)?;
    match reader.failed {
        Some(why) => Err(MunitionError::NotCapturable(format!(
            "reading the instance failed: {why}"
        ))),
        None => Ok(bytes),
    }
}
