//! The gateway's one response body type: bytes, a proxied function response,
//! or a stream of log lines (NDJSON).

use std::future::Future;
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
    /// Resolves when the replica a proxied body comes from is seen gone
    /// (made the first time the body waits for it).
    gone: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

enum Kind {
    Full(Option<Bytes>),
    Proxied(Incoming),
    Logs { lines: mpsc::Receiver<LogMessage>, stop: Pin<Box<WaitForCancellationFutureOwned>> },
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body { kind: Kind::Full((!bytes.is_empty()).then_some(bytes)), guard: None, gone: None }
    }

    pub fn empty() -> Body {
        Body::full(Bytes::new())
    }

    pub fn proxied(inner: Incoming) -> Body {
        Body { kind: Kind::Proxied(inner), guard: None, gone: None }
    }

    /// Log lines as NDJSON until the channel ends or the gateway stops.
    pub fn logs(lines: mpsc::Receiver<LogMessage>, stop: WaitForCancellationFutureOwned) -> Body {
        Body { kind: Kind::Logs { lines, stop: Box::pin(stop) }, guard: None, gone: None }
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
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Proxied(inner) => match Pin::new(inner).poll_frame(cx) {
                // A replica seen gone (its node lost, say) sends no more:
                // the body ends cut short rather than waiting forever.
                Poll::Pending => {
                    let Some(lease) = this.guard.as_ref().and_then(|g| g.lease.as_ref()) else {
                        return Poll::Pending;
                    };
                    let gone = this.gone.get_or_insert_with(|| {
                        let endpoint = lease.shared();
                        Box::pin(async move { endpoint.gone().await })
                    });
                    match gone.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::other(
                            "the replica was lost before its response ended",
                        )))),
                        Poll::Pending => Poll::Pending,
                    }
                }
                ready => {
                    if let (Some(guard), Poll::Ready(Some(Ok(frame)))) = (&mut this.guard, &ready)
                        && let Some(data) = frame.data_ref()
                    {
                        guard.sent(data.len());
                    }
                    ready.map_err(io::Error::other)
                }
            },
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
