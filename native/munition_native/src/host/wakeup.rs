//! How a suspended guest is woken: the waker its slices are polled with, and
//! the future that suspends it once (`SuspendOnce`).
//!
//! A guest execution is a future (see `execution`). When a poll returns
//! `Pending`, either the guest merely gave its thread back (a fuel yield:
//! Wasmtime wakes the waker before returning, so the guest can go on at
//! once), or it waits for something outside itself: an Elixir host function
//! (`bridge`), a WASI sleep (`wasi_time`), a file operation running on
//! another thread (`wasi`). In the second case nothing woke the waker, the
//! NIF returns `{:waiting, ms}` and the process driving the guest waits for
//! `:munition_wake` or `ms` milliseconds, holding no thread.
//!
//! Who wakes it: the bridge sends `:munition_wake` itself; a sleeping guest
//! is resumed after `ms` (the earlier of its wake time and its deadline,
//! `sleep_until` here); work finished on another thread wakes this waker,
//! which sends `:munition_wake` to the driver from that thread. Only a call
//! driven by a process of its own has a driver to message (Elixir host
//! functions, WASI files: see `Munition.Instance.Manager`); a call its
//! caller drives is never messaged, and a guest of one that waits for
//! anything but a sleep is resumed at once (`may_wait`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::Instant;

use rustler::env::OwnedEnv;
use rustler::LocalPid;

use crate::atoms;

/// One instance's waker and wake-up time, shared by its slices (which poll)
/// and its host functions (which sleep).
pub struct Wakeup {
    /// The process that drives the guest (calls `instance_*`), when it is a
    /// process of Munition's own that may be messaged.
    driver: Option<LocalPid>,
    /// Woken since the current poll began.
    woken: AtomicBool,
    /// A NIF is polling the guest right now: a wake needs no message, the
    /// poll loop sees `woken`.
    polling: AtomicBool,
    /// When a sleeping guest wants to be resumed (a WASI sleep), if sooner
    /// than its deadline.
    sleep_until: Mutex<Option<Instant>>,
}

impl Wakeup {
    pub fn new(driver: Option<LocalPid>) -> Arc<Self> {
        Arc::new(Wakeup {
            driver,
            woken: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            sleep_until: Mutex::new(None),
        })
    }

    /// Before each poll: forget earlier wakes (the poll sees what they
    /// announced).
    pub fn begin_poll(&self) {
        self.polling.store(true, Ordering::SeqCst);
        self.woken.store(false, Ordering::SeqCst);
    }

    /// After a `Pending` poll: whether the guest can go on at once (it was
    /// woken), or waits for something outside. In the latter case the
    /// polling flag is cleared first, so that a wake racing with this check
    /// is either seen here or sends its message: never lost.
    pub fn pending_ready(&self) -> bool {
        if self.woken.swap(false, Ordering::SeqCst) {
            return true;
        }
        self.polling.store(false, Ordering::SeqCst);
        self.woken.swap(false, Ordering::SeqCst)
    }

    /// The poll loop is over.
    pub fn end_poll(&self) {
        self.polling.store(false, Ordering::SeqCst);
    }

    /// A sleeping guest asks to be resumed at `until` (`None`: not sleeping).
    pub fn set_sleep_until(&self, until: Option<Instant>) {
        *self
            .sleep_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
    }

    /// Whether a guest that is not woken may end its slice waiting: when it
    /// sleeps (the driver waits the time), or when someone can wake its
    /// driver. Otherwise it is resumed at once.
    pub fn may_wait(&self) -> bool {
        self.driver.is_some() || self.sleep_until().is_some()
    }

    pub fn sleep_until(&self) -> Option<Instant> {
        *self
            .sleep_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.polling.load(Ordering::SeqCst) {
            return;
        }
        // Woken from outside a poll: work finished on another thread. Only a
        // thread the VM does not manage may send without an environment; on
        // a VM thread outside a poll (nothing wakes from there) there is no
        // one to tell, and the driver resumes at its deadline anyway.
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        // A driver that is gone has dropped its guest: nobody to wake.
        if let Some(driver) = &self.driver {
            let _ = OwnedEnv::new().send_and_clear(driver, |_env| atoms::munition_wake());
        }
    }
}

/// Completes on its second poll: suspends the guest's fiber once, without
/// waking the waker, so the slice ends with `{:waiting, ms}`.
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
