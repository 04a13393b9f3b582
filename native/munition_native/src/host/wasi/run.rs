//! The WASI state of one store (`WasiRun`), made from the call's
//! configuration, and what it gives back (`WasiOutput`).

use rustler::types::atom::Atom;
use rustler::{Binary, Decoder, NifResult, Term};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::clock::{self, GuestClock};
use super::error::error_chain;
use super::http::{Allowed, HttpRun};
use super::pipe::CapturePipe;
use super::plain::{Plain, Sleep};
use crate::atoms;
use crate::vocabulary::error::{MunitionError, MunitionResult};
use crate::vocabulary::term::OwnedBytes;

/// Bytes from an Elixir binary.
pub struct Bytes(pub Vec<u8>);

impl<'a> Decoder<'a> for Bytes {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let binary: Binary = term.decode()?;
        Ok(Bytes(binary.as_slice().to_vec()))
    }
}

/// A call's WASI configuration, as `Munition.Options` checked it and
/// `Munition.Host.WASI` reduced it to what the granted capabilities allow.
#[derive(rustler::NifMap)]
#[rustler(decode)]
pub struct WasiConfig {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Bytes,
    /// `{guest_path, host_path, writable}`.
    pub preopens: Vec<(String, String, bool)>,
    pub stdout_limit: u64,
    pub stderr_limit: u64,
    /// `:real` or `:deterministic`.
    pub clock: Atom,
    /// Where outgoing HTTP may go (components): empty unless `:wasi_http`
    /// is granted (see `host::wasi::http`).
    pub http_allow: Vec<Allowed>,
    pub http_response_limit: u64,
}

/// What a guest wrote to its stdout and stderr, as far as the bounds let it.
#[derive(rustler::NifMap)]
#[rustler(encode)]
pub struct WasiOutput {
    pub stdout: OwnedBytes,
    pub stderr: OwnedBytes,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// The WASI state of one store.
pub struct WasiRun {
    /// Wasmtime's context: descriptors, arguments, environment, preopens.
    pub ctx: wasmtime_wasi::p1::WasiP1Ctx,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
    /// The guest's clocks.
    pub clock: GuestClock,
    /// The descriptors of an engine without Wasmtime's context (`plain`).
    pub plain: Plain,
    /// A `poll_oneoff` of such an engine, sleeping (`plain`).
    pub sleeping: Option<Sleep>,
    /// Outgoing HTTP (`wasi:http`, components only).
    pub http: HttpRun,
}

impl WasiRun {
    /// The WASI state of a call with `config` and `fuel` (the deterministic
    /// clock counts the fuel consumed). The host's environment, arguments and
    /// stdio are never inherited.
    pub fn new(config: &WasiConfig, fuel: u64) -> MunitionResult<WasiRun> {
        let limit = |bytes: u64| usize::try_from(bytes).unwrap_or(usize::MAX);
        let stdout = CapturePipe::new(limit(config.stdout_limit));
        let stderr = CapturePipe::new(limit(config.stderr_limit));
        let deterministic = config.clock == atoms::deterministic();
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&config.args)
            .envs(&config.env)
            .stdin(MemoryInputPipe::new(config.stdin.0.clone()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            // File operations run on wasmtime-wasi's threads, never on a
            // scheduler's: the guest waits for them suspended.
            .allow_blocking_current_thread(false);
        if deterministic {
            // What Wasmtime's own code reads of the clocks (a file time set
            // to "now") is the deterministic clock's starting instant.
            builder
                .wall_clock(clock::FixedWallClock)
                .monotonic_clock(clock::FixedMonotonicClock);
        }
        for (guest, host, writable) in &config.preopens {
            let perms = if *writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder.preopened_dir(host, guest, perms).map_err(|e| {
                MunitionError::Instantiation(format!(
                    "cannot preopen {host} as {guest}: {}",
                    error_chain(&e)
                ))
            })?;
        }
        Ok(WasiRun {
            ctx: builder.build_p1(),
            stdout,
            stderr,
            clock: GuestClock::new(deterministic, fuel),
            plain: Plain::new(&config.args, &config.env, &config.stdin.0),
            sleeping: None,
            http: HttpRun::new(config.http_allow.clone(), config.http_response_limit),
        })
    }

    /// An empty WASI state: no stdio, arguments, environment or files.
    pub fn empty() -> WasiRun {
        WasiRun {
            ctx: WasiCtxBuilder::new().build_p1(),
            stdout: CapturePipe::new(0),
            stderr: CapturePipe::new(0),
            clock: GuestClock::new(false, 0),
            plain: Plain::new(&[], &[], &[]),
            sleeping: None,
            http: HttpRun::denied(),
        }
    }

    /// What the guest has written so far.
    pub fn output(&self) -> WasiOutput {
        let (stdout, stdout_truncated) = self.stdout.contents();
        let (stderr, stderr_truncated) = self.stderr.contents();
        WasiOutput {
            stdout: OwnedBytes(stdout),
            stderr: OwnedBytes(stderr),
            stdout_truncated,
            stderr_truncated,
        }
    }
}
