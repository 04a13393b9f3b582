//! The reaper: one thread that releases stores too large to release on a
//! normal scheduler (over `munition_core::guest::INLINE_RELEASE_LIMIT`),
//! when nothing else can take them off it. A handle's
//! destructor runs on whichever thread collects the handle (often a normal
//! scheduler) and has no process to schedule a dirty NIF from; it hands
//! the store over here instead, over a channel, and returns at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::thread;

use once_cell::sync::Lazy;

type Doomed = Box<dyn Send>;

/// Stores handed to the reaper since the VM started, and released by it.
static HANDED: AtomicU64 = AtomicU64::new(0);
static RELEASED: AtomicU64 = AtomicU64::new(0);

static REAPER: Lazy<Option<Mutex<Sender<Doomed>>>> = Lazy::new(|| {
    let (sender, receiver) = mpsc::channel::<Doomed>();
    thread::Builder::new()
        .name("munition-reaper".into())
        .spawn(move || {
            for doomed in receiver {
                // A panic in a store's drop must not end the reaper.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(doomed)));
                RELEASED.fetch_add(1, Ordering::Relaxed);
            }
        })
        .ok()
        .map(|_| Mutex::new(sender))
});

/// Releases `store` on the reaper's thread; here, should the reaper be
/// unavailable (it could not be started), rather than never.
pub fn release<T: Send + 'static>(store: T) {
    HANDED.fetch_add(1, Ordering::Relaxed);
    let Some(sender) = REAPER.as_ref() else {
        drop(store);
        RELEASED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let sender = sender
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(mpsc::SendError(store)) = sender.send(Box::new(store)) {
        drop(sender);
        drop(store);
        RELEASED.fetch_add(1, Ordering::Relaxed);
    }
}

/// `{handed, released}`: stores handed to the reaper, and released by it.
pub fn stats() -> (u64, u64) {
    (
        HANDED.load(Ordering::Relaxed),
        RELEASED.load(Ordering::Relaxed),
    )
}
