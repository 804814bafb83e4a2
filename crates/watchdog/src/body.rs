//! The one response body type of the watchdog: bytes in memory, a function's
//! STDOUT as it is written, an upstream's body, or a file. No boxing of
//! trait objects on the request path.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::io::poll_read_buf;

use crate::process::Running;
use crate::request::{Deadline, RequestGuard};

/// Read size for STDOUT and files.
const CHUNK: usize = 16 * 1024;

pub struct Body {
    kind: Kind,
    /// Ends the request's accounting (metrics, in-flight) when the body is done.
    guard: Option<RequestGuard>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        deadline: Deadline,
    },
    Child(Box<ChildStream>),
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    },
    /// What a WebAssembly instance writes.
    #[cfg(feature = "wasm")]
    Wasm(ferrofaas_wasm::ResponseBody),
}

impl Body {
    pub fn empty() -> Body {
        Body::full(Bytes::new())
    }

    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        let kind = Kind::Full((!bytes.is_empty()).then_some(bytes));
        Body { kind, guard: None }
    }

    /// An upstream response body, cut off with an error at the deadline.
    pub fn upstream(inner: Incoming, deadline: Deadline) -> Body {
        Body { kind: Kind::Upstream { inner, deadline }, guard: None }
    }

    pub fn child(stream: ChildStream) -> Body {
        Body { kind: Kind::Child(Box::new(stream)), guard: None }
    }

    pub fn file(file: tokio::fs::File, len: u64) -> Body {
        Body { kind: Kind::File { file, remaining: len, buf: BytesMut::new() }, guard: None }
    }

    #[cfg(feature = "wasm")]
    pub fn wasm(body: ferrofaas_wasm::ResponseBody) -> Body {
        Body { kind: Kind::Wasm(body), guard: None }
    }

    pub(crate) fn attach(&mut self, guard: RequestGuard) {
        self.guard = Some(guard);
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, deadline } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(_))) if deadline.passed() => Poll::Ready(Some(Err(timed_out()))),
                Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(io::Error::other))),
                Poll::Pending if deadline.poll_expired(cx) => Poll::Ready(Some(Err(timed_out()))),
                Poll::Pending => Poll::Pending,
            },
            Kind::Child(stream) => stream.poll_frame(cx),
            #[cfg(feature = "wasm")]
            Kind::Wasm(body) => Pin::new(body).poll_frame(cx).map_err(io::Error::other),
            Kind::File { file, remaining, buf } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                if buf.capacity() < CHUNK {
                    buf.reserve(CHUNK);
                }
                match ready!(poll_read_buf(Pin::new(file), cx, buf)) {
                    Ok(0) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while it was being sent",
                    )))),
                    Ok(n) => {
                        *remaining = remaining.saturating_sub(n as u64);
                        Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
                    }
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
            Kind::Child(_) => false,
            Kind::File { remaining, .. } => *remaining == 0,
            #[cfg(feature = "wasm")]
            Kind::Wasm(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Child(_) => SizeHint::default(),
            Kind::File { remaining, .. } => SizeHint::with_exact(*remaining),
            #[cfg(feature = "wasm")]
            Kind::Wasm(body) => body.size_hint(),
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "exec_timeout reached while sending the response")
}

/// A function process whose STDOUT is being streamed as the response.
///
/// The response ends cleanly only if the process exits with status 0; a
/// non-zero exit or the deadline ends it with an error, so that the client
/// sees an incomplete response rather than a truncated "success".
pub struct ChildStream {
    first: Option<Bytes>,
    running: Running,
    deadline: Deadline,
    buf: BytesMut,
}

impl ChildStream {
    pub fn new(first: Bytes, running: Running, deadline: Deadline) -> ChildStream {
        ChildStream { first: Some(first), running, deadline, buf: BytesMut::new() }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let polled = self.poll_output(cx);
        let expired = match &polled {
            Poll::Ready(Some(Ok(_))) => self.deadline.passed(),
            Poll::Ready(_) => false,
            Poll::Pending => self.deadline.poll_expired(cx),
        };
        if expired {
            tracing::warn!(
                pid = self.running.pid(),
                "exec_timeout reached while streaming; killing the function"
            );
            // Dropping the stream (hyper does, after this error) reaps it.
            self.running.kill();
            self.running.output = None;
            return Poll::Ready(Some(Err(timed_out())));
        }
        polled
    }

    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.buf.capacity() < CHUNK / 4 {
            self.buf.reserve(CHUNK);
        }
        match ready!(self.running.poll_read_output(cx, &mut self.buf)) {
            Some(Ok(_)) => return Poll::Ready(Some(Ok(Frame::data(self.buf.split().freeze())))),
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None => {}
        }
        match ready!(self.running.poll_exit_status(cx)) {
            Ok(status) if status.success() => Poll::Ready(None),
            Ok(status) => {
                tracing::warn!(%status, "function exited with an error after its response had started");
                Poll::Ready(Some(Err(io::Error::other(format!("function {status}")))))
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}
