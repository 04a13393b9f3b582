//! `engine_impl!`: what every engine's `impl Engine` has in the same form,
//! written once.

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
                disk: Option<&crate::engine::compile::disk::Disk>,
            ) -> crate::vocabulary::error::MunitionResult<crate::engine::module::Compiled<Self>> {
                module::compile(wasm, facts, hash, disk)
            }

            $($items)*
        }
    };
}
