//! A component's imports that Elixir serves: each function of an imported
//! interface (other than WASI's) is linked to one closure that finds, in the
//! store, which Elixir host function the capability gate linked it to, sends
//! it the arguments as terms (`value`'s table) and waits for the reply with
//! the guest's fiber parked (no thread held), then decodes the reply
//! against the import's WIT result type. A reply of the wrong type, an
//! `{:error, _}` or a raise is a `:host_error` crash, as for core modules.

use std::future::Future;
use std::sync::Arc;

use rustler::{Atom, Encoder, Env, Term};
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Type, Val};
use wasmtime::{Error, StoreContextMut};

use super::module::call_name;
use super::value::{to_term, to_val};
use crate::atoms;
use crate::host::bridge::{self, SavedReply, Served};
use crate::host::context::{fail, HostCtx, Stop};
use crate::host::state::StoreState;
use crate::host::wakeup::SuspendOnce;
use crate::host::wasi::caller::error;
use crate::host::wasi::error::error_chain;
use crate::vocabulary::term::brief;
use crate::vocabulary::trap::{Reason, TrapKind};

/// A component's store, seen from a host function: it has no memory
/// Elixir may read (a component's values arrive typed).
impl HostCtx for StoreContextMut<'_, StoreState> {
    fn state(&mut self) -> &mut StoreState {
        self.data_mut()
    }

    fn memory_and_state(&mut self) -> (Option<&mut [u8]>, &mut StoreState) {
        (None, self.data_mut())
    }

    fn fuel(&mut self) -> Result<u64, String> {
        self.get_fuel().map_err(|e| error_chain(&e))
    }

    fn charge(&mut self, cost: u64) -> Result<(), Stop> {
        let fuel = self.fuel().map_err(|e| {
            Stop::Failed(self.data_mut().fail(
                Reason::HostError,
                TrapKind::HostError,
                format!("cannot read the fuel left: {e}"),
            ))
        })?;
        let left = fuel.checked_sub(cost);
        // Setting fuel fails only on a store without fuel, which every
        // store has: the read above would have failed first.
        let _ = self.set_fuel(left.unwrap_or(0));
        left.map(|_| ()).ok_or(Stop::OutOfFuel)
    }
}

/// The arguments of an import's call, as a list of terms.
struct Args<'a> {
    values: &'a [Val],
    types: Vec<Type>,
}

impl Encoder for Args<'_> {
    fn encode<'b>(&self, env: Env<'b>) -> Term<'b> {
        self.values
            .iter()
            .zip(&self.types)
            .map(|(value, ty)| to_term(env, value, ty))
            .collect::<Vec<_>>()
            .encode(env)
    }
}

/// The reply, decoded against the import's result types: `{:ok, value}`
/// (the value ignored for a function without results) or `{:error,
/// message}`.
fn decode(reply: &SavedReply, name: &str, results: &[Type]) -> Result<Vec<Val>, String> {
    reply.env.run(|env| {
        let term = reply.term.load(env);
        let (tag, value) = term
            .decode::<(Atom, Term)>()
            .map_err(|_| format!("{name}: host function returned {}", brief(term)))?;
        if tag == atoms::error() {
            let message = value.decode::<String>().unwrap_or_else(|_| brief(value));
            return Err(format!("{name}: {message}"));
        }
        if tag != atoms::ok() {
            return Err(format!("{name}: host function returned {}", brief(term)));
        }
        results
            .iter()
            .map(|ty| to_val(value, ty, "result").map_err(|e| format!("{name}: {e}")))
            .collect()
    })
}

type HostFuture<'a> = Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>;

/// The function `name` of imported `interface` (`""`: the root), served by
/// whichever Elixir host function the call's links give it.
pub fn elixir_function(
    interface: &str,
    name: &str,
) -> impl for<'a> Fn(
    StoreContextMut<'a, StoreState>,
    ComponentFunc,
    &'a [Val],
    &'a mut [Val],
) -> HostFuture<'a>
       + Send
       + Sync
       + 'static {
    let (interface, name): (Arc<str>, Arc<str>) = (interface.into(), name.into());
    let import: Arc<str> = call_name(&interface, &name).into();
    move |mut store, ty, params, results| {
        let (interface, name, import) = (interface.clone(), name.clone(), import.clone());
        Box::new(async move {
            let index = store
                .data()
                .component_links
                .iter()
                .find(|(i, n, _)| **i == *interface && **n == *name)
                .map(|(_, _, index)| *index);
            let Some(index) = index else {
                let message = format!("{import}: no host function is linked to this import");
                return Err(error(fail(
                    &mut store,
                    Reason::HostError,
                    TrapKind::HostError,
                    message,
                )));
            };
            let args = Args {
                values: params,
                types: ty.params().map(|(_, t)| t).collect(),
            };
            let result_types: Vec<Type> = ty.results().collect();
            let pending = bridge::call(&mut store, &import, None, index, args).map_err(error)?;
            loop {
                match bridge::serve(&mut store, &pending) {
                    Served::Saved(reply) => match decode(&reply, &import, &result_types) {
                        Ok(values) => {
                            for (slot, value) in results.iter_mut().zip(values) {
                                *slot = value;
                            }
                            return Ok(());
                        }
                        Err(message) => {
                            let stop =
                                fail(&mut store, Reason::HostError, TrapKind::HostError, message);
                            return Err::<(), Error>(error(stop));
                        }
                    },
                    // `serve` fails a component's call answered with core values.
                    Served::Reply(_) => unreachable!("a component's reply is saved"),
                    Served::Waiting => SuspendOnce(false).await,
                    Served::Stopped(stop) => return Err(error(stop)),
                }
            }
        })
    }
}
