//! `http` mode, upgraded connections: when the function's server answers a
//! request that asked for an upgrade (a WebSocket) with `101 Switching
//! Protocols`, the client's connection and the server's are joined, byte
//! for byte, both ways.
//!
//! A tunnel is one request: it counts in flight (and against
//! `max_inflight`) until it closes, and lasts at most `exec_timeout` (the
//! request's deadline, as for any response). When the watchdog stops,
//! tunnels get `write_timeout` to end, as requests do.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::request::{Deadline, RequestGuard};

/// A switch the function agreed to: the client's half (handed over once
/// the 101 is written) and the function's (once it was read).
pub struct Switched {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
    pub deadline: Deadline,
}

#[derive(Default)]
pub struct Tunnels {
    tracker: TaskTracker,
    close: CancellationToken,
}

impl Tunnels {
    pub fn open(&self, switched: Switched, guard: RequestGuard) {
        let close = self.close.clone();
        self.tracker.spawn(async move {
            let _guard = guard;
            let (client, upstream) = match tokio::try_join!(switched.client, switched.upstream) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "an upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            let mut deadline = switched.deadline;
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match result {
                    Ok((sent, received)) => tracing::debug!(sent, received, "upgraded connection closed"),
                    Err(e) => tracing::debug!(error = %e, "upgraded connection broken"),
                },
                () = deadline.expired() => {
                    tracing::info!(timeout = ?deadline.limit(), "upgraded connection closed at exec_timeout");
                }
                () = close.cancelled() => tracing::debug!("upgraded connection closed: the watchdog stopped"),
            }
        });
    }

    /// Ends the open tunnels (after the grace the caller gave them).
    pub async fn close(&self) {
        self.tracker.close();
        self.close.cancel();
        self.tracker.wait().await;
    }

    /// Waits for the open tunnels to end by themselves.
    pub async fn closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
