//! The pipes that capture a guest's stdout and stderr: bounded, in memory,
//! never blocking.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What one `check_write` of a capture pipe allows: it never blocks and
/// never refuses, and drops what is past its limit.
const WRITE_PERMIT: usize = 1 << 20;

/// A guest's stdout or stderr: kept in memory up to `limit` bytes; the rest
/// is dropped (the guest is told it was written) and the pipe marked
/// truncated. Clones share the bytes.
#[derive(Clone)]
pub struct CapturePipe(Arc<Mutex<Captured>>);

struct Captured {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl CapturePipe {
    pub fn new(limit: usize) -> Self {
        CapturePipe(Arc::new(Mutex::new(Captured {
            bytes: Vec::new(),
            limit,
            truncated: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // Appending bytes cannot leave the buffer inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, bytes: &[u8]) {
        let mut captured = self.lock();
        let room = captured.limit.saturating_sub(captured.bytes.len());
        if bytes.len() > room {
            captured.truncated = true;
        }
        let kept = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..kept]);
    }

    /// How many bytes are kept.
    pub fn kept_len(&self) -> usize {
        self.lock().bytes.len()
    }

    /// The bytes kept after the first `from`, and whether some were
    /// dropped (for the replay log).
    pub fn since(&self, from: usize) -> (Vec<u8>, bool) {
        let captured = self.lock();
        let kept = captured.bytes.get(from..).unwrap_or_default().to_vec();
        (kept, captured.truncated)
    }

    /// Appends bytes a replay log says were kept, and its truncation.
    pub fn replay(&self, bytes: &[u8], truncated: bool) {
        let mut captured = self.lock();
        captured.bytes.extend_from_slice(bytes);
        captured.truncated |= truncated;
    }

    /// The bytes kept, and whether some were dropped.
    pub fn contents(&self) -> (Vec<u8>, bool) {
        let captured = self.lock();
        (captured.bytes.clone(), captured.truncated)
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
