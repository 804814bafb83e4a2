//! # ferrofaas-usage
//!
//! What every invocation used, kept so that it can be billed: a [`Record`]
//! per invocation (synchronous, asynchronous, triggered), handed to a
//! [`Meter`] as the invocation ends; [`Sums`] of them per function and
//! minute or hour; [`plan::Plan`]s that price them; and the report the
//! gateway's `/system/usage` answers with ([`report`]).
//!
//! The store is a backend ([`embedded`]: an append-only log, so a record is
//! in the kernel's hands before the response is finished, which keeps the
//! raw records and is folded into redb tables of per-minute and per-hour
//! sums). Amounts are integers (microseconds, MiB-microseconds), so that a
//! bill computed twice from the same records is the same to the last digit.

#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "jetstream")]
pub mod jetstream;
pub mod plan;
pub mod quota;
pub mod report;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use plan::{Bill, Plan};
pub use quota::Quota;

/// How an invocation came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `/function/`.
    Http,
    /// `/async-function/` (each attempt is an invocation).
    Async,
    /// A schedule.
    Cron,
    Nats,
    Mqtt,
    Rabbitmq,
    /// A connector this version does not know by name.
    Event,
}

impl Trigger {
    /// The trigger of events of `connector` (as the triggers name them).
    pub fn of_connector(connector: &str) -> Trigger {
        match connector {
            "cron" => Trigger::Cron,
            "nats" => Trigger::Nats,
            "mqtt" => Trigger::Mqtt,
            "rabbitmq" => Trigger::Rabbitmq,
            _ => Trigger::Event,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Async => "async",
            Trigger::Cron => "cron",
            Trigger::Nats => "nats",
            Trigger::Mqtt => "mqtt",
            Trigger::Rabbitmq => "rabbitmq",
            Trigger::Event => "event",
        }
    }
}

/// One invocation, as it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub function: String,
    pub namespace: String,
    pub call_id: String,
    pub trigger: Trigger,
    /// When it started, microseconds since the Unix epoch.
    pub start_us: u64,
    /// From its start (routing, waiting for a replica included) to the end
    /// of its response.
    pub duration_us: u64,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How long it waited for a replica to become ready (a cold start).
    pub wait_us: u64,
    /// The memory it is metered at (its limit, else the platform's default).
    pub memory_mib: u64,
}

impl Record {
    /// Memory times duration, the unit of GB-seconds.
    pub fn mib_us(&self) -> u64 {
        self.memory_mib.saturating_mul(self.duration_us)
    }
}

/// CPU time a function's replicas used over an interval, and the most
/// memory one of them held, measured by the provider (cgroups, the
/// engine's stats, the watchdog) and counted to the function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuSample {
    pub function: String,
    pub namespace: String,
    /// The end of the interval, microseconds since the Unix epoch.
    pub at_us: u64,
    pub cpu_us: u64,
    /// The most memory one replica held over the interval (its cgroup's
    /// peak; where only the memory in use can be read, that), in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a store keeps, in the order it was handed over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    Call(Record),
    Cpu(CpuSample),
    /// One another gateway recorded, as the gateways sharing a store
    /// exchange them (never handed to [`Meter::record`]).
    Shared(Box<Shared>),
}

/// An entry from another gateway: which gateway (`origin`), its id there
/// (ids of one origin only grow), and where it was in the stream the
/// gateways exchange entries on (`seq`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    pub origin: String,
    pub id: u64,
    pub seq: u64,
    pub entry: Entry,
}

impl Entry {
    /// The namespace, function and time it is counted under.
    pub fn key(&self) -> (&str, &str, u64) {
        match self.own() {
            Entry::Call(r) => (&r.namespace, &r.function, r.start_us),
            Entry::Cpu(s) => (&s.namespace, &s.function, s.at_us),
            Entry::Shared(s) => s.entry.key(),
        }
    }

    /// The call or CPU sample itself, whichever gateway recorded it.
    pub fn own(&self) -> &Entry {
        match self {
            Entry::Shared(s) => s.entry.own(),
            e => e,
        }
    }
}

/// Sums of records (and CPU samples): what rollups keep and bills price.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    pub invocations: u64,
    /// Invocations answered with a 5xx.
    pub errors: u64,
    pub duration_us: u64,
    pub mib_us: u64,
    pub cpu_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Invocations that waited for a replica.
    pub cold_starts: u64,
    pub wait_us: u64,
    /// The most memory one replica of the function held (a maximum, not a
    /// sum), in bytes.
    #[serde(default)]
    pub peak_memory_bytes: u64,
}

/// Microseconds in a second; MiB-microseconds in a GB-second (GiB, as the
/// clouds bill).
const US: f64 = 1e6;
const MIB_US_PER_GB_S: f64 = 1024.0 * 1e6;

/// MiB-microseconds (memory times duration, as records keep it) in
/// GB-seconds.
pub fn gb_seconds(mib_us: u64) -> f64 {
    mib_us as f64 / MIB_US_PER_GB_S
}

impl Sums {
    pub fn add(&mut self, entry: &Entry) {
        match entry.own() {
            Entry::Call(r) => {
                self.invocations += 1;
                self.errors += u64::from(r.status >= 500);
                self.duration_us = self.duration_us.saturating_add(r.duration_us);
                self.mib_us = self.mib_us.saturating_add(r.mib_us());
                self.bytes_in = self.bytes_in.saturating_add(r.bytes_in);
                self.bytes_out = self.bytes_out.saturating_add(r.bytes_out);
                self.cold_starts += u64::from(r.wait_us > 0);
                self.wait_us = self.wait_us.saturating_add(r.wait_us);
            }
            Entry::Cpu(s) => {
                self.cpu_us = self.cpu_us.saturating_add(s.cpu_us);
                self.peak_memory_bytes = self.peak_memory_bytes.max(s.memory_bytes);
            }
            Entry::Shared(_) => {}
        }
    }

    pub fn merge(&mut self, o: &Sums) {
        self.invocations += o.invocations;
        self.errors += o.errors;
        self.duration_us = self.duration_us.saturating_add(o.duration_us);
        self.mib_us = self.mib_us.saturating_add(o.mib_us);
        self.cpu_us = self.cpu_us.saturating_add(o.cpu_us);
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.cold_starts += o.cold_starts;
        self.wait_us = self.wait_us.saturating_add(o.wait_us);
        self.peak_memory_bytes = self.peak_memory_bytes.max(o.peak_memory_bytes);
    }

    pub fn gb_seconds(&self) -> f64 {
        gb_seconds(self.mib_us)
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_us as f64 / US
    }

    pub fn duration_seconds(&self) -> f64 {
        self.duration_us as f64 / US
    }

    pub fn wait_seconds(&self) -> f64 {
        self.wait_us as f64 / US
    }
}

/// The sums of one function over one period of a store's resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub namespace: String,
    pub function: String,
    /// The period's start, microseconds since the Unix epoch.
    pub start_us: u64,
    pub sums: Sums,
}

/// A store's sums over a time range, at the finest resolution it still has
/// for the range.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// The range covered: the one asked for, widened to whole periods.
    pub from_us: u64,
    pub to_us: u64,
    pub resolution: Resolution,
    pub buckets: Vec<Bucket>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn micros(self) -> u64 {
        match self {
            Resolution::Minute => 60_000_000,
            Resolution::Hour => 3_600_000_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
        }
    }
}

/// Which functions a query is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub function: Option<String>,
}

impl Filter {
    pub fn admits(&self, namespace: &str, function: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.function.as_deref().is_none_or(|f| f == function)
    }
}

/// What a meter has done since it started (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterStats {
    /// Records handed over.
    pub records: u64,
    /// Records that could not be written to the log (kept in memory only).
    pub unlogged: u64,
    /// Records not yet folded into the tables.
    pub pending: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage store: {0}")]
    Store(String),
    #[error("{0}")]
    Invalid(String),
}

/// Keeps usage records and answers for them.
#[async_trait]
pub trait Meter: Send + Sync {
    /// Keeps `entry`. When this returns, the entry survives the process
    /// being killed (it is in the kernel's hands); it does not wait for a
    /// disk. Called as every invocation ends, so it must be quick.
    fn record(&self, entry: Entry);

    /// The sums of the functions `filter` admits over `[from_us, to_us)`,
    /// including everything recorded before the call.
    async fn usage(&self, from_us: u64, to_us: u64, filter: &Filter) -> Result<Usage, UsageError>;

    /// The raw records that started in `[from_us, to_us)` (as long as the
    /// store keeps raw records), oldest first, at most `limit`.
    async fn records(
        &self,
        from_us: u64,
        to_us: u64,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, UsageError>;

    /// The price plans: by namespace, `*` for namespaces without one.
    async fn plans(&self) -> Result<BTreeMap<String, Plan>, UsageError>;

    /// Sets (or with `None`, removes) the plan of `namespace` (or `*`).
    async fn set_plan(&self, namespace: &str, plan: Option<Plan>) -> Result<(), UsageError>;

    /// The quotas, by namespace.
    async fn quotas(&self) -> Result<BTreeMap<String, Quota>, UsageError>;

    /// Sets (or with `None`, removes) the quota of `namespace`.
    async fn set_quota(&self, namespace: &str, quota: Option<Quota>) -> Result<(), UsageError>;

    fn stats(&self) -> MeterStats;

    /// Whether other gateways share this store: their records reach it
    /// (so quotas are to be counted from it), and so do their plans and
    /// quotas.
    fn shared(&self) -> bool {
        false
    }
}

/// What a follower of a [`Board`] does with each key: its value, or
/// `None` once deleted.
pub type Apply = Box<dyn Fn(&str, Option<&[u8]>) + Send + Sync>;

/// Settings the gateways sharing a store keep in common besides plans and
/// quotas (API tokens), by key.
#[async_trait]
pub trait Board: Send + Sync {
    /// Stores `value` under `key` (deletes it, with `None`) for every
    /// gateway; returns once it is stored.
    async fn put(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), UsageError>;

    /// Calls `apply` with every key under `prefix` as it is now, then
    /// with each change, from any gateway, for as long as the board
    /// lives. `local` is what this gateway has of them: what the board
    /// does not have is applied as deleted, or, if this gateway never
    /// followed the board before, put there (unless the board had the
    /// key: then it was deleted).
    async fn follow(&self, prefix: &str, local: Local, apply: Apply) -> Result<(), UsageError>;
}

/// What a gateway has of a [`Board`]'s keys as it starts to follow it.
#[derive(Clone, Debug, Default)]
pub struct Local {
    pub entries: Vec<(String, Vec<u8>)>,
    /// Whether it followed the board before (so the board has all it
    /// has, and a key the board lacks was deleted there). Never true
    /// for keys a gateway had before it shared them, or a token revoked
    /// while it was away would come back.
    pub followed_before: bool,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) fn record(function: &str, start_us: u64, duration_us: u64) -> Record {
    Record {
        function: function.into(),
        namespace: "openfaas-fn".into(),
        call_id: format!("c{start_us}"),
        trigger: Trigger::Http,
        start_us,
        duration_us,
        status: 200,
        bytes_in: 10,
        bytes_out: 20,
        wait_us: 0,
        memory_mib: 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_integers() {
        let mut s = Sums::default();
        for i in 0..1000 {
            s.add(&Entry::Call(record("a", i, 250_000)));
        }
        assert_eq!(s.invocations, 1000);
        assert_eq!(s.mib_us, 1000 * 128 * 250_000);
        // 1000 calls of 0.25 s at 128 MiB: 31.25 GB-s.
        assert_eq!(s.gb_seconds(), 31.25);
        let mut twice = s;
        twice.merge(&s);
        assert_eq!(twice.invocations, 2000);
        assert_eq!(twice.bytes_out, 40_000);
    }

    #[test]
    fn entries_read_back_as_written() {
        let e = Entry::Call(record("a", 5, 6));
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"call":{"function":"a""#), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        assert_eq!(Trigger::of_connector("rabbitmq"), Trigger::Rabbitmq);
        assert_eq!(Trigger::of_connector("kafka").as_str(), "event");
    }
}
