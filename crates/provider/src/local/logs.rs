//! Log lines of every replica, kept per function in a ring (the newest
//! [`KEEP`] lines) and broadcast to followers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ferrofaas_types::{FunctionRef, LogMessage, LogRequest};
use tokio::sync::{broadcast, mpsc};

/// Lines kept per function.
pub const KEEP: usize = 5000;

struct Line {
    at: SystemTime,
    message: LogMessage,
}

pub struct FunctionLog {
    function: FunctionRef,
    ring: Mutex<(u64, VecDeque<Line>)>,
    tx: broadcast::Sender<Arc<(u64, SystemTime, LogMessage)>>,
}

impl FunctionLog {
    /// Records one line printed by `instance`.
    pub fn push(&self, instance: &str, text: &str) {
        let at = SystemTime::now();
        let message = LogMessage {
            name: self.function.name.clone(),
            namespace: self.function.namespace.clone(),
            instance: instance.to_owned(),
            timestamp: ferrofaas_types::time::format(at, true),
            text: text.to_owned(),
        };
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = ring.0;
        ring.0 += 1;
        if ring.1.len() == KEEP {
            ring.1.pop_front();
        }
        ring.1.push_back(Line { at, message: message.clone() });
        // Sent under the lock so followers see lines in order.
        let _ = self.tx.send(Arc::new((seq, at, message)));
    }
}

#[derive(Default)]
pub struct LogHub {
    functions: Mutex<HashMap<FunctionRef, Arc<FunctionLog>>>,
}

impl LogHub {
    pub fn function(&self, function: &FunctionRef) -> Arc<FunctionLog> {
        let mut map = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(function.clone()).or_insert_with(|| {
            Arc::new(FunctionLog {
                function: function.clone(),
                ring: Mutex::new((0, VecDeque::new())),
                tx: broadcast::channel(1024).0,
            })
        }))
    }

    /// Forgets a function's lines; its followers' streams end.
    pub fn remove(&self, function: &FunctionRef) {
        self.functions.lock().unwrap_or_else(|e| e.into_inner()).remove(function);
    }

    /// The lines `request` asks for, then (with `follow`) new ones as they come.
    pub fn read(&self, request: &LogRequest, log: Arc<FunctionLog>) -> mpsc::Receiver<LogMessage> {
        let (tx, rx) = mpsc::channel(256);
        let matches = {
            let instance = request.instance.clone();
            let since = request.since;
            move |at: SystemTime, m: &LogMessage| {
                instance.as_deref().is_none_or(|i| i == m.instance) && since.is_none_or(|s| at >= s)
            }
        };
        // Subscribe before taking the snapshot, so that no line falls between.
        let mut live = request.follow.then(|| log.tx.subscribe());
        let (snapshot, last_seq) = {
            let ring = log.ring.lock().unwrap_or_else(|e| e.into_inner());
            let mut lines: Vec<LogMessage> =
                ring.1.iter().filter(|l| matches(l.at, &l.message)).map(|l| l.message.clone()).collect();
            if let Some(tail) = request.tail {
                let skip = lines.len().saturating_sub(tail);
                lines.drain(..skip);
            }
            (lines, ring.0)
        };
        tokio::spawn(async move {
            for m in snapshot {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            let Some(live) = live.as_mut() else { return };
            // Drop our handle on the log: the stream ends when the function
            // is removed (its sender is dropped), not kept alive by us.
            drop(log);
            loop {
                match live.recv().await {
                    Ok(line) => {
                        let (seq, at, m) = &*line;
                        if *seq >= last_seq && matches(*at, m) && tx.send(m.clone()).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a log follower fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(tail: Option<usize>, follow: bool) -> LogRequest {
        LogRequest { function: FunctionRef::parse("f").unwrap(), instance: None, since: None, tail, follow }
    }

    #[tokio::test]
    async fn tail_then_follow() {
        let hub = LogHub::default();
        let f = FunctionRef::parse("f").unwrap();
        let log = hub.function(&f);
        for i in 0..5 {
            log.push("f-1", &format!("line {i}"));
        }
        let mut rx = hub.read(&req(Some(2), true), hub.function(&f));
        assert_eq!(rx.recv().await.unwrap().text, "line 3");
        assert_eq!(rx.recv().await.unwrap().text, "line 4");
        log.push("f-2", "live");
        let m = rx.recv().await.unwrap();
        assert_eq!((m.text.as_str(), m.instance.as_str()), ("live", "f-2"));
        assert!(m.timestamp.ends_with('Z'));
        drop(log);
        hub.remove(&f);
        assert!(rx.recv().await.is_none(), "removal ends the stream");
    }

    #[tokio::test]
    async fn without_follow_the_stream_ends() {
        let hub = LogHub::default();
        let f = FunctionRef::parse("f").unwrap();
        hub.function(&f).push("f-1", "only");
        let mut rx = hub.read(&req(None, false), hub.function(&f));
        assert_eq!(rx.recv().await.unwrap().text, "only");
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn keeps_the_newest_lines() {
        let hub = LogHub::default();
        let log = hub.function(&FunctionRef::parse("f").unwrap());
        for i in 0..KEEP + 10 {
            log.push("i", &i.to_string());
        }
        let ring = log.ring.lock().unwrap();
        assert_eq!(ring.1.len(), KEEP);
        assert_eq!(ring.1.front().unwrap().message.text, "10");
    }
}
