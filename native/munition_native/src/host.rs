//! Host functions: the built-in ones behind Munition's capabilities, and the
//! bridge that lets a guest call a function written in Elixir.
//!
//! Which import gets which function is decided in Elixir
//! (`Munition.Host.Capabilities`), where the capability table lives; this file
//! links exactly the `links` it is given and refuses every other import, so an
//! import can never reach the host without having been granted.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustler::{Atom, Binary, Env, LocalPid, Resource, ResourceArc, Term};
use wasmtime::{Caller, Error, Extern, Func, FuncType, Memory, Store, Val, ValType};

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

    fn push(&mut self, level: i32, line: Vec<u8>) {
        if self.bytes + line.len() > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += line.len();
        self.lines.push((level, line));
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

/// Reads `len` bytes at `ptr` of the guest's exported `memory`, or fails the
/// call with a `memory_out_of_bounds` trap naming the host function.
fn read_guest(
    caller: &mut Caller<'_, HostState>,
    func: &str,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, Error> {
    let memory = guest_memory(caller);
    let bytes = memory.and_then(|m| {
        let data = m.data(&*caller);
        let start = ptr as u32 as usize;
        let end = start.checked_add(len as u32 as usize)?;
        data.get(start..end).map(<[u8]>::to_vec)
    });
    bytes.ok_or_else(|| {
        host_fail(
            caller,
            Reason::Trap,
            atoms::memory_out_of_bounds(),
            format!("{func}: guest passed range {ptr}+{len} outside its memory"),
        )
    })
}

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
            read_guest(&mut caller, "random_bytes", ptr, len)?;
            let memory = guest_memory(&mut caller).expect("checked by read_guest");
            let start = ptr as u32 as usize;
            let target = &mut memory.data_mut(&mut caller)[start..start + len as u32 as usize];
            getrandom::fill(target).map_err(|e| Error::msg(format!("random_bytes: {e}")))?;
            Ok(())
        }),
        "log" => Func::new(store, ty, |mut caller, params, _| {
            let level = params[0].unwrap_i32();
            let line = read_guest(
                &mut caller,
                "log",
                params[1].unwrap_i32(),
                params[2].unwrap_i32(),
            )?;
            caller.data_mut().log.push(level, line);
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
// serving the call (see `Munition.Instance.Manager`) and blocks its own thread
// on a channel. While it waits it serves reads and writes of its memory for
// the Elixir side, until the reply arrives or the call's deadline passes.
// ---------------------------------------------------------------------------

pub enum HostMessage {
    Reply(Result<Vec<Val>, String>),
    Read {
        ptr: u64,
        len: u64,
        answer: Sender<Option<Vec<u8>>>,
    },
    Write {
        ptr: u64,
        bytes: Vec<u8>,
        answer: Sender<bool>,
    },
}

pub struct HostBridge {
    pid: LocalPid,
    /// The environment of the NIF call currently running this store's guest.
    /// Sending from a dirty scheduler thread must go through that environment;
    /// it is set for the duration of each NIF call and cleared after.
    env: std::sync::atomic::AtomicPtr<rustler::sys::ErlNifEnv>,
}

impl HostBridge {
    pub fn new(pid: LocalPid) -> Self {
        HostBridge {
            pid,
            env: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// Makes the calling NIF's environment available to Elixir host functions for
/// as long as the guard lives.
pub struct BridgeEnv(Option<Arc<HostBridge>>);

impl BridgeEnv {
    pub fn enter(env: Env<'_>, bridge: Option<Arc<HostBridge>>) -> Self {
        if let Some(bridge) = &bridge {
            bridge
                .env
                .store(env.as_c_arg(), std::sync::atomic::Ordering::Release);
        }
        BridgeEnv(bridge)
    }
}

impl Drop for BridgeEnv {
    fn drop(&mut self) {
        if let Some(bridge) = &self.0 {
            bridge
                .env
                .store(std::ptr::null_mut(), std::sync::atomic::Ordering::Release);
        }
    }
}

/// The handle an Elixir host function gets for one guest call: replies and
/// memory requests go through it.
pub struct HostCallRef {
    sender: Sender<HostMessage>,
}

#[rustler::resource_impl]
impl Resource for HostCallRef {}

fn elixir_func(store: &mut Store<HostState>, ty: FuncType, index: u32, name: String) -> Func {
    let result_types: Vec<ValType> = ty.results().collect();
    Func::new(store, ty, move |mut caller, params, results| {
        let Some(bridge) = caller.data().bridge.clone() else {
            return Err(host_fail(
                &mut caller,
                Reason::HostError,
                atoms::host_error(),
                format!("{name}: no process serves host functions"),
            ));
        };
        let env_ptr = bridge.env.load(std::sync::atomic::Ordering::Acquire);
        if env_ptr.is_null() {
            return Err(host_fail(
                &mut caller,
                Reason::HostError,
                atoms::host_error(),
                format!("{name}: called outside a Munition call"),
            ));
        }
        let (sender, receiver) = crossbeam_channel::unbounded();
        let call = ResourceArc::new(HostCallRef { sender });
        let fuel = caller.get_fuel().unwrap_or(0);
        // SAFETY: `env_ptr` is the environment of the NIF call that is running
        // this guest on this very thread (set by `BridgeEnv` for its duration).
        let env = unsafe { Env::new(&(), env_ptr) };
        let args: Vec<WasmValue> = params.iter().cloned().map(WasmValue).collect();
        let message = (atoms::munition_host_call(), call, index, args, fuel);
        if env.send(&bridge.pid, message).is_err() {
            return Err(host_fail(
                &mut caller,
                Reason::HostError,
                atoms::host_error(),
                format!("{name}: the serving process is gone"),
            ));
        }
        serve_until_reply(&mut caller, &receiver, &name, &result_types, results)
    })
}

fn serve_until_reply(
    caller: &mut Caller<'_, HostState>,
    receiver: &Receiver<HostMessage>,
    name: &str,
    result_types: &[ValType],
    results: &mut [Val],
) -> Result<(), Error> {
    let deadline = caller.data().deadline;
    loop {
        match receiver.recv_deadline(deadline) {
            Ok(HostMessage::Reply(Ok(values))) => {
                if caller.data().host_failure.is_some() {
                    return Err(Error::msg(format!("{name}: failed")));
                }
                if values.len() != result_types.len()
                    || values
                        .iter()
                        .zip(result_types)
                        .any(|(v, t)| !v.ty(&*caller).map(|vt| vt.matches(t)).unwrap_or(false))
                {
                    return Err(host_fail(
                        caller,
                        Reason::HostError,
                        atoms::host_error(),
                        format!("{name}: returned values that do not match its declared results"),
                    ));
                }
                results.clone_from_slice(&values);
                return Ok(());
            }
            Ok(HostMessage::Reply(Err(message))) => {
                return Err(host_fail(
                    caller,
                    Reason::HostError,
                    atoms::host_error(),
                    format!("{name}: {message}"),
                ));
            }
            Ok(HostMessage::Read { ptr, len, answer }) => {
                let bytes = guest_memory(caller).and_then(|m| {
                    let start = usize::try_from(ptr).ok()?;
                    let end = start.checked_add(usize::try_from(len).ok()?)?;
                    m.data(&*caller).get(start..end).map(<[u8]>::to_vec)
                });
                if bytes.is_none() {
                    host_fail(
                        caller,
                        Reason::Trap,
                        atoms::memory_out_of_bounds(),
                        format!("{name}: read of {len} bytes at {ptr} is outside guest memory"),
                    );
                }
                let _ = answer.send(bytes);
            }
            Ok(HostMessage::Write { ptr, bytes, answer }) => {
                let written = guest_memory(caller).and_then(|m| {
                    let start = usize::try_from(ptr).ok()?;
                    let end = start.checked_add(bytes.len())?;
                    m.data_mut(&mut *caller)
                        .get_mut(start..end)
                        .map(|target| target.copy_from_slice(&bytes))
                });
                if written.is_none() {
                    host_fail(
                        caller,
                        Reason::Trap,
                        atoms::memory_out_of_bounds(),
                        format!(
                            "{name}: write of {} bytes at {ptr} is outside guest memory",
                            bytes.len()
                        ),
                    );
                }
                let _ = answer.send(written.is_some());
            }
            Err(RecvTimeoutError::Timeout) => {
                caller.data_mut().timed_out = true;
                return Err(host_fail(
                    caller,
                    Reason::Timeout,
                    atoms::interrupt(),
                    format!("{name}: host function did not return before the deadline"),
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
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
        term.decode()
            .map_err(|_| format!("expected a list of {} results, got: {term:?}", types.len()))?
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
        .map(|(t, ty)| {
            let ty = atom_val_type(ty).ok_or("unsupported result type")?;
            crate::call::to_val(*t, &ty, 0).map_err(|e| e.to_string())
        })
        .collect()
}

/// The Elixir side's answer: `{:ok, value_or_values}` or `{:error, message}`.
#[rustler::nif]
fn host_reply(call: ResourceArc<HostCallRef>, reply: Term, result_types: Vec<Atom>) -> Atom {
    let message = match reply.decode::<(Atom, Term)>() {
        Ok((tag, value)) if tag == atoms::ok() => decode_results(value, &result_types),
        Ok((tag, value)) if tag == atoms::error() => Err(value
            .decode::<String>()
            .unwrap_or_else(|_| format!("{value:?}"))),
        _ => Err(format!("host function returned {reply:?}")),
    };
    // The guest may have stopped waiting (deadline): then nobody hears this.
    let _ = call.sender.send(HostMessage::Reply(message));
    atoms::ok()
}

/// How long an Elixir memory request waits for the guest's thread.
const MEMORY_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[rustler::nif]
fn host_read(
    call: ResourceArc<HostCallRef>,
    ptr: u64,
    len: u64,
) -> MunitionResult<crate::OwnedBytes> {
    let (answer, response) = crossbeam_channel::bounded(1);
    call.sender
        .send(HostMessage::Read { ptr, len, answer })
        .map_err(|_| MunitionError::InvalidState("the guest call has ended".into()))?;
    match response.recv_timeout(MEMORY_REQUEST_TIMEOUT) {
        Ok(Some(bytes)) => Ok(crate::OwnedBytes(bytes)),
        Ok(None) => Err(MunitionError::OutOfBounds(format!("{len} bytes at {ptr}"))),
        Err(_) => Err(MunitionError::InvalidState(
            "the guest call has ended".into(),
        )),
    }
}

#[rustler::nif]
fn host_write(call: ResourceArc<HostCallRef>, ptr: u64, bytes: Binary) -> MunitionResult<Atom> {
    let (answer, response) = crossbeam_channel::bounded(1);
    call.sender
        .send(HostMessage::Write {
            ptr,
            bytes: bytes.as_slice().to_vec(),
            answer,
        })
        .map_err(|_| MunitionError::InvalidState("the guest call has ended".into()))?;
    match response.recv_timeout(MEMORY_REQUEST_TIMEOUT) {
        Ok(true) => Ok(atoms::ok()),
        Ok(false) => Err(MunitionError::OutOfBounds(format!(
            "{} bytes at {ptr}",
            bytes.len()
        ))),
        Err(_) => Err(MunitionError::InvalidState(
            "the guest call has ended".into(),
        )),
    }
}
