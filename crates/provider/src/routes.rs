//! The request path's shared state: for every function, its ready replicas
//! (written by the provider when replicas become ready or go away, read by
//! the gateway on every invocation) and its invocation statistics (written
//! by the gateway, read by metrics, listings and the autoscaler).
//!
//! Reads take no lock: the tables are swapped whole (`ArcSwap`) when they
//! change, which is rare next to invocations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrofaas_types::FunctionRef;
use ferrofaas_types::Policies;
use ferrofaas_types::prom::Histogram;
use tokio::sync::Notify;

type Table = HashMap<String, HashMap<String, Arc<FunctionRoute>>>;

/// Every deployed function's route, by namespace and name.
#[derive(Default)]
pub struct Routes {
    table: ArcSwap<Table>,
    write: Mutex<()>,
}

impl Routes {
    /// The route of a deployed function (whether or not it has replicas).
    pub fn get(&self, name: &str, namespace: &str) -> Option<Arc<FunctionRoute>> {
        self.table.load().get(namespace)?.get(name).cloned()
    }

    /// The route of `function`, created if it has none.
    pub fn ensure(&self, function: &FunctionRef) -> Arc<FunctionRoute> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = self.get(&function.name, &function.namespace) {
            return route;
        }
        let route = Arc::new(FunctionRoute::new(function.clone()));
        let mut table: Table = (**self.table.load()).clone();
        table
            .entry(function.namespace.clone())
            .or_default()
            .insert(function.name.clone(), Arc::clone(&route));
        self.table.store(Arc::new(table));
        route
    }

    /// Removes a function's route; requests waiting for a replica are woken
    /// and see it gone.
    pub fn remove(&self, function: &FunctionRef) -> Option<Arc<FunctionRoute>> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut table: Table = (**self.table.load()).clone();
        let route = table.get_mut(&function.namespace)?.remove(&function.name)?;
        if table.get(&function.namespace).is_some_and(HashMap::is_empty) {
            table.remove(&function.namespace);
        }
        self.table.store(Arc::new(table));
        route.removed.store(true, Ordering::Release);
        route.set_endpoints(Vec::new());
        Some(route)
    }

    /// All routes (for metrics).
    pub fn all(&self) -> Vec<Arc<FunctionRoute>> {
        let table = self.table.load();
        let mut all: Vec<_> = table.values().flat_map(|m| m.values().cloned()).collect();
        all.sort_by(|a, b| a.function.cmp(&b.function));
        all
    }
}

/// What a meter's reading is: a future of it, if it can be read.
pub type Reading<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>> + Send + 'a>>;

/// Reads what a replica has used: its CPU time (for the `cpu` scaling type
/// and for usage) and its memory (for usage).
pub trait ReplicaMeter: Send + Sync {
    /// Seconds of CPU used since the replica started, if it can be read.
    fn cpu_seconds(&self) -> Reading<'_, f64>;

    /// Its CPU time and the most memory it used since the last `read`
    /// (where the provider can tell only what it uses now: that). One
    /// reader calls this (the usage sampler): a read starts the next
    /// interval's peak.
    fn read(&self) -> Reading<'_, ReplicaReading> {
        Box::pin(async move {
            Some(ReplicaReading { cpu_seconds: self.cpu_seconds().await?, memory_bytes: None })
        })
    }
}

/// What [`ReplicaMeter::read`] gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaReading {
    pub cpu_seconds: f64,
    pub memory_bytes: Option<u64>,
}

/// One replica that accepts invocations.
pub struct Endpoint {
    /// The replica's instance name (as in logs).
    pub instance: String,
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once rather than per request.
    pub authority: http::uri::Authority,
    in_flight: AtomicUsize,
    /// Its CPU use, where the provider can read it.
    pub meter: Option<Arc<dyn ReplicaMeter>>,
    /// Set when the provider has seen the replica exit: requests in flight
    /// to it end at once (a dead container's address may never answer).
    gone: AtomicBool,
    gone_notify: Notify,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("instance", &self.instance).field("addr", &self.addr).finish()
    }
}

impl Endpoint {
    pub fn new(instance: String, addr: SocketAddr) -> Endpoint {
        let authority = http::uri::Authority::try_from(addr.to_string())
            .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1"));
        Endpoint {
            instance,
            addr,
            authority,
            in_flight: AtomicUsize::new(0),
            meter: None,
            gone: AtomicBool::new(false),
            gone_notify: Notify::new(),
        }
    }

    /// The replica has exited: it is picked no more, and what waits for it
    /// ([`Endpoint::gone`]) stops waiting.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.gone_notify.notify_waiters();
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Resolves once the replica has exited.
    pub async fn gone(&self) {
        let notified = self.gone_notify.notified();
        if self.is_gone() {
            return;
        }
        notified.await;
    }

    pub fn with_meter(mut self, meter: Option<Arc<dyn ReplicaMeter>>) -> Endpoint {
        self.meter = meter;
        self
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A replica chosen for one invocation; counts it in flight until dropped.
#[derive(Debug)]
pub struct Lease {
    endpoint: Arc<Endpoint>,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>) -> Lease {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Lease { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The replica, to keep beyond the lease's borrow.
    pub fn shared(&self) -> Arc<Endpoint> {
        Arc::clone(&self.endpoint)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A function's replicas and statistics.
pub struct FunctionRoute {
    pub function: FunctionRef,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    cursor: AtomicUsize,
    changed: Notify,
    removed: AtomicBool,
    desired: AtomicU64,
    /// Its deployment's policies, set by the provider whenever it loads one.
    policies: ArcSwap<Policies>,
    /// Of them, what every invocation reads: whether it is private, and its
    /// memory limit in bytes (0: none).
    private: AtomicBool,
    memory_limit: AtomicU64,
    pub stats: InvocationStats,
}

impl FunctionRoute {
    fn new(function: FunctionRef) -> FunctionRoute {
        FunctionRoute {
            function,
            endpoints: ArcSwap::default(),
            desired: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
            changed: Notify::new(),
            removed: AtomicBool::new(false),
            policies: ArcSwap::default(),
            private: AtomicBool::new(false),
            memory_limit: AtomicU64::new(0),
            stats: InvocationStats::default(),
        }
    }

    /// How the function scales and retries, as its deployment says (the
    /// defaults until the provider has loaded it).
    pub fn policies(&self) -> Arc<Policies> {
        self.policies.load_full()
    }

    /// Called by the provider with each deployment it loads.
    pub fn set_policies(&self, policies: Policies) {
        self.private.store(policies.private, Ordering::Relaxed);
        self.memory_limit.store(policies.memory_limit.unwrap_or(0), Ordering::Relaxed);
        if **self.policies.load() != policies {
            self.policies.store(Arc::new(policies));
        }
    }

    /// Whether `/function/` needs a token (its policies' `private`, read
    /// without touching the shared policies).
    pub fn is_private(&self) -> bool {
        self.private.load(Ordering::Relaxed)
    }

    /// Its memory limit in bytes, if it has one.
    pub fn memory_limit(&self) -> Option<u64> {
        Some(self.memory_limit.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    /// The ready replica with the fewest invocations in flight (ties go
    /// round-robin), or `None` if no replica is ready.
    pub fn pick(&self) -> Option<Lease> {
        let endpoints = self.endpoints.load();
        let n = endpoints.len();
        // A replica seen exiting is skipped even before its route is
        // updated: a request not sent yet goes to another.
        match n {
            0 => None,
            1 => (!endpoints[0].is_gone()).then(|| Lease::new(Arc::clone(&endpoints[0]))),
            _ => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
                let mut best: Option<&Arc<Endpoint>> = None;
                let mut best_load = usize::MAX;
                for i in 0..n {
                    let candidate = &endpoints[(start + i) % n];
                    let load = candidate.in_flight();
                    if load < best_load && !candidate.is_gone() {
                        best = Some(candidate);
                        best_load = load;
                    }
                }
                best.map(|b| Lease::new(Arc::clone(b)))
            }
        }
    }

    /// Waits up to `timeout` for a ready replica. `None` if none became
    /// ready, or the function was removed meanwhile.
    pub async fn wait_pick(&self, timeout: Duration) -> Option<Lease> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_removed() {
                return None;
            }
            if let Some(lease) = self.pick() {
                return Some(lease);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Replaces the set of ready replicas.
    pub fn set_endpoints(&self, endpoints: Vec<Arc<Endpoint>>) {
        self.endpoints.store(Arc::new(endpoints));
        self.changed.notify_waiters();
    }

    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.load().to_vec()
    }

    /// The number of replicas the provider is keeping.
    pub fn desired(&self) -> u64 {
        self.desired.load(Ordering::Relaxed)
    }

    pub fn set_desired(&self, replicas: u64) {
        self.desired.store(replicas, Ordering::Relaxed);
    }

    pub fn ready_count(&self) -> usize {
        self.endpoints.load().len()
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

/// Invocation counts and durations of one function, by status code; how
/// long invocations waited for a replica, and how often the function was
/// started from zero replicas.
#[derive(Default)]
pub struct InvocationStats {
    started: AtomicU64,
    in_flight: AtomicI64,
    by_code: Mutex<Vec<(u16, Histogram)>>,
    waits: Mutex<Histogram>,
    cold_starts: AtomicU64,
    /// Memory times duration of metered invocations (MiB-microseconds).
    mib_us: AtomicU64,
}

impl InvocationStats {
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self, code: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut by_code = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        match by_code.iter_mut().find(|(c, _)| *c == code) {
            Some((_, h)) => h.observe(elapsed),
            None => {
                let mut h = Histogram::default();
                h.observe(elapsed);
                by_code.push((code, h));
            }
        }
    }

    /// An invocation waited `waited` for a replica to become ready.
    pub fn waited(&self, waited: Duration) {
        self.waits.lock().unwrap_or_else(|e| e.into_inner()).observe(waited);
    }

    /// A metered invocation used `mib_us` (memory times duration).
    pub fn metered(&self, mib_us: u64) {
        self.mib_us.fetch_add(mib_us, Ordering::Relaxed);
    }

    /// Memory times duration of the metered invocations so far
    /// (MiB-microseconds).
    pub fn mib_us(&self) -> u64 {
        self.mib_us.load(Ordering::Relaxed)
    }

    /// The function was started from zero replicas.
    pub fn cold_start(&self) {
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn waits(&self) -> Histogram {
        *self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cold_starts(&self) -> u64 {
        self.cold_starts.load(Ordering::Relaxed)
    }

    pub fn started_total(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed).max(0)
    }

    /// Finished invocations that answered `code`.
    pub fn count_of(&self, code: u16) -> u64 {
        let by_code = self.by_code.lock().unwrap_or_else(|e| e.into_inner());
        by_code.iter().find(|(c, _)| *c == code).map_or(0, |(_, h)| h.count)
    }

    /// Finished invocations, all codes.
    pub fn invocation_count(&self) -> u64 {
        self.by_code.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, h)| h.count).sum()
    }

    /// Per status code, sorted by code.
    pub fn snapshot(&self) -> Vec<(u16, Histogram)> {
        let mut v = self.by_code.lock().unwrap_or_else(|e| e.into_inner()).clone();
        v.sort_by_key(|(c, _)| *c);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> FunctionRef {
        FunctionRef::parse(name).unwrap()
    }

    #[test]
    fn a_route_carries_its_deployments_policies() {
        let routes = Routes::default();
        let r = routes.ensure(&f("a"));
        assert_eq!(*r.policies(), Policies::default(), "the defaults until a deployment is loaded");
        let mut spec: ferrofaas_types::FunctionDeployment =
            serde_json::from_str(r#"{"service":"a","image":"x","labels":{"com.openfaas.scale.max":"3"}}"#)
                .unwrap();
        let policies = spec.validate().unwrap();
        r.set_policies(policies);
        assert_eq!(routes.get("a", "openfaas-fn").unwrap().policies().scaling.max, 3);
    }

    fn ep(port: u16) -> Arc<Endpoint> {
        Arc::new(Endpoint::new(format!("i{port}"), SocketAddr::from(([127, 0, 0, 1], port))))
    }

    #[test]
    fn routes_by_name_and_namespace() {
        let routes = Routes::default();
        let a = routes.ensure(&f("a"));
        assert!(Arc::ptr_eq(&a, &routes.ensure(&f("a"))));
        routes.ensure(&f("a.team"));
        assert!(routes.get("a", "openfaas-fn").is_some());
        assert!(routes.get("a", "team").is_some());
        assert!(routes.get("b", "openfaas-fn").is_none());
        assert_eq!(routes.all().len(), 2);
        routes.remove(&f("a"));
        assert!(routes.get("a", "openfaas-fn").is_none());
        assert!(a.is_removed());
    }

    #[test]
    fn picks_the_least_loaded_replica() {
        let routes = Routes::default();
        let r = routes.ensure(&f("a"));
        assert!(r.pick().is_none());
        r.set_endpoints(vec![ep(1), ep(2), ep(3)]);
        let l1 = r.pick().unwrap();
        let l2 = r.pick().unwrap();
        let l3 = r.pick().unwrap();
        let mut ports = vec![l1.endpoint().addr.port(), l2.endpoint().addr.port(), l3.endpoint().addr.port()];
        ports.sort();
        assert_eq!(ports, vec![1, 2, 3], "each busy replica gets one before any gets two");
        drop(l2);
        let freed = r.pick().unwrap();
        assert_eq!(freed.endpoint().in_flight(), 1);
        drop((l1, l3, freed));
        assert!(r.endpoints().iter().all(|e| e.in_flight() == 0));
    }

    #[tokio::test]
    async fn a_replica_seen_gone_is_skipped_and_its_waiters_end() {
        let routes = Routes::default();
        let r = routes.ensure(&f("a"));
        let (a, b) = (ep(1), ep(2));
        r.set_endpoints(vec![Arc::clone(&a), Arc::clone(&b)]);
        let waiting = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.gone().await })
        };
        a.mark_gone();
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        for _ in 0..4 {
            assert_eq!(r.pick().unwrap().endpoint().addr.port(), 2, "not sent to the one that is gone");
        }
        b.mark_gone();
        assert!(r.pick().is_none());
        a.gone().await;
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_replica() {
        let routes = Arc::new(Routes::default());
        let r = routes.ensure(&f("a"));
        assert!(r.wait_pick(Duration::from_secs(1)).await.is_none(), "times out");
        let r2 = Arc::clone(&r);
        let waiter = tokio::spawn(async move { r2.wait_pick(Duration::from_secs(10)).await.is_some() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.set_endpoints(vec![ep(9)]);
        assert!(waiter.await.unwrap());
        let r3 = Arc::clone(&r);
        r.set_endpoints(vec![]);
        let waiter = tokio::spawn(async move { r3.wait_pick(Duration::from_secs(10)).await.is_none() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        routes.remove(&f("a"));
        assert!(waiter.await.unwrap(), "removal ends the wait");
    }

    #[test]
    fn stats_by_code() {
        let s = InvocationStats::default();
        s.started();
        s.started();
        assert_eq!(s.in_flight(), 2);
        s.finished(200, Duration::from_millis(2));
        s.finished(500, Duration::from_millis(2));
        assert_eq!(s.invocation_count(), 2);
        assert_eq!(s.started_total(), 2);
        assert_eq!(s.snapshot().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![200, 500]);
    }
}
