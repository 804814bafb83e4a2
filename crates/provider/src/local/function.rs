//! One task per function reconciles its replicas with what is desired: the
//! number of replicas and the version of the spec. It is the only owner of
//! the replica list, and the only writer of the function's route.
//!
//! An update starts replicas of the new version and stops old ones only as
//! new ones become ready, so requests always find a ready replica.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Backend;
use super::replica::{self, Event, Generation, ReplicaHandle, Shared};
use crate::routes::{Endpoint, FunctionRoute};

enum Command<S> {
    Scale(u64),
    Update(Arc<Generation<S>>),
    Stop(oneshot::Sender<()>),
}

/// Desired and ready replicas, as last reconciled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: u64,
    pub ready: u64,
    /// The last replica failure, while fewer are ready than desired.
    pub problem: Option<String>,
}

pub struct FunctionHandle<B: Backend> {
    tx: mpsc::UnboundedSender<Command<B::Spec>>,
    counts: Arc<Mutex<Counts>>,
}

impl<B: Backend> FunctionHandle<B> {
    pub fn spawn(
        spec: Arc<Generation<B::Spec>>,
        desired: u64,
        route: Arc<FunctionRoute>,
        shared: Arc<Shared<B>>,
    ) -> FunctionHandle<B> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Mutex::new(Counts { desired, ready: 0, problem: None }));
        let supervisor = Supervisor {
            spec,
            desired,
            route,
            shared,
            slots: Vec::new(),
            next_id: 0,
            stopping: Vec::new(),
            problem: None,
            counts: Arc::clone(&counts),
            events_tx,
            events_rx,
        };
        tokio::spawn(supervisor.run(rx));
        FunctionHandle { tx, counts }
    }

    pub fn scale(&self, replicas: u64) {
        let _ = self.tx.send(Command::Scale(replicas));
    }

    pub fn update(&self, spec: Arc<Generation<B::Spec>>) {
        let _ = self.tx.send(Command::Update(spec));
    }

    /// Stops every replica and waits until they are gone.
    pub async fn stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Stop(ack)).is_ok() {
            let _ = done.await;
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Slot {
    handle: ReplicaHandle,
    endpoint: Option<Arc<Endpoint>>,
}

struct Supervisor<B: Backend> {
    spec: Arc<Generation<B::Spec>>,
    desired: u64,
    route: Arc<FunctionRoute>,
    shared: Arc<Shared<B>>,
    slots: Vec<Slot>,
    next_id: u64,
    stopping: Vec<JoinHandle<()>>,
    /// The last replica failure (see [`Counts::problem`]).
    problem: Option<String>,
    counts: Arc<Mutex<Counts>>,
    events_tx: mpsc::UnboundedSender<(u64, Event)>,
    events_rx: mpsc::UnboundedReceiver<(u64, Event)>,
}

impl<B: Backend> Supervisor<B> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command<B::Spec>>) {
        self.reconcile();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Scale(n)) => self.desired = n,
                    Some(Command::Update(spec)) => self.spec = spec,
                    Some(Command::Stop(ack)) => {
                        self.stop_all().await;
                        let _ = ack.send(());
                        return;
                    }
                    None => {
                        self.stop_all().await;
                        return;
                    }
                },
                Some((id, event)) = self.events_rx.recv() => {
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.handle.id == id) {
                        match event {
                            Event::Ready(endpoint) => slot.endpoint = Some(endpoint),
                            Event::Down => slot.endpoint = None,
                            Event::Failed(why) => {
                                slot.endpoint = None;
                                self.problem = Some(why);
                            }
                        }
                    }
                    // All there: the last failure is history.
                    let ready = self.slots.iter().filter(|s| s.endpoint.is_some()).count() as u64;
                    if ready >= self.desired {
                        self.problem = None;
                    }
                }
            }
            self.reconcile();
        }
    }

    fn reconcile(&mut self) {
        let generation = self.spec.generation;
        let desired = usize::try_from(self.desired).unwrap_or(usize::MAX);

        // Replicas of the current version: as many as desired.
        let current = self.slots.iter().filter(|s| s.handle.generation == generation).count();
        for _ in current..desired {
            let id = self.next_id;
            self.next_id += 1;
            let handle =
                replica::start(id, Arc::clone(&self.spec), Arc::clone(&self.shared), self.events_tx.clone());
            self.slots.push(Slot { handle, endpoint: None });
        }
        if current > desired {
            // Not-ready ones first, then the newest.
            let mut ids: Vec<(bool, u64)> = self
                .slots
                .iter()
                .filter(|s| s.handle.generation == generation)
                .map(|s| (s.endpoint.is_some(), u64::MAX - s.handle.id))
                .collect();
            ids.sort();
            for (_, rev) in ids.into_iter().take(current - desired) {
                self.stop_slot(u64::MAX - rev);
            }
        }

        // Older versions: keep only as many as the new version still lacks
        // ready replicas, ready ones first.
        let ready_current =
            self.slots.iter().filter(|s| s.handle.generation == generation && s.endpoint.is_some()).count();
        let keep_old = desired.saturating_sub(ready_current);
        let mut old: Vec<(bool, u64)> = self
            .slots
            .iter()
            .filter(|s| s.handle.generation != generation)
            .map(|s| (s.endpoint.is_none(), s.handle.id))
            .collect();
        old.sort();
        for (_, id) in old.into_iter().skip(keep_old) {
            self.stop_slot(id);
        }

        self.publish();
        self.stopping.retain(|t| !t.is_finished());
    }

    fn stop_slot(&mut self, id: u64) {
        if let Some(i) = self.slots.iter().position(|s| s.handle.id == id) {
            let slot = self.slots.swap_remove(i);
            // Out of the route first, so no new request reaches it while it drains.
            self.publish();
            self.stopping.push(slot.handle.stop());
        }
    }

    fn publish(&self) {
        let endpoints: Vec<Arc<Endpoint>> = self.slots.iter().filter_map(|s| s.endpoint.clone()).collect();
        let ready = endpoints.len() as u64;
        self.route.set_endpoints(endpoints);
        self.route.set_desired(self.desired);
        let problem = self.problem.clone().filter(|_| ready < self.desired);
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) =
            Counts { desired: self.desired, ready, problem };
    }

    async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.slots.iter().map(|s| s.handle.id).collect();
        for id in ids {
            self.stop_slot(id);
        }
        for task in self.stopping.drain(..) {
            let _ = task.await;
        }
        self.publish();
    }
}
