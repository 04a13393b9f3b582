//! Compiling a component with Wasmtime, and linking it once: WASI 0.2
//! (`wasmtime-wasi`'s preview-2 implementation and `wasmtime-wasi-http`'s
//! outgoing HTTP, one linker for every component), the component's other
//! imports as Elixir host functions through the bridge, and anything left
//! (a WASI interface Munition does not implement, such as
//! `wasi:http/incoming-handler`) as a function that traps if called. The
//! pre-instantiated component (`InstancePre`) makes every call's fresh
//! instance without resolving a name again. Which import a call may reach
//! is the capability gate's decision (`Munition.Host.Capabilities`), made
//! before the store exists.

use std::collections::HashMap;
use std::sync::Arc;

use munition_core::code_cache::{Key, KeyHasher};
use munition_core::limits::Facts;
use munition_core::scan::ModuleStats;
use once_cell::sync::Lazy;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Component as Native, ComponentExportIndex, InstancePre, Linker, ResourceType, Type,
};

use super::bridge::elixir_function;
use super::wit::{self, WitFunction};
use super::{Component, ENGINE};
use crate::engine::compile::disk::{self, Disk};
use crate::engine::module::{Compiled, ModuleInfo, Origin};
use crate::engine::wasmtime::config::ENGINE_KEY;
use crate::host::state::StoreState;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::error::{MunitionError, MunitionResult};

/// A compiled component, linked.
pub struct Linked {
    pub pre: InstancePre<StoreState>,
    /// The exported functions by the name a call gives: `name` at the root
    /// of the world, `interface#name` inside an exported interface.
    pub functions: HashMap<String, Arc<Function>>,
}

/// An exported function: where it is in any instance, and its WIT types.
pub struct Function {
    pub index: ComponentExportIndex,
    pub params: Vec<(String, Type)>,
    pub results: Vec<Type>,
    /// Why it cannot be called, if it cannot (see `wit::refusal`).
    pub refused: Option<String>,
}

/// What Elixir learns of a component besides what every module has.
#[derive(Clone, rustler::NifMap)]
pub struct ComponentInfo {
    pub imports: Vec<WitFunction>,
    pub exports: Vec<WitFunction>,
}

/// The WASI 0.2 interfaces `wasmtime-wasi` implements (its
/// `p2::add_to_linker_async`), and `wasmtime-wasi-http` (`http::link`), by
/// name without the version: the linker matches an import of any 0.2
/// version to them.
const WASI_P2: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/instance-network",
    "wasi:sockets/network",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

/// Whether `wasmtime-wasi` implements the interface `name` (versioned).
pub fn implemented_by_wasi(name: &str) -> bool {
    let unversioned = name.split('@').next().unwrap_or(name);
    WASI_P2.contains(&unversioned)
}

/// An interface's resource, defined for a component whose import nobody
/// implements: its handles are never made, since every function that
/// could make one traps.
struct Unimplemented;

/// WASI 0.2 as `wasmtime-wasi` implements it, every interface defined once.
static WASI_LINKER: Lazy<Result<Linker<StoreState>, String>> = Lazy::new(|| {
    let mut linker = Linker::new(&ENGINE);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| error_chain(&e))?;
    super::clock::shadow(&mut linker).map_err(|e| error_chain(&e))?;
    super::http::link(&mut linker).map_err(|e| error_chain(&e))?;
    Ok(linker)
});

/// The name a call gives an export: `name`, or `interface#name`, as the
/// component model's own core names them.
pub fn call_name(interface: &str, name: &str) -> String {
    if interface.is_empty() {
        name.to_string()
    } else {
        format!("{interface}#{name}")
    }
}

fn linker_for(component: &Native) -> MunitionResult<Linker<StoreState>> {
    let failed = |e: wasmtime::Error| {
        MunitionError::Unsupported(format!("cannot link the component: {}", error_chain(&e)))
    };
    let mut linker = WASI_LINKER
        .as_ref()
        .map_err(|message| {
            MunitionError::RuntimeFailure(format!("cannot set up Wasmtime's WASI 0.2: {message}"))
        })?
        .clone();
    let ty = component.component_type();
    for (name, item) in ty.imports(&ENGINE) {
        if implemented_by_wasi(name) {
            continue;
        }
        // Other WASI interfaces (`wasi:http/incoming-handler`) are linked
        // as traps: a plugin that imports them and never calls them runs.
        // The rest are served by Elixir, but for what cannot cross typed
        // (the gate refuses a call's host function for those).
        let wasi = name.starts_with("wasi:");
        let define = |linker: &mut Linker<StoreState>,
                      interface: &str,
                      func_name: &str,
                      func: &ComponentFunc|
         -> MunitionResult<()> {
            let mut at = if interface.is_empty() {
                linker.root()
            } else {
                linker.instance(interface).map_err(failed)?
            };
            if wasi || wit::function(interface, func_name, func).refused.is_some() {
                let message = format!(
                    "{} is not implemented by Munition",
                    call_name(interface, func_name)
                );
                at.func_new(func_name, move |_, _, _, _| {
                    Err(wasmtime::Error::msg(message.clone()))
                })
                .map_err(failed)
            } else {
                at.func_new_async(func_name, elixir_function(interface, func_name))
                    .map_err(failed)
            }
        };
        match item.ty {
            ComponentItem::ComponentFunc(func) => define(&mut linker, "", name, &func)?,
            ComponentItem::ComponentInstance(instance) => {
                for (export_name, export) in instance.exports(&ENGINE) {
                    match export.ty {
                        ComponentItem::ComponentFunc(func) => {
                            define(&mut linker, name, export_name, &func)?
                        }
                        ComponentItem::Resource(_) => linker
                            .instance(name)
                            .map_err(failed)?
                            .resource(
                                export_name,
                                ResourceType::host::<Unimplemented>(),
                                |_, _| Ok(()),
                            )
                            .map_err(failed)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(linker)
}

/// Compiles `wasm`, or with a cache directory loads the code Cranelift
/// compiled before for the same wasm (`engine::compile::disk`, as core
/// modules do), then links it: a component from the disk is linked and
/// listed exactly as a compiled one, since what the linker gives it is
/// Munition's (this build's WASI and the call's Elixir functions), not the
/// file's.
pub fn compile(
    wasm: &[u8],
    facts: Facts,
    hash: String,
    disk: Option<&Disk>,
) -> MunitionResult<Compiled<Component>> {
    let Some(disk) = disk else {
        return link(compile_new(wasm)?, facts, hash, Origin::Compiled);
    };
    let key = component_key(&disk.wasm_hash);
    // Validation is not repeated for code from the disk: the same wasm was
    // validated under the same engine configuration (both in the key)
    // before its code was stored.
    if let Some(component) = from_disk(disk, &key) {
        return link(component, facts, hash, Origin::Disk);
    }
    let component = compile_new(wasm)?;
    let compiled = link(component, facts, hash, Origin::Compiled)?;
    // Stored once linked: a component Munition cannot link is refused again
    // at every compile, and its code is not worth a file.
    match compiled.native.pre.component().serialize() {
        Ok(code) => disk::store(disk.dir, &key, &code),
        Err(error) => disk::reject(disk.dir, &key, &error_chain(&error)),
    }
    Ok(compiled)
}

/// A component's key: the engine's, and the hash of the wasm compiled. Its
/// own domain, so that a core module's code is never loaded as a
/// component's (`Component::deserialize` would refuse it, but only after
/// the unsafe call).
fn component_key(wasm_hash: &str) -> Key {
    KeyHasher::new("munition wasmtime component")
        .part(ENGINE_KEY.bytes())
        .part(wasm_hash)
        .key()
}

/// The component whose code is stored under `key`, if a file passes every
/// check of `code_cache::load` and Wasmtime's own (its version and the
/// engine's configuration again, and that the artifact is a component's).
fn from_disk(disk: &Disk, key: &Key) -> Option<Native> {
    let payload = disk::load(disk.dir, key)?;
    // SAFETY: `Component::deserialize_file` requires a file holding what
    // `Component::serialize` produced (Wasmtime ignores what follows its
    // object: the trailer), unmodified while the component lives. Its path
    // is the descriptor through which `code_cache::load` checked the file
    // (`Payload::path`, open until the call returns): in a directory and a
    // file owned by this process's effective uid and writable by nobody
    // else, with the trailer of this key, the length and the digest it was
    // stored with; and only `compile` above stores under a component key,
    // what `serialize` returned. Files are replaced by renaming, never
    // written in place. Only a process of the same uid could write other
    // bytes there, and it could do worse to this process directly: outside
    // what this cache defends against (see `munition_core::code_cache`).
    match unsafe { Native::deserialize_file(&ENGINE, payload.path()) } {
        Ok(component) => Some(component),
        Err(error) => {
            disk::reject(disk.dir, key, &error_chain(&error));
            None
        }
    }
}

fn compile_new(wasm: &[u8]) -> MunitionResult<Native> {
    Native::new(&ENGINE, wasm).map_err(|e| MunitionError::InvalidModule(error_chain(&e)))
}

/// Links `component` once (`linker_for`), pre-instantiates it, and lists
/// its world.
fn link(
    component: Native,
    facts: Facts,
    hash: String,
    origin: Origin,
) -> MunitionResult<Compiled<Component>> {
    let pre = linker_for(&component)?
        .instantiate_pre(&component)
        .map_err(|e| {
            MunitionError::Unsupported(format!("cannot link the component: {}", error_chain(&e)))
        })?;
    // The images its memories start from (on Linux a memfd per core module,
    // its data written in: 3-4 ms for the JavaScript plugin) are made here,
    // on the compile thread, rather than by the first call on a scheduler.
    // A failure is not the compile's: Wasmtime tries again, and reports it,
    // at the first instantiation.
    let _ = component.initialize_copy_on_write_image();
    let ty = component.component_type();
    let imports = wit::functions(
        ty.imports(&ENGINE).map(|(name, e)| (name, e.ty)),
        |_, _, _| {},
    );
    let mut functions = HashMap::new();
    let exports = wit::functions(
        ty.exports(&ENGINE).map(|(name, e)| (name, e.ty)),
        |interface, name, func| {
            let parent = (!interface.is_empty())
                .then(|| component.get_export_index(None, interface))
                .flatten();
            let index = component.get_export_index(parent.as_ref(), name);
            if let Some(index) = index {
                functions.insert(
                    call_name(interface, name),
                    Arc::new(Function {
                        index,
                        params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
                        results: func.results().collect(),
                        refused: wit::function(interface, name, func).refused,
                    }),
                );
            }
        },
    );
    let stats = ModuleStats {
        code_size: facts.module_size,
        function_count: facts.functions,
        data_size: facts.data_size,
        ..ModuleStats::default()
    };
    let info = ModuleInfo {
        hash,
        imports: vec![],
        exports: vec![],
        memories: vec![],
        stats,
        global_export_names: vec![],
        memory_export_names: vec![],
        component: Some(ComponentInfo { imports, exports }),
    };
    Ok(Compiled {
        native: Linked { pre, functions },
        info,
        functions: HashMap::new(),
        facts,
        origin,
    })
}
