//! A UDF's stdout and stderr: captured into its log, a call at a time.
//!
//! What a call writes is kept until the host drains it after the call, so an
//! instance's output never accumulates: a UDF that prints on every batch runs
//! as long as one that does not, and draining costs nothing when it printed
//! nothing. Writes never fail (a failing `print!` would make Rust's std
//! panic); past [`CALL_CAPACITY`] bytes in one call they are counted, not
//! kept, and the drained text says how many were dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of stdout (and of stderr) one call keeps at most.
pub const CALL_CAPACITY: usize = 4 << 20;

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

/// One output stream of an instance (stdout or stderr). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct CallOutput(Arc<Mutex<Captured>>);

impl CallOutput {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A panic while holding the lock leaves bytes, not broken invariants.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.lock();
        let room = CALL_CAPACITY.saturating_sub(captured.bytes.len());
        let kept = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..kept]);
        captured.dropped += bytes.len() - kept;
    }

    /// What was written since the last [`take`](Self::take), left in place.
    pub fn peek(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    /// What was written since the last call of `take`, as text, and how many
    /// bytes past [`CALL_CAPACITY`] were dropped; `None` if nothing was written.
    pub fn take(&self) -> Option<(String, usize)> {
        let mut captured = self.lock();
        if captured.bytes.is_empty() && captured.dropped == 0 {
            return None;
        }
        let bytes = std::mem::take(&mut captured.bytes);
        let dropped = std::mem::take(&mut captured.dropped);
        drop(captured);
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Some((text, dropped))
    }
}

impl IsTerminal for CallOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CallOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CallOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what does not fit is counted as dropped.
        Ok(CALL_CAPACITY)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CallOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CallOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_empties_and_the_overflow_is_counted() {
        let out = CallOutput::default();
        assert_eq!(out.take(), None);
        out.append(b"one\ntwo\n");
        assert_eq!(out.peek(), "one\ntwo\n");
        assert_eq!(out.take(), Some(("one\ntwo\n".to_string(), 0)));
        assert_eq!(out.take(), None);
        // Each call has its own capacity: many calls' worth is no problem.
        for _ in 0..3 {
            out.append(&vec![b'x'; CALL_CAPACITY - 1]);
            out.append(b"yz");
            let (text, dropped) = out.take().expect("written");
            assert_eq!((text.len(), dropped), (CALL_CAPACITY, 1));
        }
    }
}
