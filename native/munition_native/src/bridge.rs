//! The bridge that lets a guest call a host function written in Elixir.
//!
//! A guest's call to an Elixir host function sends
//! `{:munition_host_call, call, index, args, fuel_remaining}` to the process
//! that drives the guest (the task of `Munition.Instance.Manager`) and suspends
//! the guest (its fiber) until the answer is on the call's channel. The NIF
//! that was running the guest returns `{:waiting, ms}` (see `wakeup`), which frees the dirty
//! scheduler thread; that process runs the host function and waits. Every
//! message put on the channel also sends it `:munition_wake`, and it resumes
//! the guest. Resumed, the guest serves the Elixir side's reads and writes of
//! its memory (`host_read/3`, `host_write/3`), until the reply arrives
//! (`host_reply/3`) or the call's deadline passes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rustler::{Atom, Binary, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::{Caller, Error, Func, FuncType, Store, Val, ValType};

use crate::atoms;
use crate::error::{error_chain, MunitionError, MunitionResult};
use crate::guest_memory;
use crate::store::{host_fail, host_timeout, HostState};
use crate::term::{brief, bytes_term};
use crate::trap::{Reason, TrapKind};
use crate::value::{atom_val_type, to_val, WasmValue};

pub enum HostMessage {
    Reply(Result<Vec<Val>, String>),
    /// A memory request of the host function's process `reply_to`; the guest
    /// answers it with `{:munition_memory, tag, result}`.
    Read {
        ptr: u64,
        len: u64,
        reply_to: LocalPid,
        tag: u64,
    },
    Write {
        ptr: u64,
        bytes: Vec<u8>,
        reply_to: LocalPid,
        tag: u64,
    },
}

/// One instance's connection to the process that serves its Elixir host
/// functions.
pub struct HostBridge {
    /// The process that drives the guest with `instance_*` NIF calls: it gets
    /// the host calls, and is woken when a suspended guest has something to
    /// read on its channel.
    driver: LocalPid,
    /// The environment of the NIF call currently running this store's guest.
    /// Sending from a dirty scheduler thread must go through that environment;
    /// it is set for the duration of each NIF call and cleared after.
    env: AtomicPtr<rustler::sys::ErlNifEnv>,
}

impl HostBridge {
    pub fn new(driver: LocalPid) -> Self {
        HostBridge {
            driver,
            env: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// Makes the calling NIF's environment available to Elixir host functions for
/// as long as the guard lives.
pub struct BridgeEnv(Option<Arc<HostBridge>>);

impl BridgeEnv {
    pub fn enter(env: Env<'_>, bridge: Option<Arc<HostBridge>>) -> Self {
        if let Some(bridge) = &bridge {
            bridge.env.store(env.as_c_arg(), Ordering::Release);
        }
        BridgeEnv(bridge)
    }
}

impl Drop for BridgeEnv {
    fn drop(&mut self) {
        if let Some(bridge) = &self.0 {
            bridge.env.store(std::ptr::null_mut(), Ordering::Release);
        }
    }
}

/// The handle an Elixir host function gets for one guest call: replies and
/// memory requests go through it.
pub struct HostCallRef {
    sender: Sender<HostMessage>,
    driver: LocalPid,
}

#[rustler::resource_impl]
impl Resource for HostCallRef {}

impl HostCallRef {
    /// The handle of one call whose answers go on `sender`, waking `driver`
    /// (the Wasmi engine's host calls are made outside this file).
    pub fn new(sender: Sender<HostMessage>, driver: LocalPid) -> Self {
        HostCallRef { sender, driver }
    }

    /// Puts `message` on the guest's channel and wakes the process driving the
    /// guest so it resumes it. `false` when the guest no longer listens.
    fn deliver(&self, env: Env, message: HostMessage) -> bool {
        let delivered = self.sender.send(message).is_ok();
        if delivered {
            // A wake for a guest that is not suspended is harmless: it finds
            // nothing new and suspends again. A driver that is gone has
            // abandoned the guest, and nobody is left to wake.
            let _ = env.send(&self.driver, atoms::munition_wake());
        }
        delivered
    }
}

/// Completes on its second poll: suspends the guest's fiber once, without
/// waking the waker, so the slice ends with `{:waiting, ms}` (see `wakeup`).
pub struct SuspendOnce(pub bool);

impl Future for SuspendOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// The host function at `index` of the call's list, imported as `name` with
/// type `ty`, served through `bridge` (when there is none, calling it fails
/// the call: no process serves host functions).
pub fn elixir_func(
    store: &mut Store<HostState>,
    ty: FuncType,
    index: u32,
    name: String,
    bridge: Option<Arc<HostBridge>>,
) -> Func {
    let result_types: Arc<[ValType]> = ty.results().collect();
    let name: Arc<str> = name.into();
    Func::new_async(store, ty, move |mut caller, params, results| {
        let (name, result_types, bridge) = (name.clone(), result_types.clone(), bridge.clone());
        Box::new(async move {
            let (bridge, receiver) = send_host_call(&mut caller, bridge, &name, index, params)?;
            let values = await_reply(&mut caller, &bridge, &receiver, &name).await?;
            // A value whose type cannot be read is as wrong as one of
            // another type.
            if values.len() != result_types.len()
                || values
                    .iter()
                    .zip(result_types.iter())
                    .any(|(value, ty)| !value.ty(&caller).map(|vt| vt.matches(ty)).unwrap_or(false))
            {
                return Err(host_fail(
                    &mut caller,
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: returned values that do not match its declared results"),
                ));
            }
            results.clone_from_slice(&values);
            Ok(())
        })
    })
}

/// Sends the call to the serving process; returns the channel its answer
/// will come on.
fn send_host_call(
    caller: &mut Caller<'_, HostState>,
    bridge: Option<Arc<HostBridge>>,
    name: &str,
    index: u32,
    params: &[Val],
) -> Result<(Arc<HostBridge>, Receiver<HostMessage>), Error> {
    let env_ptr = bridge
        .as_ref()
        .map_or(std::ptr::null_mut(), |b| b.env.load(Ordering::Acquire));
    let Some(bridge) = bridge.filter(|_| !env_ptr.is_null()) else {
        return Err(host_fail(
            caller,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: no process serves host functions"),
        ));
    };
    let fuel = caller.get_fuel().map_err(|e| {
        host_fail(
            caller,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: cannot read the fuel left: {}", error_chain(&e)),
        )
    })?;
    let (sender, receiver) = crossbeam_channel::unbounded();
    let call = ResourceArc::new(HostCallRef {
        sender,
        driver: bridge.driver,
    });
    // SAFETY: `env_ptr` is the environment of the NIF call that is running
    // this guest on this very thread (set by `BridgeEnv` for its duration).
    let env = unsafe { Env::new(&(), env_ptr) };
    let args: Vec<WasmValue> = params.iter().cloned().map(WasmValue).collect();
    let message = (atoms::munition_host_call(), call, index, args, fuel);
    if env.send(&bridge.driver, message).is_err() {
        return Err(host_fail(
            caller,
            Reason::HostError,
            TrapKind::HostError,
            format!("{name}: the serving process is gone"),
        ));
    }
    Ok((bridge, receiver))
}

/// Answers a memory request: `{:munition_memory, tag, {:ok, bytes} | :ok |
/// {:error, :out_of_bounds}}`, sent through the environment of the NIF call
/// that is running the guest.
fn answer_memory(
    bridge: &HostBridge,
    reply_to: &LocalPid,
    tag: u64,
    result: Result<Option<&[u8]>, ()>,
) {
    let env_ptr = bridge.env.load(Ordering::Acquire);
    if env_ptr.is_null() {
        // Cannot happen: requests are served only while a NIF call polls the
        // guest, under `BridgeEnv`. Without an environment nothing can be sent.
        return;
    }
    // SAFETY: as in `send_host_call`: the environment of the NIF call running
    // this guest on this thread.
    let env = unsafe { Env::new(&(), env_ptr) };
    send_memory_answer(env, reply_to, tag, result);
}

/// Sends `{:munition_memory, tag, {:ok, bytes} | :ok | {:error,
/// :out_of_bounds}}` to the process that asked, through `env` (the NIF call
/// serving the guest): the one answer format of both engines.
pub fn send_memory_answer(
    env: Env,
    reply_to: &LocalPid,
    tag: u64,
    result: Result<Option<&[u8]>, ()>,
) {
    let answer = match result {
        Ok(Some(bytes)) => (atoms::ok(), bytes_term(env, bytes)).encode(env),
        Ok(None) => atoms::ok().encode(env),
        Err(()) => (atoms::error(), atoms::out_of_bounds()).encode(env),
    };
    // The requester may be gone; nobody is left to tell.
    let _ = env.send(reply_to, (atoms::munition_memory(), tag, answer));
}

/// Waits, suspended, for the host function's reply, serving its memory
/// requests meanwhile.
async fn await_reply(
    caller: &mut Caller<'_, HostState>,
    bridge: &HostBridge,
    receiver: &Receiver<HostMessage>,
    name: &str,
) -> Result<Vec<Val>, Error> {
    loop {
        match receiver.try_recv() {
            Ok(HostMessage::Reply(Ok(values))) => {
                if caller.data().host_failure.is_some() {
                    // A wild pointer seen while serving a memory request.
                    return Err(Error::msg(format!("{name}: failed")));
                }
                return Ok(values);
            }
            Ok(HostMessage::Reply(Err(message))) => {
                return Err(host_fail(
                    caller,
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
                let Some((memory, range)) = guest_memory::caller_range(caller, ptr, len) else {
                    host_fail(
                        caller,
                        Reason::Trap,
                        TrapKind::MemoryOutOfBounds,
                        format!("{name}: read of {len} bytes at {ptr} is outside guest memory"),
                    );
                    answer_memory(bridge, &reply_to, tag, Err(()));
                    continue;
                };
                let bytes = &memory.data(&*caller)[range];
                answer_memory(bridge, &reply_to, tag, Ok(Some(bytes)));
            }
            Ok(HostMessage::Write {
                ptr,
                bytes,
                reply_to,
                tag,
            }) => {
                let Some((memory, range)) =
                    guest_memory::caller_range(caller, ptr, bytes.len() as u64)
                else {
                    host_fail(
                        caller,
                        Reason::Trap,
                        TrapKind::MemoryOutOfBounds,
                        format!(
                            "{name}: write of {} bytes at {ptr} is outside guest memory",
                            bytes.len()
                        ),
                    );
                    answer_memory(bridge, &reply_to, tag, Err(()));
                    continue;
                };
                memory.data_mut(&mut *caller)[range].copy_from_slice(&bytes);
                answer_memory(bridge, &reply_to, tag, Ok(None));
            }
            Err(TryRecvError::Empty) if Instant::now() >= caller.data().deadline => {
                return Err(host_timeout(
                    caller,
                    format!("{name}: host function did not return before the deadline"),
                ));
            }
            Err(TryRecvError::Empty) => SuspendOnce(false).await,
            Err(TryRecvError::Disconnected) => {
                return Err(host_fail(
                    caller,
                    Reason::HostError,
                    TrapKind::HostError,
                    format!("{name}: host function ended without replying"),
                ));
            }
        }
    }
}

/// Converts an Elixir host function's return value into wasm values.
fn decode_results(term: Term, types: &[Atom]) -> Result<Vec<Val>, String> {
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
            let ty = atom_val_type(*ty).ok_or("unsupported result type")?;
            to_val(*t, &ty, "result", position).map_err(|e| e.to_string())
        })
        .collect()
}

/// The Elixir side's answer: `{:ok, value_or_values}` or `{:error, message}`.
#[rustler::nif]
fn host_reply(
    env: Env,
    call: ResourceArc<HostCallRef>,
    reply: Term,
    result_types: Vec<Atom>,
) -> Atom {
    let message = match reply.decode::<(Atom, Term)>() {
        Ok((tag, value)) if tag == atoms::ok() => decode_results(value, &result_types),
        // A message that is not a string is shown as the term it is.
        Ok((tag, value)) if tag == atoms::error() => Err(value
            .decode::<String>()
            .unwrap_or_else(|_| format!("{value:?}"))),
        _ => Err(format!("host function returned {}", brief(reply))),
    };
    // The guest may have stopped waiting (deadline): then nobody hears this.
    call.deliver(env, HostMessage::Reply(message));
    atoms::ok()
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

#[rustler::nif]
fn host_read(env: Env, call: ResourceArc<HostCallRef>, ptr: u64, len: u64) -> MunitionResult<u64> {
    request_memory(env, &call, |reply_to, tag| HostMessage::Read {
        ptr,
        len,
        reply_to,
        tag,
    })
}

#[rustler::nif]
fn host_write(
    env: Env,
    call: ResourceArc<HostCallRef>,
    ptr: u64,
    bytes: Binary,
) -> MunitionResult<u64> {
    let bytes = bytes.as_slice().to_vec();
    request_memory(env, &call, |reply_to, tag| HostMessage::Write {
        ptr,
        bytes,
        reply_to,
        tag,
    })
}
