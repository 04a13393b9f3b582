//! The host's NIFs: the built-ins' table, and the Elixir side of the
//! bridge (a host function's reply, and its reads and writes of the
//! waiting guest's memory), the same for both engines.

use rustler::{Atom, Binary, Env, ResourceArc, Term};

use crate::atoms;
use crate::host::bridge::{self, HostCallRef, HostMessage, SavedReply};
use rustler::env::OwnedEnv;

use crate::vocabulary::error::MunitionResult;
use crate::vocabulary::value::type_atom;

/// One row of the table as Elixir sees it.
#[derive(rustler::NifMap)]
#[rustler(encode)]
struct BuiltinInfo {
    capability: Atom,
    module: String,
    name: String,
    params: Vec<Atom>,
    results: Vec<Atom>,
}

/// The table: `[%{capability: atom, module: string, name: string, params:
/// [type], results: [type]}]`, in table order.
#[rustler::nif]
fn host_builtins() -> Vec<BuiltinInfo> {
    crate::host::all()
        .map(|builtin| BuiltinInfo {
            capability: (builtin.capability)(),
            module: builtin.module.to_string(),
            name: builtin.name.to_string(),
            params: builtin.params.iter().map(type_atom).collect(),
            results: builtin.results.iter().map(type_atom).collect(),
        })
        .collect()
}

/// The Elixir side's answer: `{:ok, value_or_values}` or `{:error, message}`.
/// The answer to a component's import, `{:ok, value}` or `{:error,
/// message}`, kept as a term: the guest's side decodes it against the
/// import's WIT types.
#[rustler::nif]
fn component_host_reply(env: Env, call: ResourceArc<HostCallRef>, reply: Term) -> Atom {
    let owned = OwnedEnv::new();
    let term = owned.save(reply);
    call.deliver(env, HostMessage::Saved(SavedReply { env: owned, term }));
    atoms::ok()
}

#[rustler::nif]
fn host_reply(
    env: Env,
    call: ResourceArc<HostCallRef>,
    reply: Term,
    result_types: Vec<Atom>,
) -> Atom {
    bridge::reply(env, &call, reply, &result_types);
    atoms::ok()
}

#[rustler::nif]
fn host_read(env: Env, call: ResourceArc<HostCallRef>, ptr: u64, len: u64) -> MunitionResult<u64> {
    bridge::request_read(env, &call, ptr, len)
}

#[rustler::nif]
fn host_write(
    env: Env,
    call: ResourceArc<HostCallRef>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<u64> {
    bridge::request_write(env, &call, ptr, bytes.as_slice().to_vec())
}
