//! Upgraded connections: a WebSocket (or any protocol a function switches
//! to with `101 Switching Protocols`) to `/function/<name>`, carried byte
//! for byte between the client and the replica once both sides switched.
//!
//! A tunnel is one invocation: it holds its replica's lease and counts in
//! flight (for the metrics, the least-loaded pick and the autoscaler) until
//! either side closes it. How long it may last is the function's
//! `exec_timeout`, which its watchdog enforces; the gateway ends tunnels
//! only when it stops, after its drain timeout.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::invocation::InvocationGuard;

/// Both halves of a switch that has been agreed: the client's connection
/// and the replica's, each handed over once its `101` has been written
/// (client) or read (replica).
pub struct Switched {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
}

/// The open tunnels, so that a stopping gateway can wait for them and then
/// close them.
#[derive(Default)]
pub struct Tunnels {
    tracker: TaskTracker,
    close: CancellationToken,
}

impl Tunnels {
    /// Carries bytes both ways until both sides have closed, either side
    /// fails, or [`Tunnels::close`]. `guard` ends the invocation then.
    pub fn open(&self, switched: Switched, guard: InvocationGuard) {
        let close = self.close.clone();
        self.tracker.spawn(async move {
            // The whole guard moves in (a field alone would be captured
            // otherwise, and the guard dropped here and now).
            let mut guard = guard;
            let (client, upstream) = match tokio::try_join!(switched.client, switched.upstream) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(error = %e, "an upgrade did not complete");
                    guard.code = 502;
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match result {
                    Ok((sent, received)) => tracing::debug!(sent, received, "tunnel closed"),
                    Err(e) => tracing::debug!(error = %e, "tunnel broken"),
                },
                () = close.cancelled() => tracing::debug!("tunnel closed: the gateway is stopping"),
            }
        });
    }

    /// Waits up to `grace` for the open tunnels to end by themselves, then
    /// ends the rest.
    pub async fn close(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::info!(open = self.tracker.len(), "closing the upgraded connections still open");
        }
        self.close.cancel();
        self.tracker.wait().await;
    }
}
