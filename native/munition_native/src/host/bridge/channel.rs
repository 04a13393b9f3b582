//! What the bridge carries, below everything that uses it: the messages on
//! a guest call's channel, the handle an Elixir host function gets for it
//! (`HostCallRef`), the connection to the serving process (`HostBridge`),
//! and the call a suspended guest waits for (`Pending`). A store's state
//! holds the last two; `bridge` serves them.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rustler::env::{OwnedEnv, SavedTerm};
use rustler::{Env, LocalPid, Resource};

use crate::atoms;
use crate::vocabulary::value::{Value, ValueType};

pub enum HostMessage {
    Reply(Result<Vec<Value>, String>),
    /// The reply to a component's import, kept as the term Elixir gave:
    /// only the guest's side knows its WIT types to decode it with.
    Saved(SavedReply),
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
    pub(super) driver: LocalPid,
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

    /// The environment of the NIF call running the guest, if one is.
    pub(super) fn env(&self) -> Option<Env<'_>> {
        let env_ptr = self.env.load(Ordering::Acquire);
        // SAFETY: a non-null pointer is the environment of the NIF call that
        // is running this guest on this very thread, set by `BridgeEnv` for
        // its duration and cleared when it ends.
        (!env_ptr.is_null()).then(|| unsafe { Env::new(&(), env_ptr) })
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
    pub(super) sender: Sender<HostMessage>,
    pub(super) driver: LocalPid,
}

#[rustler::resource_impl]
impl Resource for HostCallRef {}

impl HostCallRef {
    /// Puts `message` on the guest's channel and wakes the process driving the
    /// guest so it resumes it. `false` when the guest no longer listens.
    pub fn deliver(&self, env: Env, message: HostMessage) -> bool {
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

/// A reply term, kept in an environment of its own until the guest's
/// side decodes it.
pub struct SavedReply {
    pub env: OwnedEnv,
    pub term: SavedTerm,
}

/// An Elixir host call a suspended guest waits for.
pub struct Pending {
    pub(super) receiver: Receiver<HostMessage>,
    pub name: Arc<str>,
    /// The core results to expect; `None` for a component's import, whose
    /// reply comes `Saved`.
    pub(super) results: Option<Arc<[ValueType]>>,
}
