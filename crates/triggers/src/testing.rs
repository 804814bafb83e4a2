//! Test doubles: a queue in memory that keeps what it is given and
//! refuses a known id, as the real ones do (whose writes wait on threads
//! that tokio's paused time does not wait for).

use std::sync::Mutex;

use async_trait::async_trait;
use ferrofaas_queue::{Call, CallStatus, DeadLetter, Entry, Progress, Queue, QueueError, QueueStats};
use ferrofaas_types::FunctionRef;

#[derive(Default)]
pub struct Memory {
    pub calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl Queue for Memory {
    async fn enqueue(&self, call: Call) -> ferrofaas_queue::Result<()> {
        let mut calls = self.calls.lock().unwrap();
        if calls.iter().any(|c| c.id == call.id) {
            return Err(QueueError::Exists(call.id));
        }
        calls.push(call);
        Ok(())
    }
    fn ready_functions(&self) -> Vec<FunctionRef> {
        Vec::new()
    }
    async fn take(&self, _: &FunctionRef, _: u64) -> Option<Entry> {
        None
    }
    fn next_due(&self) -> Option<u64> {
        None
    }
    async fn changed(&self) {
        std::future::pending::<()>().await
    }
    async fn done(&self, _: &str, _: u32, _: Option<u16>, _: Option<String>) -> ferrofaas_queue::Result<()> {
        Ok(())
    }
    async fn retry(&self, _: &str, _: Progress) -> ferrofaas_queue::Result<()> {
        Ok(())
    }
    async fn dead_letter(&self, _: &str, _: DeadLetter) -> ferrofaas_queue::Result<()> {
        Ok(())
    }
    async fn status(&self, id: &str) -> ferrofaas_queue::Result<Option<CallStatus>> {
        let calls = self.calls.lock().unwrap();
        Ok(calls
            .iter()
            .find(|c| c.id == id)
            .map(|c| CallStatus::of(&Entry::new(c.clone()), "queued", None, None)))
    }
    async fn dead_letters(&self) -> ferrofaas_queue::Result<Vec<DeadLetter>> {
        Ok(Vec::new())
    }
    async fn replay(&self, _: &str) -> ferrofaas_queue::Result<()> {
        Ok(())
    }
    async fn delete_dead_letter(&self, _: &str) -> ferrofaas_queue::Result<()> {
        Ok(())
    }
    async fn stats(&self) -> QueueStats {
        QueueStats::default()
    }
}

impl Memory {
    pub fn ids(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|c| c.id.clone()).collect()
    }
}
