//! The fork modes: one function process per request.
//!
//! - `streaming`: the request body is copied to STDIN as it arrives and STDOUT
//!   is sent back as it is written. The status is decided by the first bytes:
//!   output means 200; no output and a failed exit means 500.
//! - `serializing`: the whole body is read, written to STDIN, and the whole
//!   output is sent back once the process has exited.

use bytes::BytesMut;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;

use crate::body::{Body, ChildStream};
use crate::process::{Running, StderrSink, spawn_for_request};
use crate::reply::{error_response, read_body};
use crate::request::Deadline;

pub struct Forker {
    pub argv: Vec<String>,
    pub stderr: StderrSink,
    pub combine_output: bool,
    pub content_type: Option<HeaderValue>,
    pub read_timeout: std::time::Duration,
}

impl Forker {
    fn spawn(&self, parts: &Parts) -> Result<Running, Response<Body>> {
        spawn_for_request(&self.argv, parts, &self.stderr, self.combine_output).map_err(|e| {
            tracing::error!(fprocess = %self.argv[0], error = %e, "could not start the function process");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("could not start the function process {:?}: {e}", self.argv[0]),
            )
        })
    }

    /// The response Content-Type: `content_type` if set, else the request's.
    fn content_type(&self, parts: &Parts) -> Option<HeaderValue> {
        self.content_type.clone().or_else(|| parts.headers.get(CONTENT_TYPE).cloned())
    }

    pub async fn streaming(&self, req: Request<Incoming>, mut deadline: Deadline) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let mut run = match self.spawn(&parts) {
            Ok(run) => run,
            Err(resp) => return resp,
        };
        if let Some(stdin) = run.stdin.take() {
            tokio::spawn(feed_stdin(body, stdin));
        }

        let mut first = BytesMut::with_capacity(16 * 1024);
        let read = tokio::select! {
            read = std::future::poll_fn(|cx| run.poll_read_output(cx, &mut first)) => read,
            () = deadline.expired() => return timed_out(run, deadline.limit()).await,
        };
        match read {
            None => {}
            Some(Ok(_)) => {
                let stream = ChildStream::new(first.freeze(), run, deadline);
                return ok_response(Body::child(stream), self.content_type(&parts));
            }
            Some(Err(e)) => return failed(&format!("could not read the function's output: {e}")),
        }
        // No output at all: the exit status decides.
        let status = tokio::select! {
            status = run.exit_status() => status,
            () = deadline.expired() => return timed_out(run, deadline.limit()).await,
        };
        match status {
            Ok(status) if status.success() => ok_response(Body::empty(), self.content_type(&parts)),
            Ok(status) => exited_with_error(status),
            Err(e) => failed(&format!("could not wait for the function process: {e}")),
        }
    }

    pub async fn serializing(&self, req: Request<Incoming>, deadline: Deadline) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let input = match read_body(body, self.read_timeout).await {
            Ok(input) => input,
            Err(resp) => return resp,
        };
        let mut run = match self.spawn(&parts) {
            Ok(run) => run,
            Err(resp) => return resp,
        };
        let result = {
            let stdin = run.stdin.take();
            let write = async move {
                if let Some(mut stdin) = stdin {
                    // The function may exit without reading all of it: not an error.
                    let _ = stdin.write_all(&input).await;
                }
            };
            let run = &mut run;
            let all = async move {
                let ((), (read, status)) = tokio::join!(write, run.read_all());
                (read, status)
            };
            match deadline.at() {
                Some(at) => tokio::time::timeout_at(at, all).await.ok(),
                None => Some(all.await),
            }
        };
        let Some((output, status)) = result else {
            return timed_out(run, deadline.limit()).await;
        };
        match (output, status) {
            (Ok(out), Ok(status)) if status.success() => {
                ok_response(Body::full(out), self.content_type(&parts))
            }
            (Ok(out), Ok(status)) if self.combine_output => {
                tracing::warn!(%status, "function exited with an error");
                let mut resp = Response::new(Body::full(out));
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }
            (_, Ok(status)) => exited_with_error(status),
            (Err(e), _) => failed(&format!("could not read the function's output: {e}")),
            (_, Err(e)) => failed(&format!("could not wait for the function process: {e}")),
        }
    }
}

/// Copies the request body to the function's STDIN, then closes it.
async fn feed_stdin(mut body: Incoming, mut stdin: ChildStdin) {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data()
                    && stdin.write_all(&data).await.is_err()
                {
                    // The function closed its STDIN: it wants no more.
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body ended early");
                return;
            }
        }
    }
}

fn ok_response(body: Body, content_type: Option<HeaderValue>) -> Response<Body> {
    let mut resp = Response::new(body);
    if let Some(ct) = content_type {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

async fn timed_out(mut run: Running, limit: std::time::Duration) -> Response<Body> {
    run.kill();
    // SIGKILL cannot be ignored: collect the exit status so no zombie is left.
    if let Err(e) = run.wait().await {
        tracing::warn!(error = %e, "could not reap the function process");
    }
    tracing::warn!(timeout = ?limit, "function exceeded exec_timeout and was killed");
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        &format!(
            "function did not finish within exec_timeout ({}) and was killed",
            ferrofaas_types::duration::format(limit)
        ),
    )
}

fn exited_with_error(status: std::process::ExitStatus) -> Response<Body> {
    use std::os::unix::process::ExitStatusExt;
    // Killed, or a shell saying its child was (128 + SIGKILL).
    let killed = status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL);
    if killed && let Some(cause) = crate::oom::cause() {
        tracing::error!(%status, "the function process was killed: {cause}");
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the function process was killed: {cause}"),
        );
    }
    tracing::warn!(%status, "function exited with an error");
    let what = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => status.to_string(),
    };
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("function failed ({what}); its stderr is in the function's logs"),
    )
}

fn failed(message: &str) -> Response<Body> {
    tracing::error!(%message);
    error_response(StatusCode::INTERNAL_SERVER_ERROR, message)
}
