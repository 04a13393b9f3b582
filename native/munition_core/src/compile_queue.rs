//! Where compilations wait and run, for every engine: one pool of compile
//! threads in two lanes, and the de-duplication of compilations that are
//! queued or running (`Flights`), so that callers of the same bytes under
//! the same limits share one compilation and a compilation nobody waits for
//! any more is never started.
//!
//! The lanes: every small input goes to the express lane first, whose one
//! thread compiles it only if it is cheap and otherwise hands it to the
//! bulk lane (`Next::Requeue`). So small modules, the common case, are never
//! stuck behind a large one. The bulk lane has as many threads as the
//! engine's settings allow (`max_concurrent_compiles`).
//!
//! Nothing here knows a VM or an engine: the NIF crate gives the key, the
//! input and the waiters, and sends the results.

use std::collections::HashMap;
use std::hash::Hash;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

/// One caller waiting for a compilation.
pub trait Waiter: Send + Sync {
    /// Whether the caller still wants the result.
    fn waiting(&self) -> bool;
}

/// A compilation asked for, queued or running: its input until a thread
/// takes it, and the callers waiting for its result.
pub struct Flight<K, I, W> {
    pub key: K,
    state: Mutex<FlightState<I, W>>,
}

struct FlightState<I, W> {
    input: Option<I>,
    waiters: Vec<Arc<W>>,
    started: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every state here is plain flags and lists, written whole: a panic
    // while one was held cannot leave it torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K, I, W> Flight<K, I, W> {
    pub fn started(&self) -> bool {
        lock(&self.state).started
    }
}

type FlightMap<K, I, W> = HashMap<K, Arc<Flight<K, I, W>>>;

/// What `Flights::join` found.
pub enum Joined<H, F> {
    /// The result was cached meanwhile.
    Hit(H),
    /// The same compilation was queued or running: the caller waits for it.
    Joined(F),
    /// A new compilation: queue it.
    New(F),
}

/// Compilations queued or running, by key. Locked before a flight's state,
/// and held while the caller looks in (or writes to) its cache, so a caller
/// finds a result in one or the other, never in neither.
pub struct Flights<K, I, W> {
    map: Mutex<FlightMap<K, I, W>>,
}

impl<K, I, W> Default for Flights<K, I, W>
where
    K: Eq + Hash + Clone,
    W: Waiter,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, I, W> Flights<K, I, W>
where
    K: Eq + Hash + Clone,
    W: Waiter,
{
    pub fn new() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// `cached()` if it has the result; otherwise adds `waiter` to the
    /// compilation of `key`, starting one (with `input()`) if there is none.
    pub fn join<H>(
        &self,
        key: K,
        cached: impl FnOnce() -> Option<H>,
        input: impl FnOnce() -> I,
        waiter: Arc<W>,
    ) -> Joined<H, Arc<Flight<K, I, W>>> {
        let mut map = lock(&self.map);
        if let Some(hit) = cached() {
            return Joined::Hit(hit);
        }
        if let Some(flight) = map.get(&key) {
            lock(&flight.state).waiters.push(waiter);
            return Joined::Joined(flight.clone());
        }
        let flight = Arc::new(Flight {
            key: key.clone(),
            state: Mutex::new(FlightState {
                input: Some(input()),
                waiters: vec![waiter],
                started: false,
            }),
        });
        map.insert(key, flight.clone());
        Joined::New(flight)
    }

    fn forget(map: &mut FlightMap<K, I, W>, flight: &Arc<Flight<K, I, W>>) {
        if map
            .get(&flight.key)
            .is_some_and(|there| Arc::ptr_eq(there, flight))
        {
            map.remove(&flight.key);
        }
    }

    /// After a waiter stopped waiting: whether the compilation goes on (it
    /// is running, or others still wait). One nobody waits for and not
    /// started is dropped now, its input released.
    pub fn withdraw(&self, flight: &Arc<Flight<K, I, W>>) -> bool {
        let mut map = lock(&self.map);
        let mut state = lock(&flight.state);
        if state.started || state.waiters.iter().any(|w| w.waiting()) {
            return true;
        }
        state.input = None;
        state.waiters.clear();
        drop(state);
        Self::forget(&mut map, flight);
        false
    }

    /// A compile thread takes the flight: its input, or `None` (and the
    /// flight is forgotten) when nobody waits for it any more.
    pub fn take(&self, flight: &Arc<Flight<K, I, W>>) -> Option<I> {
        let mut map = lock(&self.map);
        let mut state = lock(&flight.state);
        state.waiters.retain(|w| w.waiting());
        let input = if state.waiters.is_empty() {
            None
        } else {
            state.started = true;
            state.input.take()
        };
        if input.is_none() {
            state.input = None;
            drop(state);
            Self::forget(&mut map, flight);
        }
        input
    }

    /// Gives back the input of a flight handed to another lane: it is
    /// queued again, and cancellable until it starts.
    pub fn put_back(&self, flight: &Arc<Flight<K, I, W>>, input: I) {
        let mut state = lock(&flight.state);
        state.input = Some(input);
        state.started = false;
    }

    /// The compilation is over: `settle` runs under the map's lock (the
    /// caller caches the result there), the flight is forgotten, and its
    /// waiters are returned to be answered.
    pub fn finish(&self, flight: &Arc<Flight<K, I, W>>, settle: impl FnOnce()) -> Vec<Arc<W>> {
        let mut map = lock(&self.map);
        settle();
        Self::forget(&mut map, flight);
        let waiters = std::mem::take(&mut lock(&flight.state).waiters);
        waiters
    }

    /// Compilations waiting for a compile thread.
    pub fn queued(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|flight| !flight.started())
            .count()
    }
}

/// The two lanes of the compile threads (see the moduledoc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Express,
    Bulk,
}

/// What a compile thread does after running a task.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Queue the task again, on this lane.
    Requeue(Lane),
}

/// A unit of work for the compile threads.
pub trait Task: Send + Sync {
    fn run(&self, lane: Lane) -> Next;
    /// The task could not be queued again: answer its waiters with this.
    fn abandon(&self, message: String);
}

type Queued = Arc<dyn Task>;

/// The compile threads and their two queues.
pub struct Pool {
    express: Sender<Queued>,
    bulk: Sender<Queued>,
    /// Compile threads, both lanes.
    pub threads: usize,
    running: Arc<AtomicUsize>,
}

/// The text of a panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

impl Pool {
    /// Starts one express thread and `bulk_threads` bulk ones, named
    /// `{name}-x` and `{name}-{index}`, each with `stack_size` bytes.
    pub fn start(bulk_threads: usize, stack_size: usize, name: &str) -> Result<Pool, String> {
        let (express, express_receiver) = crossbeam_channel::unbounded::<Queued>();
        let (bulk, bulk_receiver) = crossbeam_channel::unbounded::<Queued>();
        let running = Arc::new(AtomicUsize::new(0));
        let spawn = |thread_name: String, lane: Lane, receiver: Receiver<Queued>| {
            let (express, bulk, running) = (express.clone(), bulk.clone(), running.clone());
            thread::Builder::new()
                .name(thread_name)
                .stack_size(stack_size)
                // At the normal priority: what keeps compiles from crowding
                // out guests is that at most `max_concurrent_compiles` run at
                // once. A lowered priority (nice 10 was tried) starved
                // compiles whenever the VM was busy.
                .spawn(move || {
                    for task in receiver {
                        running.fetch_add(1, Ordering::Relaxed);
                        // A task catches the compiler's panics; this
                        // catches its own, so the thread keeps serving.
                        let next = panic::catch_unwind(AssertUnwindSafe(|| task.run(lane)))
                            .unwrap_or(Next::Done);
                        running.fetch_sub(1, Ordering::Relaxed);
                        if let Next::Requeue(lane) = next {
                            let sender = if lane == Lane::Express {
                                &express
                            } else {
                                &bulk
                            };
                            if sender.send(task.clone()).is_err() {
                                task.abandon("the compile threads are gone".into());
                            }
                        }
                    }
                })
                .map(drop)
                .map_err(|e| format!("cannot start a compile thread: {e}"))
        };
        spawn(format!("{name}-x"), Lane::Express, express_receiver)?;
        for index in 0..bulk_threads {
            spawn(format!("{name}-{index}"), Lane::Bulk, bulk_receiver.clone())?;
        }
        Ok(Pool {
            express,
            bulk,
            threads: bulk_threads + 1,
            running,
        })
    }

    pub fn send(&self, lane: Lane, task: Arc<dyn Task>) -> Result<(), String> {
        let sender = match lane {
            Lane::Express => &self.express,
            Lane::Bulk => &self.bulk,
        };
        sender
            .send(task)
            .map_err(|_| "the compile threads are gone".to_string())
    }

    /// Tasks running right now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    struct TestWaiter(AtomicBool);

    impl TestWaiter {
        fn new() -> Arc<Self> {
            Arc::new(TestWaiter(AtomicBool::new(true)))
        }
        fn cancel(&self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }

    impl Waiter for TestWaiter {
        fn waiting(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    type TestFlights = Flights<&'static str, Vec<u8>, TestWaiter>;
    type TestFlight = Arc<Flight<&'static str, Vec<u8>, TestWaiter>>;

    fn flight(joined: Joined<(), TestFlight>) -> (bool, TestFlight) {
        match joined {
            Joined::New(flight) => (true, flight),
            Joined::Joined(flight) => (false, flight),
            Joined::Hit(()) => panic!("no cache in this test"),
        }
    }

    #[test]
    fn callers_of_the_same_key_share_one_compilation() {
        let flights = TestFlights::new();
        let (new, a) = flight(flights.join("k", || None, || vec![1], TestWaiter::new()));
        assert!(new);
        let (new, b) = flight(flights.join("k", || None, || vec![2], TestWaiter::new()));
        assert!(!new);
        assert!(Arc::ptr_eq(&a, &b));
        let (new, _) = flight(flights.join("other", || None, || vec![3], TestWaiter::new()));
        assert!(new);
        assert_eq!(flights.queued(), 2);
        // The first input is the one compiled.
        assert_eq!(flights.take(&a), Some(vec![1]));
        assert_eq!(flights.queued(), 1);
        assert_eq!(flights.finish(&a, || {}).len(), 2);
        // Forgotten: the next caller starts a new compilation.
        let (new, _) = flight(flights.join("k", || None, || vec![4], TestWaiter::new()));
        assert!(new);
    }

    #[test]
    fn a_cached_result_is_found_under_the_lock() {
        let flights = TestFlights::new();
        let joined = flights.join("k", || Some(7), Vec::new, TestWaiter::new());
        assert!(matches!(joined, Joined::Hit(7)));
        assert_eq!(flights.queued(), 0);
    }

    #[test]
    fn a_compilation_nobody_waits_for_is_dropped_before_it_starts() {
        let flights = TestFlights::new();
        let (first, second) = (TestWaiter::new(), TestWaiter::new());
        let (_, f) = flight(flights.join("k", || None, || vec![1], first.clone()));
        flight(flights.join("k", || None, || vec![1], second.clone()));
        first.cancel();
        assert!(flights.withdraw(&f), "another caller still waits");
        second.cancel();
        assert!(!flights.withdraw(&f));
        assert_eq!(flights.queued(), 0);
        // The thread that reaches it finds nothing to do.
        assert_eq!(flights.take(&f), None);
    }

    #[test]
    fn a_running_compilation_goes_on_when_its_caller_leaves() {
        let flights = TestFlights::new();
        let waiter = TestWaiter::new();
        let (_, f) = flight(flights.join("k", || None, || vec![1], waiter.clone()));
        assert_eq!(flights.take(&f), Some(vec![1]));
        waiter.cancel();
        assert!(flights.withdraw(&f));
    }

    #[test]
    fn a_thread_skips_a_flight_whose_callers_all_left() {
        let flights = TestFlights::new();
        let waiter = TestWaiter::new();
        let (_, f) = flight(flights.join("k", || None, || vec![1], waiter.clone()));
        waiter.cancel();
        assert_eq!(flights.take(&f), None);
        let (new, _) = flight(flights.join("k", || None, || vec![2], TestWaiter::new()));
        assert!(new, "the skipped flight was forgotten");
    }

    #[test]
    fn a_flight_put_back_is_queued_and_cancellable_again() {
        let flights = TestFlights::new();
        let waiter = TestWaiter::new();
        let (_, f) = flight(flights.join("k", || None, || vec![1], waiter.clone()));
        let input = flights.take(&f).unwrap();
        flights.put_back(&f, input);
        assert_eq!(flights.queued(), 1);
        waiter.cancel();
        assert!(!flights.withdraw(&f));
    }

    struct Recorder {
        lanes: Mutex<Vec<Lane>>,
        done: Mutex<mpsc::Sender<()>>,
        panic_first: AtomicBool,
    }

    impl Task for Recorder {
        fn run(&self, lane: Lane) -> Next {
            if self.panic_first.swap(false, Ordering::SeqCst) {
                panic!("the first run panics");
            }
            lock(&self.lanes).push(lane);
            if lane == Lane::Express {
                return Next::Requeue(Lane::Bulk);
            }
            let _ = lock(&self.done).send(());
            Next::Done
        }
        fn abandon(&self, _message: String) {}
    }

    #[test]
    fn the_express_lane_hands_work_to_the_bulk_lane() {
        let pool = Pool::start(2, 1 << 20, "test-compile").unwrap();
        assert_eq!(pool.threads, 3);
        let (done, finished) = mpsc::channel();
        let task = Arc::new(Recorder {
            lanes: Mutex::new(vec![]),
            done: Mutex::new(done),
            panic_first: AtomicBool::new(false),
        });
        pool.send(Lane::Express, task.clone()).unwrap();
        finished.recv().unwrap();
        assert_eq!(*lock(&task.lanes), vec![Lane::Express, Lane::Bulk]);
    }

    #[test]
    fn a_panicking_task_leaves_its_thread_serving() {
        let pool = Pool::start(1, 1 << 20, "test-panic").unwrap();
        let (done, finished) = mpsc::channel();
        let task = Arc::new(Recorder {
            lanes: Mutex::new(vec![]),
            done: Mutex::new(done),
            panic_first: AtomicBool::new(true),
        });
        pool.send(Lane::Bulk, task.clone()).unwrap();
        pool.send(Lane::Bulk, task.clone()).unwrap();
        finished.recv().unwrap();
        assert_eq!(*lock(&task.lanes), vec![Lane::Bulk]);
        assert_eq!(panic_message(&"text"), "text");
    }
}
