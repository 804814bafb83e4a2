//! The embedded usage store, in a folder of the state folder.
//!
//! - **The log** (`log-<n>.jsonl`): [`Meter::record`] appends each entry as
//!   one line with one `write(2)`, under a lock, and returns. The line is
//!   then the kernel's: it survives the gateway being killed (not the
//!   machine losing power: the log is not fsync'd per record, which would
//!   cost the request path a disk flush).
//! - **The tables** (`usage.redb`): a thread folds what the log gained into
//!   raw records and per-minute and per-hour sums every quarter second, in
//!   one transaction that also stores how far into the log it has read.
//!   At start, the log is read from there on: every entry is folded in
//!   exactly once, however the process ended. A log that was folded in
//!   whole is deleted.
//! - **Retention**: raw records and minute sums are deleted past their
//!   windows; hour sums are kept longest, so a month's bill can still be
//!   made from them.

mod log;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::{
    Bucket, Entry, Filter, Meter, MeterStats, Plan, Quota, Record, Resolution, Sums, Usage, UsageError,
};
use log::{Log, Position};

/// (start µs, entry id) -> the record (JSON).
const RAW: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raw");
/// (period start µs, namespace, function) -> [`Sums`] (JSON).
const MINUTES: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("minutes");
const HOURS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("hours");
/// `position` -> how far the log has been folded in; `plan:<ns>` -> a
/// plan; `quota:<ns>` -> a quota.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// How long each kind of figure is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub raw: Duration,
    pub minutes: Duration,
    pub hours: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(7 * DAY),
            minutes: Duration::from_secs(14 * DAY),
            hours: Duration::from_secs(400 * DAY),
        }
    }
}

/// How often the log is folded into the tables.
const FOLD_INTERVAL: Duration = Duration::from_millis(250);
/// How often what is past retention is deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub struct Embedded {
    db: Database,
    log: Mutex<Log>,
    /// Held while folding: one fold at a time.
    folding: Mutex<Folding>,
    retention: Retention,
    records: AtomicU64,
    unlogged: AtomicU64,
}

struct Folding {
    last_sweep_us: u64,
}

fn store_error(e: impl std::fmt::Display) -> UsageError {
    UsageError::Store(e.to_string())
}

/// Opens (or creates) the store in `dir`, folds in what the log holds
/// beyond what the tables have, and starts folding.
pub fn open(dir: &Path, retention: Retention) -> Result<Arc<Embedded>, UsageError> {
    std::fs::create_dir_all(dir).map_err(|e| store_error(format!("{}: {e}", dir.display())))?;
    let db = Database::create(dir.join("usage.redb")).map_err(store_error)?;
    let tx = db.begin_write().map_err(store_error)?;
    let position = {
        tx.open_table(RAW).map_err(store_error)?;
        tx.open_table(MINUTES).map_err(store_error)?;
        tx.open_table(HOURS).map_err(store_error)?;
        let meta = tx.open_table(META).map_err(store_error)?;
        let position = meta.get("position").map_err(store_error)?;
        position.and_then(|v| serde_json::from_slice::<Position>(v.value()).ok()).unwrap_or_default()
    };
    tx.commit().map_err(store_error)?;
    let (log, replayed) = Log::open(dir, position).map_err(store_error)?;
    let store = Arc::new(Embedded {
        db,
        log: Mutex::new(log),
        folding: Mutex::new(Folding { last_sweep_us: 0 }),
        retention,
        records: AtomicU64::new(0),
        unlogged: AtomicU64::new(0),
    });
    // What the last run logged but did not fold in, then the logs it came
    // from, gone.
    let (entries, replayed_to) = replayed;
    let n = entries.len();
    store.commit(&entries, replayed_to)?;
    lock(&store.log).delete_before(replayed_to.segment);
    if n > 0 {
        tracing::info!(entries = n, "usage: folded in what the log held");
    }
    let weak = Arc::downgrade(&store);
    std::thread::Builder::new()
        .name("usage-fold".into())
        .spawn(move || fold_loop(weak))
        .map_err(store_error)?;
    Ok(store)
}

fn fold_loop(store: Weak<Embedded>) {
    loop {
        std::thread::sleep(FOLD_INTERVAL);
        let Some(store) = store.upgrade() else { return };
        if let Err(e) = store.fold() {
            tracing::warn!(error = %e, "usage: folding the log into the tables failed; will retry");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Embedded {
    /// Folds what was logged since the last fold into the tables.
    fn fold(&self) -> Result<(), UsageError> {
        let mut folding = lock(&self.folding);
        let (entries, position, rotated) = lock(&self.log).take();
        if !entries.is_empty() || rotated {
            if let Err(e) = self.commit(&entries, position) {
                // Kept for the next fold, in order.
                lock(&self.log).put_back(entries);
                return Err(e);
            }
            if rotated {
                lock(&self.log).delete_before(position.segment);
            }
        }
        let now = crate::now_us();
        if now.saturating_sub(folding.last_sweep_us) >= SWEEP_INTERVAL.as_micros() as u64 {
            folding.last_sweep_us = now;
            self.sweep(now)?;
        }
        Ok(())
    }

    /// One transaction: the raw records, the sums they add to, and how far
    /// the log has been read.
    fn commit(&self, entries: &[(u64, Entry)], position: Position) -> Result<(), UsageError> {
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            let mut raw = tx.open_table(RAW).map_err(store_error)?;
            // Keyed by the entries' own names: nothing copied per entry.
            let mut minutes: BTreeMap<(u64, &str, &str), Sums> = BTreeMap::new();
            let mut hours: BTreeMap<(u64, &str, &str), Sums> = BTreeMap::new();
            for (id, entry) in entries {
                if let Entry::Call(r) = entry {
                    let json = serde_json::to_vec(r).map_err(store_error)?;
                    // Already there: folded in before (never counted twice).
                    if raw.insert((r.start_us, *id), json.as_slice()).map_err(store_error)?.is_some() {
                        continue;
                    }
                }
                let (ns, f, at) = entry.key();
                for (table, period) in [(&mut minutes, Resolution::Minute), (&mut hours, Resolution::Hour)] {
                    let start = at - at % period.micros();
                    table.entry((start, ns, f)).or_default().add(entry);
                }
            }
            for (definition, sums) in [(MINUTES, minutes), (HOURS, hours)] {
                let mut table = tx.open_table(definition).map_err(store_error)?;
                for (key, add) in sums {
                    // A row that does not read back stops the fold (it is
                    // retried) rather than being replaced by a new count.
                    let mut total = match table.get(key).map_err(store_error)? {
                        Some(v) => serde_json::from_slice::<Sums>(v.value()).map_err(store_error)?,
                        None => Sums::default(),
                    };
                    total.merge(&add);
                    let json = serde_json::to_vec(&total).map_err(store_error)?;
                    table.insert(key, json.as_slice()).map_err(store_error)?;
                }
            }
            let mut meta = tx.open_table(META).map_err(store_error)?;
            let json = serde_json::to_vec(&position).map_err(store_error)?;
            meta.insert("position", json.as_slice()).map_err(store_error)?;
        }
        tx.commit().map_err(store_error)
    }

    /// Deletes raw records and sums past their retention.
    fn sweep(&self, now_us: u64) -> Result<(), UsageError> {
        let before = |keep: Duration| now_us.saturating_sub(keep.as_micros() as u64);
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            let mut raw = tx.open_table(RAW).map_err(store_error)?;
            raw.retain_in((0, 0)..(before(self.retention.raw), 0), |_, _| false).map_err(store_error)?;
            for (definition, keep) in [(MINUTES, self.retention.minutes), (HOURS, self.retention.hours)] {
                let mut table = tx.open_table(definition).map_err(store_error)?;
                table.retain_in((0, "", "")..(before(keep), "", ""), |_, _| false).map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
    }

    fn read_usage(&self, from_us: u64, to_us: u64, filter: &Filter) -> Result<Usage, UsageError> {
        self.fold()?;
        let now = crate::now_us();
        let minutes_since = now.saturating_sub(self.retention.minutes.as_micros() as u64);
        let (resolution, definition) =
            if from_us >= minutes_since { (Resolution::Minute, MINUTES) } else { (Resolution::Hour, HOURS) };
        let step = resolution.micros();
        let from = from_us - from_us % step;
        let to = to_us.div_ceil(step).saturating_mul(step);
        let tx = self.db.begin_read().map_err(store_error)?;
        let table = tx.open_table(definition).map_err(store_error)?;
        let mut buckets = Vec::new();
        for item in table.range((from, "", "")..(to, "", "")).map_err(store_error)? {
            let (k, v) = item.map_err(store_error)?;
            let (start, ns, f) = k.value();
            if !filter.admits(ns, f) {
                continue;
            }
            let sums = serde_json::from_slice::<Sums>(v.value()).map_err(store_error)?;
            buckets.push(Bucket { namespace: ns.to_owned(), function: f.to_owned(), start_us: start, sums });
        }
        Ok(Usage { from_us: from, to_us: to, resolution, buckets })
    }

    fn read_records(
        &self,
        from_us: u64,
        to_us: u64,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, UsageError> {
        self.fold()?;
        let tx = self.db.begin_read().map_err(store_error)?;
        let table = tx.open_table(RAW).map_err(store_error)?;
        let mut out = Vec::new();
        for item in table.range((from_us, 0)..(to_us, 0)).map_err(store_error)? {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(store_error)?;
            let r: Record = serde_json::from_slice(v.value()).map_err(store_error)?;
            if filter.admits(&r.namespace, &r.function) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The settings kept under `kind:` (plans, quotas), by namespace.
    fn read_settings<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<BTreeMap<String, T>, UsageError> {
        let tx = self.db.begin_read().map_err(store_error)?;
        let meta = tx.open_table(META).map_err(store_error)?;
        let (from, to) = (format!("{kind}:"), format!("{kind};"));
        let mut out = BTreeMap::new();
        for item in meta.range(from.as_str()..to.as_str()).map_err(store_error)? {
            let (k, v) = item.map_err(store_error)?;
            let ns = k.value()[from.len()..].to_owned();
            out.insert(ns, serde_json::from_slice(v.value()).map_err(store_error)?);
        }
        Ok(out)
    }

    fn write_setting<T: serde::Serialize>(
        &self,
        kind: &str,
        namespace: &str,
        value: Option<&T>,
    ) -> Result<(), UsageError> {
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            let mut meta = tx.open_table(META).map_err(store_error)?;
            let key = format!("{kind}:{namespace}");
            match value {
                Some(value) => {
                    let json = serde_json::to_vec(value).map_err(store_error)?;
                    meta.insert(key.as_str(), json.as_slice()).map_err(store_error)?;
                }
                None => {
                    meta.remove(key.as_str()).map_err(store_error)?;
                }
            }
        }
        tx.commit().map_err(store_error)
    }
}

/// Runs `f` on the store off the async threads (redb reads and writes
/// block).
async fn blocking<T: Send + 'static>(
    store: &Arc<Embedded>,
    f: impl FnOnce(&Embedded) -> Result<T, UsageError> + Send + 'static,
) -> Result<T, UsageError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store)).await.map_err(store_error)?
}

/// The store behind an `Arc`, so that its blocking work can be sent to a
/// thread.
pub struct Store(pub Arc<Embedded>);

#[async_trait]
impl Meter for Store {
    fn record(&self, entry: Entry) {
        self.0.records.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = lock(&self.0.log).append(entry) {
            // Kept in memory (folded in if the process lives on); the
            // metric says how many could be lost.
            self.0.unlogged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "usage: could not append to the log");
        }
    }

    async fn usage(&self, from_us: u64, to_us: u64, filter: &Filter) -> Result<Usage, UsageError> {
        let filter = filter.clone();
        blocking(&self.0, move |s| s.read_usage(from_us, to_us, &filter)).await
    }

    async fn records(
        &self,
        from_us: u64,
        to_us: u64,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, UsageError> {
        let filter = filter.clone();
        blocking(&self.0, move |s| s.read_records(from_us, to_us, &filter, limit)).await
    }

    async fn plans(&self) -> Result<BTreeMap<String, Plan>, UsageError> {
        blocking(&self.0, |s| s.read_settings("plan")).await
    }

    async fn set_plan(&self, namespace: &str, plan: Option<Plan>) -> Result<(), UsageError> {
        let namespace = namespace.to_owned();
        blocking(&self.0, move |s| s.write_setting("plan", &namespace, plan.as_ref())).await
    }

    async fn quotas(&self) -> Result<BTreeMap<String, Quota>, UsageError> {
        blocking(&self.0, |s| s.read_settings("quota")).await
    }

    async fn set_quota(&self, namespace: &str, quota: Option<Quota>) -> Result<(), UsageError> {
        let namespace = namespace.to_owned();
        blocking(&self.0, move |s| s.write_setting("quota", &namespace, quota.as_ref())).await
    }

    fn stats(&self) -> MeterStats {
        MeterStats {
            records: self.0.records.load(Ordering::Relaxed),
            unlogged: self.0.unlogged.load(Ordering::Relaxed),
            pending: lock(&self.0.log).pending() as u64,
        }
    }
}

/// Where the store of a state folder is.
pub fn dir_in(state: &Path) -> PathBuf {
    state.join("usage")
}

#[cfg(test)]
mod tests;
