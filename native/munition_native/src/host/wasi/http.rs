//! Outgoing HTTP for components (WASI 0.2's `wasi:http/types` and
//! `wasi:http/outgoing-handler`): `wasmtime-wasi-http`'s implementation over
//! the store's WASI state (its resource table is the one `wasi:io`'s streams
//! and pollables live in), with Munition's hooks deciding what a request
//! reaches.
//!
//! Denied unless listed: a request goes out only when its scheme, host and
//! port match an entry of the call's allowlist (`:http_allow`, which
//! `Munition.Host.WASI` gives only with `:wasi_http` granted); any other gets
//! WASI's own `HTTP-request-denied`, an error the guest can return. An
//! allowed one is sent by `wasmtime-wasi-http`'s own client
//! (`default_send_request`, on `wasmtime-wasi`'s Tokio runtime), bounded by
//! the call's deadline and its response body by `:http_response_limit`.
//!
//! The state is the store's, made fresh for each call and dropped with it:
//! dropping it drops the request's task and connection (Tokio tasks that
//! `wasmtime-wasi` aborts when their handles go), so no request outlives
//! the call.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::uri::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    default_send_request, Error, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView,
    WasiHttpHooks, WasiHttpView,
};

use crate::host::state::StoreState;

/// One entry of the allowlist, as `Munition.Host.WASI` normalised it:
/// `{scheme, host, port}`, the scheme (`"http"` or `"https"`) and the port
/// `nil` when the entry does not restrict them, the host lower-case (an
/// IPv6 address in brackets).
pub type Allowed = (Option<String>, String, Option<u16>);

/// A call's outgoing HTTP: `wasmtime-wasi-http`'s context and Munition's
/// hooks.
pub struct HttpRun {
    pub ctx: WasiHttpCtx,
    pub hooks: Hooks,
}

impl HttpRun {
    /// Requests to what `allow` lists, response bodies of at most
    /// `response_limit` bytes.
    pub fn new(allow: Vec<Allowed>, response_limit: u64) -> HttpRun {
        HttpRun {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks {
                allow,
                response_limit,
                // Set from the store's before every use (`http`).
                deadline: Instant::now(),
            },
        }
    }

    /// Every request denied.
    pub fn denied() -> HttpRun {
        HttpRun::new(Vec::new(), 0)
    }
}

/// What `wasmtime-wasi-http` asks of Munition: whether and how a request is
/// sent.
pub struct Hooks {
    allow: Vec<Allowed>,
    response_limit: u64,
    deadline: Instant,
}

impl Hooks {
    /// Whether the allowlist lets `uri` through: an entry whose host is the
    /// URI's (compared without case, as written: a name is not resolved to
    /// match an address), whose scheme, if it names one, is the URI's, and
    /// whose port, or else the scheme's default (80, 443), is the URI's.
    /// An authority with user information is never let through.
    fn allows(&self, uri: &Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("");
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        if authority.as_str().contains('@') {
            return false;
        }
        let port = authority.port_u16().unwrap_or(default_port);
        self.allow
            .iter()
            .any(|(allowed_scheme, host, allowed_port)| {
                allowed_scheme.as_deref().is_none_or(|s| s == scheme)
                    && host.eq_ignore_ascii_case(authority.host())
                    && allowed_port.unwrap_or(default_port) == port
            })
    }
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_error: Sent,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send> {
        if !self.allows(request.uri()) {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let deadline = self.deadline;
        let limit = self.response_limit;
        // Run on wasmtime-wasi's Tokio runtime (its `handle` spawns this),
        // where the timers below are made; each one that fires wakes the
        // guest's driver through the task's handle.
        Box::new(async move {
            let at = tokio::time::Instant::from_std(deadline);
            let (response, connection) =
                tokio::time::timeout_at(at, default_send_request(request, options))
                    .await
                    .map_err(|_| Error::HttpResponseTimeout)??;
            // A body announced past the limit fails before the guest reads
            // any of it, with WASI's own error code; one that grows past it
            // fails as it is read (`Bounded`).
            let announced = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
            if let Some(length) = announced.filter(|length| *length > limit) {
                return Err(Error::HttpResponseBodySize(Some(length)));
            }
            let connection: Sent = Box::new(async move {
                tokio::time::timeout_at(at, connection)
                    .await
                    .unwrap_or(Err(Error::HttpResponseTimeout))
            });
            let response = response.map(|body| {
                Bounded {
                    body: body.boxed_unsync(),
                    left: limit,
                    limit,
                    deadline,
                }
                .boxed_unsync()
            });
            Ok((response, connection))
        })
    }
}

/// A response body bounded by the call: at most `limit` bytes (then the
/// read fails with `HTTP-response-body-size`: in `wasmtime-wasi-http` 48 a
/// body's error reaches the guest as a stream error whose text says so,
/// with no `http-error-code`), and nothing past the deadline. It is read
/// as the guest reads, in the guest's own polls, and the driver resumes a
/// waiting guest at its deadline, so the deadline is checked at each poll
/// rather than by a timer.
struct Bounded {
    body: WasiBody,
    left: u64,
    limit: u64,
    deadline: Instant,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
        }
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let len = data.map_or(0, |bytes| bytes.len() as u64);
            if len > self.left {
                self.left = 0;
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.limit)))));
            }
            self.left -= len;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A store's outgoing HTTP: the call's, or one that denies every request
/// for a call granted none (`StoreState::wasi`).
impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let deadline = self.deadline;
        let wasi = self.wasi();
        wasi.http.hooks.deadline = deadline;
        let WasiCtxView { table, .. } = wasi.ctx.ctx();
        WasiHttpCtxView {
            ctx: &mut wasi.http.ctx,
            table,
            hooks: &mut wasi.http.hooks,
        }
    }
}
