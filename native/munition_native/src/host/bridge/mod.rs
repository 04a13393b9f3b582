//! The bridge that lets a guest call a host function written in Elixir,
//! written once for every engine.
//!
//! A guest's call to an Elixir host function sends
//! `{:munition_host_call, call, index, args, fuel_remaining}` to the process
//! that drives the guest (the task of `Munition.Instance.Manager`), and the
//! guest is suspended until the answer is on the call's channel: how it is
//! suspended is the engine's (a parked fiber on Wasmtime, a resumable host
//! trap on Wasmi). The NIF that was running the guest returns
//! `{:waiting, ms}` (see `wakeup`), which frees the scheduler thread; that
//! process runs the host function and waits. Every message put on the
//! channel also sends it `:munition_wake`, and it resumes the guest.
//! Resumed, the guest serves the Elixir side's reads and writes of its
//! memory (`host_read/3`, `host_write/3`) in `serve`, until the reply
//! arrives (`host_reply/3`) or the call's deadline passes.

pub mod channel;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use rustler::{Atom, Encoder, Env, LocalPid, Term};

pub use self::channel::{BridgeEnv, HostBridge, HostCallRef, HostMessage, Pending, SavedReply};

use crate::atoms;
use crate::host::context::{fail, HostCtx, Stop};
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::guest_memory::bounds;
use crate::vocabulary::term::{brief, bytes_term};
use crate::vocabulary::trap::{Reason, TrapKind};
use crate::vocabulary::value::{atom_type, to_value, Value, ValueType};

/// Sends the guest's call of the Elixir host function at `index` of the
/// call's list, imported as `name` with `results`, to the serving process;
/// returns what to wait for. No serving process is a failure of the call.
pub fn call(
    ctx: &mut dyn HostCtx,
    name: &Arc<str>,
    results: Option<&Arc<[ValueType]>>,
    index: u32,
    args: impl Encoder,
) -> Result<Pending, Stop> {
    let bridge = ctx.state().bridge.clone();
    let Some(bridge) = bridge.filter(|bridge| bridge.env().is_some()) else {
        return Err(fail(
            ctx,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: no process serves host functions"),
        ));
    };
    let fuel = ctx.fuel().map_err(|e| {
        fail(
            ctx,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: cannot read the fuel left: {e}"),
        )
    })?;
    let (sender, receiver) = crossbeam_channel::unbounded();
    let call = rustler::ResourceArc::new(HostCallRef {
        sender,
        driver: bridge.driver,
    });
    let message = (atoms::munition_host_call(), call, index, args, fuel);
    let sent = bridge
        .env()
        .is_some_and(|env| env.send(&bridge.driver, message).is_ok());
    if !sent {
        return Err(fail(
            ctx,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: the serving process is gone"),
        ));
    }
    Ok(Pending {
        receiver,
        name: name.clone(),
        results: results.cloned(),
    })
}

/// What serving a pending call came to.
pub enum Served {
    /// The reply: resume the guest with these results.
    Reply(Vec<Value>),
    /// A component's reply, to decode against its WIT types.
    Saved(SavedReply),
    /// Nothing yet: wait until woken, or the deadline.
    Waiting,
    Stopped(Stop),
}

/// Sends `{:munition_memory, tag, {:ok, bytes} | :ok | {:error,
/// :out_of_bounds}}` to the process that asked, through the environment of
/// the NIF call serving the guest.
/// A reply of the wrong kind (core values for a component's import, or a
/// term kept for a component for a core import): the Elixir side broke the
/// protocol; the guest's call fails rather than guess.
fn untyped(ctx: &mut dyn HostCtx, name: &str) -> Stop {
    fail(
        ctx,
        Reason::HostError,
        TrapKind::HostError,
        format!("{name}: the reply was of the wrong kind for this import"),
    )
}

fn answer(env: Option<Env>, reply_to: &LocalPid, tag: u64, result: Result<Option<&[u8]>, ()>) {
    // Requests are served only while a NIF call runs the guest, under
    // `BridgeEnv`: without an environment nothing can be sent.
    let Some(env) = env else {
        return;
    };
    let answer = match result {
        Ok(Some(bytes)) => (atoms::ok(), bytes_term(env, bytes)).encode(env),
        Ok(None) => atoms::ok().encode(env),
        Err(()) => (atoms::error(), atoms::out_of_bounds()).encode(env),
    };
    // The requester may be gone; nobody is left to tell.
    let _ = env.send(reply_to, (atoms::munition_memory(), tag, answer));
}

/// Serves what arrived for the guest's pending call: memory requests, then
/// the reply; or finds nothing yet, or the deadline passed. A request
/// outside guest memory is the guest's fault: recorded (the first failure
/// stands) to end its call when the reply comes.
pub fn serve(ctx: &mut dyn HostCtx, pending: &Pending) -> Served {
    let name = &pending.name;
    loop {
        match pending.receiver.try_recv() {
            Ok(HostMessage::Reply(Ok(values))) => {
                if ctx.state().host_failure.is_some() {
                    // A wild pointer seen while serving a memory request.
                    return Served::Stopped(Stop::Failed(format!("{name}: failed")));
                }
                let Some(results) = &pending.results else {
                    return Served::Stopped(untyped(ctx, name));
                };
                if values.len() != results.len()
                    || values
                        .iter()
                        .zip(results.iter())
                        .any(|(value, ty)| value.ty() != *ty)
                {
                    return Served::Stopped(fail(
                        ctx,
                        Reason::HostError,
                        TrapKind::HostError,
                        format!("{name}: returned values that do not match its declared results"),
                    ));
                }
                return Served::Reply(values);
            }
            Ok(HostMessage::Saved(reply)) => {
                if ctx.state().host_failure.is_some() {
                    return Served::Stopped(Stop::Failed(format!("{name}: failed")));
                }
                if pending.results.is_some() {
                    return Served::Stopped(untyped(ctx, name));
                }
                return Served::Saved(reply);
            }
            Ok(HostMessage::Reply(Err(message))) => {
                return Served::Stopped(fail(
                    ctx,
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: {message}"),
                ));
            }
            Ok(HostMessage::Read {
                ptr,
                len,
                reply_to,
                tag,
            }) => {
                let (memory, state) = ctx.memory_and_state();
                let bridge = state.bridge.clone();
                let env = bridge.as_ref().and_then(|bridge| bridge.env());
                match memory.and_then(|data| Some(&data[bounds(data.len(), ptr, len)?])) {
                    Some(bytes) => answer(env, &reply_to, tag, Ok(Some(bytes))),
                    None => {
                        state.fail(
                            Reason::Trap,
                            TrapKind::MemoryOutOfBounds,
                            format!("{name}: read of {len} bytes at {ptr} is outside guest memory"),
                        );
                        answer(env, &reply_to, tag, Err(()));
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
                let (memory, state) = ctx.memory_and_state();
                let bridge = state.bridge.clone();
                let env = bridge.as_ref().and_then(|bridge| bridge.env());
                let range = memory
                    .as_ref()
                    .and_then(|data| bounds(data.len(), ptr, len));
                match memory.zip(range) {
                    Some((data, range)) => {
                        data[range].copy_from_slice(&bytes);
                        state.journal.wrote(ptr, &bytes);
                        answer(env, &reply_to, tag, Ok(None));
                    }
                    None => {
                        state.fail(
                            Reason::Trap,
                            TrapKind::MemoryOutOfBounds,
                            format!(
                                "{name}: write of {len} bytes at {ptr} is outside guest memory"
                            ),
                        );
                        answer(env, &reply_to, tag, Err(()));
                    }
                }
            }
            Err(TryRecvError::Empty) => {
                let state = ctx.state();
                if Instant::now() < state.deadline {
                    return Served::Waiting;
                }
                return Served::Stopped(Stop::Failed(state.time_out(format!(
                    "{name}: host function did not return before the deadline"
                ))));
            }
            Err(TryRecvError::Disconnected) => {
                return Served::Stopped(fail(
                    ctx,
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: host function ended without replying"),
                ));
            }
        }
    }
}

/// Converts an Elixir host function's return value into wasm values.
fn decode_results(term: Term, types: &[Atom]) -> Result<Vec<Value>, String> {
    // No results: whatever the function returned is ignored.
    if types.is_empty() {
        return Ok(vec![]);
    }
    let terms: Vec<Term> = if types.len() == 1 {
        vec![term]
    } else {
        term.decode().map_err(|_| {
            format!(
                "expected a list of {} results, got: {}",
                types.len(),
                brief(term)
            )
        })?
    };
    if terms.len() != types.len() {
        return Err(format!(
            "expected {} result(s), got {}",
            types.len(),
            terms.len()
        ));
    }
    terms
        .iter()
        .zip(types)
        .enumerate()
        .map(|(position, (t, ty))| {
            let ty = atom_type(*ty).ok_or("unsupported result type")?;
            to_value(*t, ty, "result", position).map_err(|e| e.to_string())
        })
        .collect()
}

/// Delivers the Elixir side's answer, `{:ok, value_or_values}` or
/// `{:error, message}`, to the guest waiting on `call`.
pub fn reply(env: Env, call: &HostCallRef, reply: Term, result_types: &[Atom]) {
    let message = match reply.decode::<(Atom, Term)>() {
        Ok((tag, value)) if tag == atoms::ok() => decode_results(value, result_types),
        // A message that is not a string is shown as the term it is.
        Ok((tag, value)) if tag == atoms::error() => Err(value
            .decode::<String>()
            .unwrap_or_else(|_| format!("{value:?}"))),
        _ => Err(format!("host function returned {}", brief(reply))),
    };
    // The guest may have stopped waiting (deadline): then nobody hears this.
    call.deliver(env, HostMessage::Reply(message));
}

/// Tags matching memory answers to requests.
static MEMORY_TAGS: AtomicU64 = AtomicU64::new(0);

/// Queues a memory request for the suspended guest to serve, and wakes its
/// driver. Returns the tag of the `{:munition_memory, tag, result}` answer the
/// calling process will receive: nothing blocks while the guest is scheduled.
fn request_memory(
    env: Env,
    call: &HostCallRef,
    message: impl FnOnce(LocalPid, u64) -> HostMessage,
) -> MunitionResult<u64> {
    let tag = MEMORY_TAGS.fetch_add(1, Ordering::Relaxed);
    if call.deliver(env, message(env.pid(), tag)) {
        Ok(tag)
    } else {
        Err(MunitionError::InvalidState(
            "the guest call has ended".into(),
        ))
    }
}

/// Asks the guest for `len` bytes at `ptr` of its memory.
pub fn request_read(env: Env, call: &HostCallRef, ptr: u64, len: u64) -> MunitionResult<u64> {
    request_memory(env, call, |reply_to, tag| HostMessage::Read {
        ptr,
        len,
        reply_to,
        tag,
    })
}

/// Asks the guest to take `bytes` at `ptr` of its memory.
pub fn request_write(
    env: Env,
    call: &HostCallRef,
    ptr: u64,
    bytes: Vec<u8>,
) -> MunitionResult<u64> {
    request_memory(env, call, |reply_to, tag| HostMessage::Write {
        ptr,
        bytes,
        reply_to,
        tag,
    })
}
