//! Quotas, enforced: each namespace with a quota has its counts of the
//! current period (invocations started, MiB-microseconds used) and its
//! invocations in flight, in memory. An invocation is admitted (and
//! counted) before it is sent to a replica; its use is added when it ends.
//! The counts start from the usage store, so a restart does not reset a
//! namespace's period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrofaas_usage::quota::Quota;

/// Every namespace's quota and counts. Without quotas, admission is one
/// load of an empty table.
#[derive(Default)]
pub struct Quotas {
    table: ArcSwap<HashMap<String, Arc<Tenant>>>,
    write: Mutex<()>,
}

/// One namespace under a quota.
pub struct Tenant {
    pub quota: Quota,
    window: Mutex<Window>,
    /// Shared with the quota it replaced: calls admitted under that one
    /// end under this one.
    in_flight: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start_us: u64,
    end_us: u64,
    invocations: u64,
    mib_us: u64,
}

/// Why a call was refused, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub retry_after: Duration,
}

/// An admitted invocation: in flight until dropped, when its use (set by
/// [`Admission::used`]) is added to its namespace's period.
pub struct Admission {
    tenant: Arc<Tenant>,
    mib_us: u64,
}

impl Admission {
    pub fn used(&mut self, mib_us: u64) {
        self.mib_us = mib_us;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.tenant.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut w = self.tenant.window.lock().unwrap_or_else(|e| e.into_inner());
        w.mib_us = w.mib_us.saturating_add(self.mib_us);
    }
}

/// What a namespace's period counts so far (for the API and the UI).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaState {
    pub quota: Quota,
    pub period_start: String,
    pub period_end: String,
    pub invocations: u64,
    pub gb_seconds: f64,
    pub in_flight: u64,
}

impl Tenant {
    /// The window now, rolled over if its period ended.
    fn current(&self, now_us: u64) -> std::sync::MutexGuard<'_, Window> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now_us >= w.end_us {
            let (start_us, end_us) = self.quota.period.window(now_us);
            *w = Window { start_us, end_us, invocations: 0, mib_us: 0 };
        }
        w
    }

    /// Refused if the period's limits are reached (nothing counted).
    fn check(&self, namespace: &str, w: &Window, now_us: u64) -> Result<(), Refusal> {
        let period = || {
            let until = Duration::from_micros(w.end_us.saturating_sub(now_us)).max(Duration::from_secs(1));
            Duration::from_secs(until.as_secs_f64().ceil() as u64)
        };
        if let Some(limit) = self.quota.invocations
            && w.invocations >= limit
        {
            return Err(Refusal {
                message: format!(
                    "namespace {namespace} has used its quota of {limit} invocations per {}",
                    self.quota.period.as_str()
                ),
                retry_after: period(),
            });
        }
        if let (Some(limit), Some(gb)) = (self.quota.mib_us(), self.quota.gb_seconds)
            && w.mib_us >= limit
        {
            return Err(Refusal {
                message: format!(
                    "namespace {namespace} has used its quota of {gb} GB-seconds per {}",
                    self.quota.period.as_str()
                ),
                retry_after: period(),
            });
        }
        if let Some(limit) = self.quota.concurrent
            && self.in_flight.load(Ordering::Relaxed) >= limit
        {
            return Err(Refusal {
                message: format!("namespace {namespace} has {limit} invocations in flight, its quota"),
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(())
    }
}

impl Quotas {
    /// Admits an invocation in `namespace`, counting it; `Ok(None)` if the
    /// namespace has no quota.
    pub fn admit(&self, namespace: &str) -> Result<Option<Admission>, Refusal> {
        let table = self.table.load();
        if table.is_empty() {
            return Ok(None);
        }
        let Some(tenant) = table.get(namespace) else { return Ok(None) };
        let now = ferrofaas_usage::now_us();
        let mut w = tenant.current(now);
        tenant.check(namespace, &w, now)?;
        w.invocations += 1;
        tenant.in_flight.fetch_add(1, Ordering::Relaxed);
        drop(w);
        Ok(Some(Admission { tenant: Arc::clone(tenant), mib_us: 0 }))
    }

    /// Whether an invocation in `namespace` would be admitted now (nothing
    /// counted): an asynchronous call is refused at the door with it.
    pub fn check(&self, namespace: &str) -> Result<(), Refusal> {
        let table = self.table.load();
        let Some(tenant) = table.get(namespace) else { return Ok(()) };
        let now = ferrofaas_usage::now_us();
        let w = tenant.current(now);
        tenant.check(namespace, &w, now)
    }

    /// Sets (or removes) `namespace`'s quota, its period's counts so far
    /// being `used` (invocations, MiB-µs) from the usage store.
    pub fn set(&self, namespace: &str, quota: Option<Quota>, used: (u64, u64)) {
        let _write = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut table: HashMap<String, Arc<Tenant>> = (**self.table.load()).clone();
        match quota {
            None => {
                table.remove(namespace);
            }
            Some(quota) => {
                let (start_us, end_us) = quota.period.window(ferrofaas_usage::now_us());
                let in_flight = table.get(namespace).map_or_else(Arc::default, |t| Arc::clone(&t.in_flight));
                let window = Window { start_us, end_us, invocations: used.0, mib_us: used.1 };
                let tenant = Tenant { quota, window: Mutex::new(window), in_flight };
                table.insert(namespace.to_owned(), Arc::new(tenant));
            }
        }
        self.table.store(Arc::new(table));
    }

    /// `namespace`'s quota as the store has it, and what its period has
    /// used there (ended calls through every gateway): a new or changed
    /// quota is set; the counts of one in force are raised to the store's
    /// (with the calls this gateway has in flight), never lowered, since
    /// the store has this gateway's latest calls a moment later.
    pub fn refresh(&self, namespace: &str, quota: Quota, used: (u64, u64)) {
        let table = self.table.load();
        let Some(tenant) = table.get(namespace).filter(|t| t.quota == quota) else {
            drop(table);
            return self.set(namespace, Some(quota), used);
        };
        let now = ferrofaas_usage::now_us();
        let mut w = tenant.current(now);
        let in_flight = tenant.in_flight.load(Ordering::Relaxed);
        w.invocations = w.invocations.max(used.0.saturating_add(in_flight));
        w.mib_us = w.mib_us.max(used.1);
    }

    /// Every namespace's quota and what its period has used.
    pub fn states(&self) -> Vec<(String, QuotaState)> {
        let now = ferrofaas_usage::now_us();
        let mut out: Vec<_> = self
            .table
            .load()
            .iter()
            .map(|(ns, t)| {
                let w = *t.current(now);
                let state = QuotaState {
                    quota: t.quota.clone(),
                    period_start: ferrofaas_usage::report::rfc3339(w.start_us),
                    period_end: ferrofaas_usage::report::rfc3339(w.end_us),
                    invocations: w.invocations,
                    gb_seconds: ferrofaas_usage::gb_seconds(w.mib_us),
                    in_flight: t.in_flight.load(Ordering::Relaxed),
                };
                (ns.clone(), state)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofaas_usage::quota::Period;

    fn quota(invocations: Option<u64>, gb: Option<f64>, concurrent: Option<u64>) -> Quota {
        Quota { period: Period::Day, invocations, gb_seconds: gb, concurrent }
    }

    #[test]
    fn a_namespace_stops_at_its_limits() {
        let q = Quotas::default();
        assert!(q.admit("a").unwrap().is_none(), "no quota: admitted, not counted");
        q.set("a", Some(quota(Some(3), None, None)), (1, 0));
        let one = q.admit("a").unwrap();
        let two = q.admit("a").unwrap();
        assert!(one.is_some() && two.is_some());
        let refused = q.admit("a").err().unwrap();
        assert!(refused.message.contains("3 invocations per day"), "{refused:?}");
        assert!(refused.retry_after >= Duration::from_secs(1));
        assert!(q.check("a").is_err());
        assert!(q.admit("b").unwrap().is_none(), "other namespaces go on");

        q.set("g", Some(quota(None, Some(1.0), None)), (0, 0));
        let mut call = q.admit("g").unwrap().unwrap();
        call.used(1024 * 1_000_000);
        assert!(q.admit("g").is_ok(), "in flight: not counted yet");
        drop(call);
        assert!(q.admit("g").err().unwrap().message.contains("1 GB-seconds"));

        q.set("c", Some(quota(None, None, Some(1))), (0, 0));
        let held = q.admit("c").unwrap();
        assert!(q.admit("c").err().unwrap().message.contains("in flight"));
        drop(held);
        assert!(q.admit("c").unwrap().is_some());
        // A call admitted under a quota that is then replaced ends under
        // the new one.
        let held = q.admit("c").unwrap();
        q.set("c", Some(quota(None, None, Some(1))), (0, 0));
        assert!(q.admit("c").is_err(), "still one in flight");
        drop(held);
        assert!(q.admit("c").unwrap().is_some(), "and none once it ended");
        q.set("c", None, (0, 0));
        // What the store has of every gateway's calls raises the counts,
        // never lowers them; a changed quota is set anew.
        q.set("r", Some(quota(Some(10), None, None)), (2, 0));
        let held = q.admit("r").unwrap();
        q.refresh("r", quota(Some(10), None, None), (5, 7));
        let state = |q: &Quotas, ns: &str| q.states().into_iter().find(|(n, _)| n == ns).unwrap().1;
        assert_eq!(state(&q, "r").invocations, 6, "5 ended (any gateway) and 1 in flight here");
        q.refresh("r", quota(Some(10), None, None), (1, 0));
        assert_eq!(state(&q, "r").invocations, 6);
        q.refresh("r", quota(Some(20), None, None), (9, 0));
        assert_eq!(state(&q, "r").quota.invocations, Some(20));
        assert_eq!(state(&q, "r").invocations, 9);
        assert_eq!(state(&q, "r").in_flight, 1, "in flight across the change");
        drop(held);
        q.set("r", None, (0, 0));
        let states = q.states();
        assert_eq!(states.iter().map(|(ns, _)| ns.as_str()).collect::<Vec<_>>(), ["a", "g"]);
        assert_eq!(states[0].1.invocations, 3);
    }
}
