//! The compile threads, for every engine: starting a compilation (or
//! joining the same one queued or running), answering its callers, and
//! withdrawing a caller. The queue, its lanes and its de-duplication are
//! `munition_core::compile_queue`; this file gives them the input (the
//! caller's binary, kept alive, not copied), sends the results, and caches
//! them.

use std::path::PathBuf;
use std::sync::Arc;

use munition_core::compile_queue::{Flight, Joined, Lane, Next, Pool, Task};
use munition_core::limits::Limits;
use once_cell::sync::OnceCell;
use rustler::env::OwnedEnv;
use rustler::{Binary, Encoder, Env, Resource, ResourceArc, Term};

use super::cache::{Input, Waiter};
use super::{admit, admit_input, compile_guarded, NotCompiled, EXPRESS_INPUT};
use crate::atoms;
use crate::engine::module::{handle, Compiled};
use crate::engine::settings::settings;
use crate::engine::Engine;
use crate::vocabulary::error::{MunitionError, MunitionResult};

type EngineFlight<E> = Flight<(String, Limits), Input, Waiter<E>>;

/// A caller's claim on a compilation: `module_compile_cancel/1`, or dropping
/// it (its caller died), withdraws it.
pub struct Ticket<E: Engine> {
    waiter: Arc<Waiter<E>>,
    flight: Arc<EngineFlight<E>>,
}

impl<E: Engine> Resource for Ticket<E> {}

// A panic while a waiter or a flight is locked leaves plain flags and lists.
impl<E: Engine> std::panic::RefUnwindSafe for Ticket<E> {}

impl<E: Engine> Ticket<E> {
    /// Withdraws the caller; returns whether the compilation goes on (it is
    /// running, or others still wait for it).
    pub fn cancel(&self) -> bool {
        self.waiter.cancel();
        E::registry().flights.withdraw(&self.flight)
    }
}

impl<E: Engine> Drop for Ticket<E> {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A compilation on its way through the compile threads.
struct Job<E: Engine> {
    flight: Arc<EngineFlight<E>>,
    cache_capacity: usize,
    /// The cache directory of compiled code, if any (see `disk`).
    disk: Option<PathBuf>,
}

impl<E: Engine> Job<E> {
    fn answer(&self, result: MunitionResult<Arc<Compiled<E>>>) {
        let (hash, _) = &self.flight.key;
        let registry = E::registry();
        let waiters = registry.flights.finish(&self.flight, || {
            if let Ok(compiled) = &result {
                // Cached before the flight is forgotten, under the same
                // lock: a caller finds one or the other.
                registry.record(hash.clone(), compiled.clone(), self.cache_capacity);
            }
        });
        for waiter in waiters {
            waiter.deliver(&result);
        }
    }
}

impl<E: Engine> Task for Job<E> {
    /// Takes the input unless nobody waits, compiles, caches, and answers
    /// every waiter; or, on the express lane, hands a module too costly for
    /// it to the bulk lane.
    fn run(&self, lane: Lane) -> Next {
        let registry = E::registry();
        let Some((env, saved)) = registry.flights.take(&self.flight) else {
            return Next::Done;
        };
        let (hash, limits) = &self.flight.key;
        let outcome = env.run(|env| {
            let bytes: Binary = saved
                .load(env)
                .decode()
                .map_err(|_| NotCompiled::Refused(bad_input()))?;
            compile_guarded::<E>(
                bytes.as_slice(),
                hash.clone(),
                limits,
                lane == Lane::Express,
                self.disk.as_deref(),
            )
        });
        let result = match outcome {
            Ok(compiled) => Ok(compiled),
            Err(NotCompiled::Refused(error)) => Err(error),
            Err(NotCompiled::NotExpress) => {
                // Queued again, on the bulk lane: cancellable until it starts.
                registry.flights.put_back(&self.flight, (env, saved));
                return Next::Requeue(Lane::Bulk);
            }
        };
        self.answer(result);
        Next::Done
    }

    fn abandon(&self, message: String) {
        self.answer(Err(MunitionError::RuntimeFailure(message)));
    }
}

fn bad_input() -> MunitionError {
    MunitionError::BadArgs("wasm must be a binary".into())
}

static POOL: OnceCell<Pool> = OnceCell::new();

/// Stack of a compile thread: Cranelift and the validators are not deeply
/// recursive, but the WAT parser recurses on nesting, and a thread of our
/// own can afford the room.
const COMPILE_STACK_SIZE: usize = 8 << 20;

/// The compile threads of every engine: one express thread and
/// `max_concurrent_compiles` bulk ones, started with the first compilation.
fn pool() -> MunitionResult<&'static Pool> {
    POOL.get_or_try_init(|| {
        let bulk = settings().max_concurrent_compiles as usize;
        Pool::start(bulk, COMPILE_STACK_SIZE, "munition-compile")
            .map_err(MunitionError::RuntimeFailure)
    })
}

/// `{running, threads}` of the compile threads (0 threads before the first
/// compilation).
pub fn pool_stats() -> (usize, usize) {
    POOL.get()
        .map_or((0, 0), |pool| (pool.running(), pool.threads))
}

/// A compilation asked for: the bytes (their content hash from the lookup),
/// the cache's capacity, the limits, the cache directory of compiled code
/// (`None` for none, and always for Wasmi), and the tag of the answer.
/// Callers who join a compilation queued or running share it as it was
/// asked for first, directory included.
pub struct Request<'a> {
    pub bytes: Term<'a>,
    pub hash: String,
    pub cache_capacity: usize,
    pub limits: Limits,
    pub disk: Option<PathBuf>,
    pub tag: Term<'a>,
}

/// What starting a compilation did.
pub enum Start<E: Engine> {
    /// `{:ok, {handle, info}}`: compiled meanwhile, found in the cache.
    Hit(Arc<Compiled<E>>),
    /// `{:started, ticket}`: the result comes as `{tag, result}`.
    Started(ResourceArc<Ticket<E>>),
    /// `{:error, {kind, message}}`
    Refused(MunitionError),
}

impl<E: Engine> Encoder for Start<E> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Start::Hit(compiled) => (atoms::ok(), handle(compiled)).encode(env),
            Start::Started(ticket) => (atoms::started(), ticket).encode(env),
            Start::Refused(error) => (atoms::error(), error).encode(env),
        }
    }
}

/// Starts compiling `bytes` (whose content hash the lookup returned) on a
/// compile thread, or joins the same compilation queued or running, and
/// returns at once. Cheap on a normal scheduler: the bytes are kept alive,
/// not copied.
pub fn start<'a, E: Engine>(env: Env<'a>, request: Request<'a>) -> Start<E> {
    let Request {
        bytes,
        hash,
        cache_capacity,
        limits,
        disk,
        tag,
    } = request;
    let started = || -> MunitionResult<Start<E>> {
        let input = bytes.decode::<Binary>().map_err(|_| bad_input())?;
        admit_input::<E>(input.as_slice(), &limits)?;
        let size = input.len();
        let pool = pool()?;
        let registry = E::registry();

        let waiter = Arc::new(Waiter::new(env.pid(), tag));
        let joined = registry.flights.join(
            (hash.clone(), limits),
            || registry.get(&hash, cache_capacity),
            || {
                let input_env = OwnedEnv::new();
                let saved = input_env.save(bytes);
                (input_env, saved)
            },
            waiter.clone(),
        );
        let flight = match joined {
            Joined::Hit(hit) => return admit(hit, &limits).map(Start::Hit),
            Joined::Joined(flight) => flight,
            Joined::New(flight) => {
                let lane = if size <= EXPRESS_INPUT {
                    Lane::Express
                } else {
                    Lane::Bulk
                };
                let job = Arc::new(Job::<E> {
                    flight: flight.clone(),
                    cache_capacity,
                    disk,
                });
                pool.send(lane, job)
                    .map_err(MunitionError::RuntimeFailure)?;
                flight
            }
        };
        Ok(Start::Started(ResourceArc::new(Ticket { waiter, flight })))
    };
    started().unwrap_or_else(Start::Refused)
}
