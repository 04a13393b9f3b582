//! Host functions: the built-in ones behind Munition's capabilities, and the
//! bridge that lets a guest call a function written in Elixir.
//!
//! Which import gets which function is decided in Elixir
//! (`Munition.Host.Capabilities`), where the capability table lives; this file
//! links exactly the `links` it is given and refuses every other import, so an
//! import can never reach the host without having been granted.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rustler::{Atom, Binary, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::{Caller, Error, Extern, Func, FuncType, Memory, Store, Trap, Val, ValType};

use crate::atoms;
use crate::call::WasmValue;
use crate::error::{DeniedImport, MunitionError, MunitionResult};
use crate::instance::{HostState, Reason};
use crate::module::{val_type_atom, CompiledModule};

/// What one import is linked to, as decided by the capability gate.
#[derive(rustler::NifMap, Clone)]
pub struct Link {
    pub module: String,
    pub name: String,
    /// A built-in host function by name (`"get_time_ms"`, `"abort"`, ...).
    pub builtin: Option<String>,
    /// Or an Elixir host function: its index in the call's list, with its signature.
    pub host_index: Option<u32>,
    pub params: Vec<Atom>,
    pub results: Vec<Atom>,
}

/// Guest log lines (`munition.log`), capped in total bytes so a guest cannot
/// grow the host's memory through them.
pub struct GuestLog {
    pub lines: Vec<(i32, Vec<u8>)>,
    pub bytes: usize,
    pub limit: usize,
    pub dropped: u64,
}

impl GuestLog {
    pub fn new(limit: usize) -> Self {
        GuestLog {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    pub fn to_terms(&self) -> Vec<(i32, crate::OwnedBytes)> {
        self.lines
            .iter()
            .map(|(level, line)| (*level, crate::OwnedBytes(line.clone())))
            .collect()
    }

    /// Keeps the line if it fits in what is left of the limit; checked
    /// before copying, so a guest logging huge ranges costs no host memory.
    fn push(&mut self, level: i32, line: &[u8]) {
        if self.bytes + line.len() > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push((level, line.to_vec()));
    }
}

fn atom_val_type(atom: &Atom) -> Option<ValType> {
    if *atom == atoms::i32() {
        Some(ValType::I32)
    } else if *atom == atoms::i64() {
        Some(ValType::I64)
    } else if *atom == atoms::f32() {
        Some(ValType::F32)
    } else if *atom == atoms::f64() {
        Some(ValType::F64)
    } else {
        None
    }
}

/// Signatures of the built-ins. The capability each belongs to, and the docs,
/// are in `Munition.Host.Capabilities`.
fn builtin_signature(name: &str) -> Option<(Vec<ValType>, Vec<ValType>)> {
    use ValType::{I32, I64};
    Some(match name {
        "get_time_ms" | "get_monotonic_ns" | "get_random" => (vec![], vec![I64]),
        "random_bytes" => (vec![I32, I32], vec![]),
        "log" => (vec![I32, I32, I32], vec![]),
        "abort" => (vec![I32, I32, I32, I32], vec![]),
        _ => return None,
    })
}

/// Builds the imports for `module` from `links`, in import order. Any import
/// without a link is refused, all of them listed at once.
pub fn resolve_imports(
    store: &mut Store<HostState>,
    compiled: &CompiledModule,
    links: &[Link],
) -> MunitionResult<Vec<Extern>> {
    let mut externs = Vec::new();
    let mut denied = Vec::new();
    for import in compiled.module.imports() {
        let link = links
            .iter()
            .find(|l| l.module == import.module() && l.name == import.name());
        let (link, ty) = match (link, import.ty().func()) {
            (Some(link), Some(ty)) => (link, ty.clone()),
            _ => {
                denied.push(DeniedImport {
                    module: import.module().to_string(),
                    name: import.name().to_string(),
                    needs: None,
                });
                continue;
            }
        };
        let (params, results) = match (&link.builtin, link.host_index) {
            (Some(name), _) => builtin_signature(name).ok_or_else(|| {
                MunitionError::Instantiation(format!("no built-in host function {name:?}"))
            })?,
            (None, Some(_)) => (
                link.params.iter().filter_map(atom_val_type).collect(),
                link.results.iter().filter_map(atom_val_type).collect(),
            ),
            (None, None) => {
                return Err(MunitionError::Instantiation(format!(
                    "link for {}.{} names no function",
                    link.module, link.name
                )))
            }
        };
        let wanted: Vec<Atom> = ty.params().map(|t| val_type_atom(&t)).collect();
        let wanted_results: Vec<Atom> = ty.results().map(|t| val_type_atom(&t)).collect();
        let have: Vec<Atom> = params.iter().map(val_type_atom).collect();
        let have_results: Vec<Atom> = results.iter().map(val_type_atom).collect();
        if wanted != have || wanted_results != have_results {
            return Err(MunitionError::Instantiation(format!(
                "import {}.{} has signature {:?} -> {:?}, but the host function is {:?} -> {:?}",
                link.module, link.name, wanted, wanted_results, have, have_results
            )));
        }
        let func_ty = FuncType::new(store.engine(), params, results);
        let func = match (&link.builtin, link.host_index) {
            (Some(name), _) => builtin_func(store, func_ty, name),
            (None, Some(index)) => elixir_func(store, func_ty, index, link.name.clone()),
            (None, None) => unreachable!("checked above"),
        };
        externs.push(Extern::Func(func));
    }
    if denied.is_empty() {
        Ok(externs)
    } else {
        Err(MunitionError::CapabilityDenied(denied))
    }
}

/// Records a host-side failure on the store and returns the error that
/// unwinds the guest.
fn host_fail(
    caller: &mut Caller<'_, HostState>,
    reason: Reason,
    kind: Atom,
    message: String,
) -> Error {
    let error = Error::msg(message.clone());
    caller
        .data_mut()
        .host_failure
        .get_or_insert((reason, kind, message));
    error
}

fn guest_memory(caller: &mut Caller<'_, HostState>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// The byte range `[ptr, ptr + len)` of the guest's exported `memory`, checked
/// without copying anything, or a `memory_out_of_bounds` failure naming the
/// host function.
fn guest_range(
    caller: &mut Caller<'_, HostState>,
    func: &str,
    ptr: i32,
    len: i32,
) -> Result<(Memory, Range<usize>), Error> {
    let start = ptr as u32 as usize;
    let end = start + len as u32 as usize;
    match guest_memory(caller) {
        Some(memory) if end <= memory.data_size(&*caller) => Ok((memory, start..end)),
        _ => Err(host_fail(
            caller,
            Reason::Trap,
            atoms::memory_out_of_bounds(),
            format!(
                "{func}: guest passed range {}+{} outside its memory",
                ptr as u32, len as u32
            ),
        )),
    }
}

/// Bytes a built-in may handle per unit of fuel: work proportional to a
/// guest-chosen length is paid for like the guest's own instructions, so a
/// loop of large calls exhausts its budget instead of running for free.
const BYTES_PER_FUEL: u64 = 8;

fn charge_fuel(caller: &mut Caller<'_, HostState>, bytes: usize) -> Result<(), Error> {
    let cost = (bytes as u64).div_ceil(BYTES_PER_FUEL);
    let fuel = caller.get_fuel()?;
    if cost > fuel {
        caller.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    caller.set_fuel(fuel - cost)?;
    Ok(())
}

/// Fails the call as a timeout when its deadline has passed: a built-in that
/// works through a large range checks this between chunks, since epoch
/// interruption only reaches wasm code.
fn check_deadline(caller: &mut Caller<'_, HostState>, func: &str) -> Result<(), Error> {
    if Instant::now() < caller.data().deadline {
        return Ok(());
    }
    caller.data_mut().timed_out = true;
    Err(host_fail(
        caller,
        Reason::Timeout,
        atoms::interrupt(),
        format!("{func}: the deadline passed while the host function ran"),
    ))
}

/// Chunk size of `random_bytes`, between deadline checks.
const RANDOM_CHUNK: usize = 64 * 1024;

fn builtin_func(store: &mut Store<HostState>, ty: FuncType, name: &str) -> Func {
    match name {
        "get_time_ms" => Func::new(store, ty, |_, _, results| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            results[0] = Val::I64(now.as_millis() as i64);
            Ok(())
        }),
        "get_monotonic_ns" => {
            let origin = Instant::now();
            Func::new(store, ty, move |_, _, results| {
                results[0] = Val::I64(origin.elapsed().as_nanos() as i64);
                Ok(())
            })
        }
        "get_random" => Func::new(store, ty, |_, _, results| {
            results[0] = Val::I64(getrandom::u64().unwrap_or(0) as i64);
            Ok(())
        }),
        "random_bytes" => Func::new(store, ty, |mut caller, params, _| {
            let (ptr, len) = (params[0].unwrap_i32(), params[1].unwrap_i32());
            // Check the range first: a wild pointer must crash, not be filled.
            let (memory, range) = guest_range(&mut caller, "random_bytes", ptr, len)?;
            charge_fuel(&mut caller, range.len())?;
            let mut start = range.start;
            while start < range.end {
                check_deadline(&mut caller, "random_bytes")?;
                let end = (start + RANDOM_CHUNK).min(range.end);
                getrandom::fill(&mut memory.data_mut(&mut caller)[start..end])
                    .map_err(|e| Error::msg(format!("random_bytes: {e}")))?;
                start = end;
            }
            Ok(())
        }),
        "log" => Func::new(store, ty, |mut caller, params, _| {
            let level = params[0].unwrap_i32();
            let (ptr, len) = (params[1].unwrap_i32(), params[2].unwrap_i32());
            let (memory, range) = guest_range(&mut caller, "log", ptr, len)?;
            charge_fuel(&mut caller, range.len())?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            state.log.push(level, &data[range]);
            Ok(())
        }),
        "abort" => Func::new(store, ty, |mut caller, params, _| {
            let message = assemblyscript_string(&mut caller, params[0].unwrap_i32());
            let file = assemblyscript_string(&mut caller, params[1].unwrap_i32());
            let (line, column) = (params[2].unwrap_i32(), params[3].unwrap_i32());
            Err(host_fail(
                &mut caller,
                Reason::Trap,
                atoms::abort(),
                format!("abort: {message} at {file}:{line}:{column}"),
            ))
        }),
        other => unreachable!("builtin_signature accepted unknown built-in {other}"),
    }
}

/// Reads an AssemblyScript string (UTF-16LE, its byte length in the u32 just
/// before the pointer). Best effort: the guest is already aborting, so a bad
/// pointer yields a placeholder rather than a second failure.
fn assemblyscript_string(caller: &mut Caller<'_, HostState>, ptr: i32) -> String {
    let Some(memory) = guest_memory(caller) else {
        return "<no memory>".into();
    };
    let data = memory.data(&*caller);
    let ptr = ptr as u32 as usize;
    let decoded = (|| {
        let len_bytes = data.get(ptr.checked_sub(4)?..ptr)?;
        let len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
        let bytes = data.get(ptr..ptr.checked_add(len.min(4096))?)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    })();
    decoded.unwrap_or_else(|| format!("<string at {ptr}>"))
}

// ---------------------------------------------------------------------------
// The Elixir bridge.
//
// A guest's call to an Elixir host function sends
// `{:munition_host_call, call, index, args, fuel_remaining}` to the process
// that drives the guest (the task of `Munition.Instance.Manager`) and suspends
// the guest (its fiber) until the answer is on the call's channel. The NIF
// that was running the guest returns `{:waiting, ms}`, which frees the dirty
// scheduler thread; that process runs the host function and waits. Every
// message put on the channel also sends it `:munition_wake`, and it resumes
// the guest. Resumed, the guest serves the Elixir side's reads and writes of
// its memory, until the reply arrives or the call's deadline passes.
// ---------------------------------------------------------------------------

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

pub struct HostBridge {
    /// The process that drives the guest with `instance_*` NIF calls: it gets
    /// the host calls, and is woken when a suspended guest has something to
    /// read on its channel.
    driver: LocalPid,
    /// The environment of the NIF call currently running this store's guest.
    /// Sending from a dirty scheduler thread must go through that environment;
    /// it is set for the duration of each NIF call and cleared after.
    env: AtomicPtr<rustler::sys::ErlNifEnv>,
    /// Whether the guest is suspended waiting for an Elixir host function.
    waiting: AtomicBool,
}

impl HostBridge {
    pub fn new(driver: LocalPid) -> Self {
        HostBridge {
            driver,
            env: AtomicPtr::new(std::ptr::null_mut()),
            waiting: AtomicBool::new(false),
        }
    }

    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
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
    /// Puts `message` on the guest's channel and wakes the process driving the
    /// guest so it resumes it. `false` when the guest no longer listens.
    fn deliver(&self, env: Env, message: HostMessage) -> bool {
        let delivered = self.sender.send(message).is_ok();
        if delivered {
            // A wake for a guest that is not suspended is harmless: it finds
            // nothing new and suspends again.
            let _ = env.send(&self.driver, atoms::munition_wake());
        }
        delivered
    }
}

/// Completes on its second poll: suspends the guest's fiber once.
struct SuspendOnce(bool);

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

fn elixir_func(store: &mut Store<HostState>, ty: FuncType, index: u32, name: String) -> Func {
    let result_types: Arc<[ValType]> = ty.results().collect();
    let name: Arc<str> = name.into();
    Func::new_async(store, ty, move |mut caller, params, results| {
        let (name, result_types) = (name.clone(), result_types.clone());
        Box::new(async move {
            let (bridge, receiver) = send_host_call(&mut caller, &name, index, params)?;
            let values = await_reply(&mut caller, &bridge, &receiver, &name).await?;
            if values.len() != result_types.len()
                || values
                    .iter()
                    .zip(result_types.iter())
                    .any(|(value, ty)| !value.ty(&caller).map(|vt| vt.matches(ty)).unwrap_or(false))
            {
                return Err(host_fail(
                    &mut caller,
                    Reason::HostError,
                    atoms::host_error(),
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
    name: &str,
    index: u32,
    params: &[Val],
) -> Result<(Arc<HostBridge>, Receiver<HostMessage>), Error> {
    let bridge = caller.data().bridge.clone();
    let env_ptr = bridge
        .as_ref()
        .map_or(std::ptr::null_mut(), |b| b.env.load(Ordering::Acquire));
    let Some(bridge) = bridge.filter(|_| !env_ptr.is_null()) else {
        return Err(host_fail(
            caller,
            Reason::HostError,
            atoms::host_error(),
            format!("{name}: no process serves host functions"),
        ));
    };
    let (sender, receiver) = crossbeam_channel::unbounded();
    let call = ResourceArc::new(HostCallRef {
        sender,
        driver: bridge.driver,
    });
    let fuel = caller.get_fuel().unwrap_or(0);
    // SAFETY: `env_ptr` is the environment of the NIF call that is running
    // this guest on this very thread (set by `BridgeEnv` for its duration).
    let env = unsafe { Env::new(&(), env_ptr) };
    let args: Vec<WasmValue> = params.iter().cloned().map(WasmValue).collect();
    let message = (atoms::munition_host_call(), call, index, args, fuel);
    if env.send(&bridge.driver, message).is_err() {
        return Err(host_fail(
            caller,
            Reason::HostError,
            atoms::host_error(),
            format!("{name}: the serving process is gone"),
        ));
    }
    Ok((bridge, receiver))
}

/// The range `[ptr, ptr + len)` of the guest's exported memory, if inside it.
fn guest_bytes(caller: &mut Caller<'_, HostState>, ptr: u64, len: u64) -> Option<Range<usize>> {
    let memory = guest_memory(caller)?;
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= memory.data_size(&*caller)).then_some(start..end)
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
        return;
    }
    // SAFETY: as in `send_host_call`: the environment of the NIF call running
    // this guest on this thread.
    let env = unsafe { Env::new(&(), env_ptr) };
    let answer = match result {
        Ok(Some(bytes)) => (atoms::ok(), crate::bytes_term(env, bytes)).encode(env),
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
                    atoms::host_error(),
                    format!("{name}: {message}"),
                ));
            }
            Ok(HostMessage::Read {
                ptr,
                len,
                reply_to,
                tag,
            }) => {
                let range = guest_bytes(caller, ptr, len);
                let Some(range) = range else {
                    host_fail(
                        caller,
                        Reason::Trap,
                        atoms::memory_out_of_bounds(),
                        format!("{name}: read of {len} bytes at {ptr} is outside guest memory"),
                    );
                    answer_memory(bridge, &reply_to, tag, Err(()));
                    continue;
                };
                let memory = guest_memory(caller).expect("checked by guest_bytes");
                let bytes = &memory.data(&*caller)[range];
                answer_memory(bridge, &reply_to, tag, Ok(Some(bytes)));
            }
            Ok(HostMessage::Write {
                ptr,
                bytes,
                reply_to,
                tag,
            }) => {
                let Some(range) = guest_bytes(caller, ptr, bytes.len() as u64) else {
                    host_fail(
                        caller,
                        Reason::Trap,
                        atoms::memory_out_of_bounds(),
                        format!(
                            "{name}: write of {} bytes at {ptr} is outside guest memory",
                            bytes.len()
                        ),
                    );
                    answer_memory(bridge, &reply_to, tag, Err(()));
                    continue;
                };
                let memory = guest_memory(caller).expect("checked by guest_bytes");
                memory.data_mut(&mut *caller)[range].copy_from_slice(&bytes);
                answer_memory(bridge, &reply_to, tag, Ok(None));
            }
            Err(TryRecvError::Empty) if Instant::now() >= caller.data().deadline => {
                caller.data_mut().timed_out = true;
                return Err(host_fail(
                    caller,
                    Reason::Timeout,
                    atoms::interrupt(),
                    format!("{name}: host function did not return before the deadline"),
                ));
            }
            Err(TryRecvError::Empty) => {
                bridge.waiting.store(true, Ordering::Release);
                SuspendOnce(false).await;
                bridge.waiting.store(false, Ordering::Release);
            }
            Err(TryRecvError::Disconnected) => {
                return Err(host_fail(
                    caller,
                    Reason::HostError,
                    atoms::host_error(),
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
                crate::call::brief(term)
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
            let ty = atom_val_type(ty).ok_or("unsupported result type")?;
            crate::call::to_val(*t, &ty, &format!("result {position}")).map_err(|e| e.to_string())
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
        Ok((tag, value)) if tag == atoms::error() => Err(value
            .decode::<String>()
            .unwrap_or_else(|_| format!("{value:?}"))),
        _ => Err(format!(
            "host function returned {}",
            crate::call::brief(reply)
        )),
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
