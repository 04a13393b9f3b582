//! Recording every host call of a store, and answering them in a replay
//! (`Munition.replay/3`). The log's format is `munition_core::journal`.
//!
//! Each engine makes every import it links through one place, which calls
//! `begin` before the host function and `end` after it: a host call is
//! recorded whole, whatever the function (Munition's built-ins, WASI, an
//! Elixir host function), with what it wrote into guest memory read back
//! after it from the regions its row of the built-ins' table declares
//! (`Out`), or, for an Elixir host function, as the bridge wrote them
//! (`wrote`). In a replay, every import is `answer` instead: nothing is
//! called, the log says what each host call returned and did.
//!
//! A call with nothing from outside pays nothing: `begin` is only reached
//! from a host call. A log past its bound stops recording and says why the
//! call cannot be replayed; so does anything a store cannot record.

use munition_core::guest::bounds;
use munition_core::journal::{Ending, Entry, Failure, Reader};

use crate::atoms;
use crate::host::context::{fail, HostCtx, Stop};
use crate::host::state::StoreState;
use crate::vocabulary::term::bytes_term;
use crate::vocabulary::trap::{HostFailure, Reason, TrapKind};
use crate::vocabulary::value::{Value, ValueType};

/// A region of guest memory a built-in may write, in terms of its
/// parameters: what `end` reads back after it, for the log.
pub enum Out {
    /// `len` bytes at the address in parameter `at`.
    Fixed { at: usize, len: u32 },
    /// `unit` times parameter `len` bytes at the address in parameter `at`.
    Sized { at: usize, len: usize, unit: u32 },
    /// At the address in parameter `at`, as many bytes as the u32 at the
    /// address in parameter `used` says were used (at most parameter `cap`).
    Used { at: usize, cap: usize, used: usize },
    /// The buffers of the iovec array at parameter `iovs` of parameter
    /// `count` entries, as many bytes as the u32 at parameter `done` says.
    Iovecs {
        iovs: usize,
        count: usize,
        done: usize,
    },
    /// WASI's argument or environment strings: the pointer array at
    /// parameter 0 and the buffer at parameter 1.
    Strings(Strings),
}

pub enum Strings {
    Args,
    Env,
}

/// What a store does with its host calls.
pub enum Journal {
    /// Records them, up to its bound.
    Recording(Recorder),
    /// Answers them from a log.
    Replaying(Player),
}

pub struct Recorder {
    /// The fuel the call was given: the log counts fuel consumed, which a
    /// replay with a smaller budget (`until`) still matches.
    given: u64,
    log: Vec<u8>,
    entries: u32,
    limit: usize,
    /// Why the log cannot replay the call, once known: recording stops.
    unavailable: Option<String>,
    /// What an Elixir host function wrote during the host call in progress.
    writes: Vec<(u32, Vec<u8>)>,
    /// A host call whose results come in a later slice (see `suspend`).
    suspended: Option<Suspended>,
}

/// A host call begun in one slice and ended in another: Wasmi's calls to
/// Elixir host functions and its sleeps, which suspend the whole execution
/// and give the results when it is resumed.
struct Suspended {
    mark: Mark,
    import: u32,
    writes: &'static [Out],
    params: Vec<Value>,
}

pub struct Player {
    given: u64,
    log: Vec<u8>,
    at: usize,
    /// Host calls answered so far.
    answered: u32,
    /// The first point where the guest did not do what the log says.
    pub diverged: Option<String>,
    /// For a call that was stopped at its deadline in wasm code: the fuel
    /// it had consumed then, where the replay stops it (see `stops_at`).
    stop_at: Option<u64>,
}

/// What a store says of its log, for the capture (`{:log, bytes}`,
/// `{:unavailable, why}`, `{:replayed, answered, diverged}`).
pub enum Report {
    /// The log and how many host calls it holds.
    Log(Vec<u8>, u32),
    Unavailable(String),
    /// Host calls answered, the divergence, whether every entry was.
    Replayed(u32, Option<String>, bool),
}

impl rustler::Encoder for Report {
    fn encode<'a>(&self, env: rustler::Env<'a>) -> rustler::Term<'a> {
        match self {
            Report::Log(log, entries) => (atoms::log(), bytes_term(env, log), *entries).encode(env),
            Report::Unavailable(why) => (atoms::unavailable(), why).encode(env),
            Report::Replayed(answered, diverged, whole) => {
                (atoms::replayed(), *answered, diverged, *whole).encode(env)
            }
        }
    }
}

impl Journal {
    /// A recording of at most `limit` bytes, of a call given `given` fuel.
    pub fn recording(limit: usize, given: u64) -> Journal {
        Journal::Recording(Recorder {
            given,
            log: Vec::new(),
            entries: 0,
            limit,
            unavailable: None,
            writes: Vec::new(),
            suspended: None,
        })
    }

    /// A replay of `log` with `given` fuel, stopping at `stop_at` fuel
    /// consumed if given.
    pub fn replaying(log: Vec<u8>, stop_at: Option<u64>, given: u64) -> Journal {
        Journal::Replaying(Player {
            given,
            log,
            at: 0,
            answered: 0,
            diverged: None,
            stop_at,
        })
    }

    /// The fuel the call was given.
    fn given(&self) -> u64 {
        match self {
            Journal::Recording(recorder) => recorder.given,
            Journal::Replaying(player) => player.given,
        }
    }

    pub fn is_replaying(&self) -> bool {
        matches!(self, Journal::Replaying(_))
    }

    /// Nothing after this can be recorded: the log says why.
    pub fn unavailable(&mut self, why: impl FnOnce() -> String) {
        if let Journal::Recording(recorder) = self {
            if recorder.unavailable.is_none() {
                recorder.unavailable = Some(why());
                recorder.log = Vec::new();
            }
        }
    }

    /// Records bytes an Elixir host function wrote at `address`.
    pub fn wrote(&mut self, address: u64, bytes: &[u8]) {
        if let Journal::Recording(recorder) = self {
            if recorder.unavailable.is_none() {
                recorder.writes.push((address as u32, bytes.to_vec()));
            }
        }
    }

    /// Whether a replay stops its guest here, with `fuel` left: at or past
    /// the fuel where the recorded call was stopped at its deadline, with
    /// every host call of the log answered.
    pub fn stops_at(&self, fuel: impl FnOnce() -> u64) -> bool {
        match self {
            Journal::Replaying(player) => player.stop_at.is_some_and(|at| {
                player.at == player.log.len() && player.given.saturating_sub(fuel()) >= at
            }),
            Journal::Recording(_) => false,
        }
    }

    /// What the capture says of the log. The log itself is handed out, not
    /// copied (a copy of a large one cost most of a crash's capture): the
    /// capture is the last thing that reads a failed store, and the log is
    /// complete by then (nothing runs in a failed store).
    pub fn report(&mut self) -> Report {
        match self {
            Journal::Recording(recorder) => match &recorder.unavailable {
                Some(why) => Report::Unavailable(why.clone()),
                None => {
                    let log = std::mem::take(&mut recorder.log);
                    // A second capture cannot say it has the log.
                    recorder.unavailable = Some("the log went to an earlier capture".into());
                    Report::Log(log, recorder.entries)
                }
            },
            Journal::Replaying(player) => Report::Replayed(
                player.answered,
                player.diverged.clone(),
                player.at == player.log.len(),
            ),
        }
    }
}

/// The store before a host call, for `end` to see what the call changed.
pub struct Mark {
    /// Fuel consumed.
    fuel: u64,
    log_lines: usize,
    log_dropped: u64,
    stdout: usize,
    stderr: usize,
    exited: bool,
    failed: bool,
    timed_out: bool,
}

/// The store before a host call, when it records one.
pub fn begin(ctx: &mut dyn HostCtx) -> Option<Mark> {
    match &ctx.state().journal {
        Journal::Recording(recorder) if recorder.unavailable.is_none() => {}
        _ => return None,
    }
    let given = ctx.state().journal.given();
    let fuel = match ctx.fuel() {
        Ok(fuel) => given.saturating_sub(fuel),
        Err(why) => {
            ctx.state()
                .journal
                .unavailable(|| format!("the fuel left could not be read: {why}"));
            return None;
        }
    };
    let state = ctx.state();
    let (stdout, stderr) = output_lengths(state);
    Some(Mark {
        fuel,
        log_lines: state.log.lines.len(),
        log_dropped: state.log.dropped,
        stdout,
        stderr,
        exited: state.exit_code.is_some(),
        failed: state.host_failure.is_some(),
        timed_out: state.timed_out,
    })
}

fn output_lengths(state: &StoreState) -> (usize, usize) {
    state.wasi.as_ref().map_or((0, 0), |wasi| {
        (wasi.stdout.kept_len(), wasi.stderr.kept_len())
    })
}

/// How a host function's outcome ends its entry.
pub fn ending(outcome: &Result<(), Stop>) -> Ending {
    match outcome {
        Ok(()) => Ending::Returned,
        Err(stop) => ending_of(stop),
    }
}

/// How a host call that stopped the guest ends its entry.
pub fn ending_of(stop: &Stop) -> Ending {
    match stop {
        Stop::Failed(message) => Ending::Failed(message.clone()),
        Stop::OutOfFuel => Ending::OutOfFuel,
    }
}

/// Records the host call that began at `mark`, of import `import` with
/// `params`, which wrote `writes` and ended as `ending` with `results`.
pub fn end(
    ctx: &mut dyn HostCtx,
    mark: Option<Mark>,
    import: u32,
    writes: &[Out],
    params: &[Value],
    results: &[Value],
    ending: Ending,
) {
    let Some(mark) = mark else { return };
    let given = ctx.state().journal.given();
    let fuel_after = given.saturating_sub(ctx.fuel().unwrap_or(0));
    let (memory, state) = ctx.memory_and_state();
    let mut entry = Entry {
        import,
        fuel_before: mark.fuel,
        fuel_after,
        results: if ending == Ending::Returned {
            results.to_vec()
        } else {
            Vec::new()
        },
        ending,
        ..Entry::default()
    };
    if let Some(data) = memory {
        for out in writes {
            read_back(out, params, data, state, &mut entry.writes);
        }
    }
    effects(state, &mark, &mut entry);
    let Journal::Recording(recorder) = &mut state.journal else {
        return;
    };
    if recorder.unavailable.is_some() {
        return;
    }
    entry.writes.append(&mut recorder.writes);
    let before = recorder.log.len();
    entry.encode(&mut recorder.log);
    recorder.entries += 1;
    if recorder.log.len() > recorder.limit {
        let (entries, limit) = (recorder.entries, recorder.limit);
        recorder.log.truncate(before);
        state.journal.unavailable(|| {
            format!("the replay log passed its bound of {limit} bytes at host call {entries}")
        });
    }
}

/// Keeps the host call begun at `mark` until its results come, in a later
/// slice (`resume`).
pub fn suspend(
    ctx: &mut dyn HostCtx,
    mark: Option<Mark>,
    import: u32,
    writes: &'static [Out],
    params: &[Value],
) {
    let Some(mark) = mark else { return };
    if let Journal::Recording(recorder) = &mut ctx.state().journal {
        recorder.suspended = Some(Suspended {
            mark,
            import,
            writes,
            params: params.to_vec(),
        });
    }
}

/// Records the suspended host call, which ended as `ending` with `results`.
pub fn resume(ctx: &mut dyn HostCtx, results: &[Value], ending: Ending) {
    let suspended = match &mut ctx.state().journal {
        Journal::Recording(recorder) => recorder.suspended.take(),
        Journal::Replaying(_) => None,
    };
    if let Some(call) = suspended {
        end(
            ctx,
            Some(call.mark),
            call.import,
            call.writes,
            &call.params,
            results,
            ending,
        );
    }
}

/// What the host call changed of the store besides memory.
fn effects(state: &StoreState, mark: &Mark, entry: &mut Entry) {
    entry.log = state.log.lines[mark.log_lines.min(state.log.lines.len())..].to_vec();
    entry.log_dropped = state.log.dropped - mark.log_dropped.min(state.log.dropped);
    if let Some(wasi) = &state.wasi {
        (entry.stdout, entry.stdout_truncated) = wasi.stdout.since(mark.stdout);
        (entry.stderr, entry.stderr_truncated) = wasi.stderr.since(mark.stderr);
    }
    if !mark.exited {
        entry.exit_code = state.exit_code;
    }
    if !mark.failed {
        entry.failure = state.host_failure.as_ref().map(|failure| Failure {
            reason: index_of(Reason::ALL, failure.reason),
            trap: index_of(TrapKind::ALL, failure.trap),
            message: failure.message.clone(),
        });
    }
    entry.timed_out = !mark.timed_out && state.timed_out;
}

fn index_of<T: PartialEq>(all: &[T], item: T) -> u8 {
    all.iter().position(|x| *x == item).unwrap_or(0) as u8
}

fn u32_at(data: &[u8], address: u64) -> Option<u32> {
    let range = bounds(data.len(), address, 4)?;
    Some(u32::from_le_bytes(data[range].try_into().ok()?))
}

fn param(params: &[Value], index: usize) -> u64 {
    match params.get(index) {
        Some(Value::I32(v)) => *v as u32 as u64,
        _ => 0,
    }
}

/// Appends the bytes of region `out` as the call left them, as far as they
/// lie in memory (a region outside it was not written: the call failed).
fn read_back(
    out: &Out,
    params: &[Value],
    data: &[u8],
    state: &StoreState,
    writes: &mut Vec<(u32, Vec<u8>)>,
) {
    let mut region = |address: u64, len: u64| {
        if let Some(range) = bounds(data.len(), address, len) {
            writes.push((address as u32, data[range].to_vec()));
        }
    };
    match out {
        Out::Fixed { at, len } => region(param(params, *at), u64::from(*len)),
        Out::Sized { at, len, unit } => {
            region(param(params, *at), param(params, *len) * u64::from(*unit))
        }
        Out::Used { at, cap, used } => {
            let used = u32_at(data, param(params, *used)).map_or(0, u64::from);
            region(param(params, *at), used.min(param(params, *cap)))
        }
        Out::Iovecs { iovs, count, done } => {
            let mut left = u32_at(data, param(params, *done)).map_or(0, u64::from);
            let iovs = param(params, *iovs);
            for entry in 0..param(params, *count) {
                if left == 0 {
                    break;
                }
                let (Some(buf), Some(len)) = (
                    u32_at(data, iovs + entry * 8),
                    u32_at(data, iovs + entry * 8 + 4),
                ) else {
                    break;
                };
                let taken = u64::from(len).min(left);
                region(u64::from(buf), taken);
                left -= taken;
            }
        }
        Out::Strings(which) => {
            let strings = state.wasi.as_ref().map(|wasi| match which {
                Strings::Args => &wasi.plain.args,
                Strings::Env => &wasi.plain.env,
            });
            let (count, size) = strings.map_or((0, 0), |strings| {
                let size: usize = strings.iter().map(|s| s.len() + 1).sum();
                (strings.len() as u64, size as u64)
            });
            region(param(params, 0), count * 4);
            region(param(params, 1), size);
        }
    }
}

/// Answers host call of import `import` from the log: applies what it
/// wrote and did, sets the fuel it left, and returns what it returned. A
/// guest that does not do what the log says (another import, another fuel
/// count, a host call past the log's end) fails the call there, the
/// divergence kept for the replay's answer.
pub fn answer(ctx: &mut dyn HostCtx, import: u32, results: &mut [Value]) -> Result<(), Stop> {
    let left = ctx.fuel().unwrap_or(0);
    let given = ctx.state().journal.given();
    let fuel = given.saturating_sub(left);
    let entry = match next(ctx.state(), import, fuel, left == 0) {
        Ok(Some(entry)) => entry,
        // A replay stopped short (`until`): its budget ran out before this
        // host call, which is where it stops.
        Ok(None) => return Err(Stop::OutOfFuel),
        Err(why) => {
            if let Journal::Replaying(player) = &mut ctx.state().journal {
                player.diverged.get_or_insert(why.clone());
            }
            return Err(fail(ctx, Reason::HostError, TrapKind::HostError, why));
        }
    };
    if entry.fuel_after > fuel {
        ctx.charge(entry.fuel_after - fuel)?;
    }
    let (memory, state) = ctx.memory_and_state();
    if let Some(data) = memory {
        for (address, bytes) in &entry.writes {
            if let Some(range) = bounds(data.len(), u64::from(*address), bytes.len() as u64) {
                data[range].copy_from_slice(bytes);
            }
        }
    }
    for (level, line) in entry.log {
        state.log.bytes += line.len();
        state.log.lines.push((level, line));
    }
    state.log.dropped += entry.log_dropped;
    if let Some(wasi) = &state.wasi {
        wasi.stdout.replay(&entry.stdout, entry.stdout_truncated);
        wasi.stderr.replay(&entry.stderr, entry.stderr_truncated);
    }
    if entry.exit_code.is_some() {
        state.exit_code = entry.exit_code;
    }
    if let Some(failure) = entry.failure {
        state.host_failure.get_or_insert(HostFailure {
            reason: Reason::ALL
                .get(failure.reason as usize)
                .copied()
                .unwrap_or(Reason::HostError),
            trap: TrapKind::ALL
                .get(failure.trap as usize)
                .copied()
                .unwrap_or(TrapKind::Unknown),
            message: failure.message,
        });
    }
    state.timed_out |= entry.timed_out;
    match entry.ending {
        Ending::Returned => {
            for (slot, value) in results.iter_mut().zip(entry.results) {
                *slot = value;
            }
            Ok(())
        }
        Ending::Failed(message) => Err(Stop::Failed(message)),
        Ending::OutOfFuel => Err(Stop::OutOfFuel),
    }
}

/// `answer` for an import whose results are of `types`: the values it
/// returns, or how it stops the guest.
pub fn answered(
    ctx: &mut dyn HostCtx,
    import: u32,
    types: &[ValueType],
) -> Result<Vec<Value>, Stop> {
    let mut results: Vec<Value> = types.iter().map(|ty| Value::default_for(*ty)).collect();
    answer(ctx, import, &mut results)?;
    Ok(results)
}

/// The log's next entry, if it is the host call the guest makes now;
/// `None` if the guest has no fuel left (`exhausted`) and the log's host
/// call began past the fuel it was given: a guest runs a little past its
/// budget between the engine's checks of it, but its fuel left reads 0
/// there, so the count cannot be compared, and the replay stops there.
fn next(
    state: &mut StoreState,
    import: u32,
    fuel: u64,
    exhausted: bool,
) -> Result<Option<Entry>, String> {
    let Journal::Replaying(player) = &mut state.journal else {
        return Err("replay: the store has no log to answer from".into());
    };
    let call = player.answered + 1;
    let mut reader = Reader::new(&player.log[player.at..]);
    let read = reader.next_entry();
    let used = reader.position();
    let entry = match read {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Err(format!(
                "host call {call} (import {import}): the log ends after {} host calls",
                player.answered
            ))
        }
        Err(why) => return Err(format!("host call {call}: the log is cut short: {why}")),
    };
    if entry.import != import {
        return Err(format!(
            "host call {call}: the guest called import {import}, the log has import {}",
            entry.import
        ));
    }
    if exhausted && entry.import == import && entry.fuel_before > fuel {
        return Ok(None);
    }
    if entry.fuel_before != fuel {
        return Err(format!(
            "host call {call} (import {import}): the guest had consumed {fuel} fuel, the log has {}",
            entry.fuel_before
        ));
    }
    player.at += used;
    player.answered = call;
    Ok(Some(entry))
}
