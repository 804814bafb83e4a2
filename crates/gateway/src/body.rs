//! The gateway's one response body type: bytes, a proxied function response,
//! or a stream of log lines (NDJSON).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ferrofaas_types::LogMessage;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::invocation::InvocationGuard;

pub struct Body {
    kind: Kind,
    /// Accounts for an invocation until its response is done.
    guard: Option<InvocationGuard>,
}

enum Kind {
    Full(Option<Bytes>),
    Proxied(Incoming),
    Logs { lines: mpsc::Receiver<LogMessage>, stop: Pin<Box<WaitForCancellationFutureOwned>> },
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body { kind: Kind::Full((!bytes.is_empty()).then_some(bytes)), guard: None }
    }

    pub fn empty() -> Body {
        Body::full(Bytes::new())
    }

    pub fn proxied(inner: Incoming) -> Body {
        Body { kind: Kind::Proxied(inner), guard: None }
    }

    /// Log lines as NDJSON until the channel ends or the gateway stops.
    pub fn logs(lines: mpsc::Receiver<LogMessage>, stop: WaitForCancellationFutureOwned) -> Body {
        Body { kind: Kind::Logs { lines, stop: Box::pin(stop) }, guard: None }
    }

    pub fn attach(&mut self, guard: InvocationGuard) {
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
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Proxied(inner) => Pin::new(inner).poll_frame(cx).map_err(io::Error::other),
            Kind::Logs { lines, stop } => {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                match lines.poll_recv(cx) {
                    Poll::Ready(Some(line)) => {
                        let mut json = serde_json::to_vec(&line).map_err(io::Error::other)?;
                        json.push(b'\n');
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(json)))))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Proxied(inner) => inner.is_end_stream(),
            Kind::Logs { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Proxied(inner) => inner.size_hint(),
            Kind::Logs { .. } => SizeHint::default(),
        }
    }
}
