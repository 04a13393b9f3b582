//! Elixir host functions on Wasmi, over the bridge protocol of
//! `crate::bridge` (the same messages, the same `HostCallRef` handle, the
//! same `host_reply/3`, `host_read/3` and `host_write/3` NIFs).
//!
//! A guest's call of one sends `{:munition_host_call, call, index, args,
//! fuel}` to the driver and returns a host error: Wasmi suspends the whole
//! execution as a resumable host trap, so no thread and no stack is held
//! while Elixir works. The slice ends `{:waiting, ms}`; each resume serves
//! what arrived on the call's channel (memory reads and writes of the host
//! function's process, then its reply, which resumes the guest with the
//! results), or waits again, or ends the call at its deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use rustler::{Env, ResourceArc};
use wasmi::{Caller, Error, Func, FuncType, Instance, Store, Val, ValType};

use super::store::{host_fail, WasmiState};
use super::value::{from_shared, to_shared, type_from_shared};
use crate::atoms;
use crate::bridge::{send_memory_answer, HostCallRef, HostMessage};
use crate::guest_memory::{bounds, EXPORT_NAME};
use crate::trap::{HostFailure, Reason, TrapKind};
use crate::value::WasmValue;

/// The Elixir host call a suspended guest waits for.
pub struct Pending {
    receiver: Receiver<HostMessage>,
    name: Arc<str>,
    results: Arc<[ValType]>,
}

/// The Elixir host function at `index` of the call's list, imported as
/// `name` with the given signature.
pub fn elixir_func(
    store: &mut Store<WasmiState>,
    params: &[wasmtime::ValType],
    results: &[wasmtime::ValType],
    index: u32,
    name: &str,
) -> Func {
    let results: Arc<[ValType]> = results.iter().map(type_from_shared).collect();
    let ty = FuncType::new(params.iter().map(type_from_shared), results.iter().copied());
    let name: Arc<str> = name.into();
    Func::new(store, ty, move |mut caller, params, _| {
        let receiver = send_call(&mut caller, index, &name, params)?;
        caller.data_mut().pending = Some(Pending {
            receiver,
            name: name.clone(),
            results: results.clone(),
        });
        // Not a failure: Wasmi suspends the execution on it (see above).
        Err(Error::new(format!(
            "{name}: waiting for the Elixir host function"
        )))
    })
}

/// Sends the call to the driver, through the environment of the NIF call
/// running the guest; returns the channel its answers will come on.
fn send_call(
    caller: &mut Caller<'_, WasmiState>,
    index: u32,
    name: &str,
    params: &[Val],
) -> Result<Receiver<HostMessage>, Error> {
    let env_ptr = caller.data().env.load(Ordering::Acquire);
    let Some(driver) = caller.data().driver.filter(|_| !env_ptr.is_null()) else {
        return Err(host_fail(
            caller,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: no process serves host functions"),
        ));
    };
    let fuel = caller
        .get_fuel()
        .unwrap_or(0)
        .saturating_add(caller.data().reserve);
    let (sender, receiver) = crossbeam_channel::unbounded();
    let call = ResourceArc::new(HostCallRef::new(sender, driver));
    // SAFETY: `env_ptr` is the environment of the NIF call running this
    // guest on this very thread, set by `execution::advance` for its
    // duration and cleared after.
    let env = unsafe { Env::new(&(), env_ptr) };
    let args: Vec<WasmValue> = params.iter().map(|v| WasmValue(to_shared(v))).collect();
    if env
        .send(
            &driver,
            (atoms::munition_host_call(), call, index, args, fuel),
        )
        .is_err()
    {
        return Err(host_fail(
            caller,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: the serving process is gone"),
        ));
    }
    Ok(receiver)
}

/// What a waiting guest's channel had.
pub enum Answer {
    /// The reply: resume the guest with these results.
    Values(Vec<Val>),
    Failed(HostFailure),
    /// Nothing yet: wait until woken, or the deadline.
    Waiting,
}

fn failed(reason: Reason, trap: TrapKind, message: String) -> Answer {
    Answer::Failed(HostFailure {
        reason,
        trap,
        message,
    })
}

/// Serves what arrived for the guest's pending host call.
pub fn serve(env: Env, store: &mut Store<WasmiState>, instance: Option<Instance>) -> Answer {
    let Some(pending) = store.data_mut().pending.take() else {
        return failed(
            Reason::HostError,
            TrapKind::HostError,
            "the guest waits for no host call".into(),
        );
    };
    let name = &pending.name;
    let memory = instance.and_then(|instance| instance.get_memory(&*store, EXPORT_NAME));
    loop {
        match pending.receiver.try_recv() {
            Ok(HostMessage::Reply(Ok(values))) => {
                // A wild pointer seen while serving a memory request.
                if let Some(failure) = store.data().host_failure.clone() {
                    return Answer::Failed(failure);
                }
                let values: Option<Vec<Val>> = values.iter().map(|v| from_shared(v).ok()).collect();
                return match values {
                    Some(values)
                        if values.len() == pending.results.len()
                            && values
                                .iter()
                                .zip(pending.results.iter())
                                .all(|(v, t)| v.ty() == *t) =>
                    {
                        Answer::Values(values)
                    }
                    _ => failed(
                        Reason::HostError,
                        TrapKind::HostError,
                        format!("{name}: returned values that do not match its declared results"),
                    ),
                };
            }
            Ok(HostMessage::Reply(Err(message))) => {
                return failed(
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: {message}"),
                )
            }
            Ok(HostMessage::Read {
                ptr,
                len,
                reply_to,
                tag,
            }) => {
                let data = memory.map(|memory| memory.data(&*store)).unwrap_or(&[]);
                match bounds(data.len(), ptr, len) {
                    Some(range) => send_memory_answer(env, &reply_to, tag, Ok(Some(&data[range]))),
                    None => {
                        out_of_bounds(
                            store,
                            format!("{name}: read of {len} bytes at {ptr} is outside guest memory"),
                        );
                        send_memory_answer(env, &reply_to, tag, Err(()));
                    }
                }
            }
            Ok(HostMessage::Write {
                ptr,
                bytes,
                reply_to,
                tag,
            }) => {
                let len = bytes.len() as u64;
                let range = memory.and_then(|memory| bounds(memory.data(&*store).len(), ptr, len));
                match (memory, range) {
                    (Some(memory), Some(range)) => {
                        memory.data_mut(&mut *store)[range].copy_from_slice(&bytes);
                        send_memory_answer(env, &reply_to, tag, Ok(None));
                    }
                    _ => {
                        out_of_bounds(
                            store,
                            format!(
                                "{name}: write of {len} bytes at {ptr} is outside guest memory"
                            ),
                        );
                        send_memory_answer(env, &reply_to, tag, Err(()));
                    }
                }
            }
            Err(TryRecvError::Empty) if Instant::now() >= store.data().deadline => {
                return failed(
                    Reason::Timeout,
                    TrapKind::Interrupt,
                    format!("{name}: host function did not return before the deadline"),
                );
            }
            Err(TryRecvError::Empty) => {
                store.data_mut().pending = Some(pending);
                return Answer::Waiting;
            }
            Err(TryRecvError::Disconnected) => {
                return failed(
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: host function ended without replying"),
                );
            }
        }
    }
}

/// A memory request outside guest memory: the guest's fault, recorded (the
/// first failure stands) to end its call when the reply comes.
fn out_of_bounds(store: &mut Store<WasmiState>, message: String) {
    store.data_mut().host_failure.get_or_insert(HostFailure {
        reason: Reason::Trap,
        trap: TrapKind::MemoryOutOfBounds,
        message,
    });
}
