//! The embedded usage store, in a folder of the state folder.
//!
//! - **The log** (`log-<n>.jsonl`): [`Meter::record`] appends each entry as
//!   one line, a copy into a mapped window of the file ([`mapped`]), under
//!   a lock, and returns. The line is then the kernel's: it survives the
//!   gateway being killed (not the machine losing power: the log is not
//!   fsync'd per record, which would cost the request path a disk flush).
//! - **The tables** (`usage.redb`): a thread folds what the log gained into
//!   per-minute and per-hour sums every quarter second, in one transaction
//!   that also stores how far into the log it has read and what time span
//!   each log file covers. At start, the log is read from there on: every
//!   entry is folded in exactly once, however the process ended.
//! - **Memory is bounded**: entries wait for the fold in memory, up to
//!   [`log::PENDING_MAX`]. Past it (folds have been failing: a full disk),
//!   they are dropped from memory and the folds read them back from the
//!   log, a bounded batch at a time, until they have caught up.
//! - **Raw records** stay where they were written, in the log files (a
//!   record is written once, and a fold adds a few rows, however many
//!   records it takes in). A query for them reads the files whose span
//!   meets its range.
//! - **Retention**: a log file is deleted once all it holds is past the
//!   raw window, or when the files together are past their size bound
//!   (oldest first, never one not yet folded in); minute sums are deleted
//!   past theirs; hour sums are kept longest, so a month's bill can still
//!   be made from them.
//! - **Shared** by the gateways of a Swarm (`crate::jetstream`): what this
//!   gateway logged is published from the log ([`Embedded::unpublished`],
//!   [`Embedded::published`]), and what the others published is appended
//!   to this log as [`Entry::Shared`] ([`Embedded::receive`]), folded in
//!   like the rest. Each origin's entries are taken in the order of their
//!   ids, each once; how far the stream has been read, and the last id
//!   taken from each origin, are stored with the folds, so a restart
//!   neither loses nor repeats one.

mod log;
mod mapped;

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
pub use log::Position;
use log::{Log, Span, Take};

/// (start µs, entry id) -> the record (JSON): where stores made before
/// raw records stayed in the log kept them. Read and swept, never written.
const RAW: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raw");
/// Log file number -> its [`Span`] (earliest µs, latest µs, bytes).
const SEGMENTS: TableDefinition<u64, (u64, u64, u64)> = TableDefinition::new("segments");
/// (period start µs, namespace, function) -> [`Sums`] (JSON).
const MINUTES: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("minutes");
const HOURS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("hours");
/// `position` -> how far the log has been folded in; `plan:<ns>` -> a
/// plan; `quota:<ns>` -> a quota; `origin` -> this store's name among the
/// gateways sharing entries; `published` -> how far the log has been
/// published to them; `exchange` -> what was taken from the others
/// ([`Exchange`]).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// How long each kind of figure is kept.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub raw: Duration,
    /// The most the log files (the raw records) may take on disk.
    pub raw_bytes: u64,
    pub minutes: Duration,
    pub hours: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(7 * DAY),
            raw_bytes: 1 << 30,
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
    dir: PathBuf,
    log: Mutex<Log>,
    /// Held while folding: one fold at a time.
    folding: Mutex<Folding>,
    /// Held while reading raw records from the log files: one query at a
    /// time reads them (each may read many MiB), however many clients ask.
    scanning: Mutex<()>,
    retention: Retention,
    records: AtomicU64,
    unlogged: AtomicU64,
    /// This store's name among the gateways sharing entries.
    origin: String,
    /// What was taken from the other gateways (appended to the log).
    exchange: Mutex<Exchange>,
    /// How far the log has been published to the other gateways, once
    /// sharing started: the log files from there on are kept past their age.
    published: Mutex<Option<Position>>,
}

/// What [`Embedded::unpublished`] found.
#[derive(Debug)]
pub struct Unpublished {
    /// Records, with their ids.
    pub entries: Vec<(u64, Entry)>,
    /// The position after them (to be [`Embedded::published`]).
    pub to: Position,
    /// Whether the log may hold more past them.
    pub more: bool,
}

struct Folding {
    last_sweep_us: u64,
    /// The exchange as the last fold stored it.
    stored: Exchange,
}

/// How far the stream of shared entries has been read, and the last id
/// taken from each other gateway: all the log holds of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Exchange {
    /// The stream sequence to read next.
    pub next_seq: u64,
    pub marks: BTreeMap<String, u64>,
}

impl Exchange {
    fn saw(&mut self, shared: &crate::Shared) {
        self.next_seq = self.next_seq.max(shared.seq + 1);
        let mark = self.marks.entry(shared.origin.clone()).or_insert(shared.id);
        *mark = (*mark).max(shared.id);
    }
}

/// A store's name: 8 random bytes in hex.
fn new_origin() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read_meta<T: serde::de::DeserializeOwned>(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, UsageError> {
    match meta.get(key).map_err(store_error)? {
        Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(store_error),
        None => Ok(None),
    }
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
    let (position, known, origin, exchange, published) = {
        tx.open_table(RAW).map_err(store_error)?;
        tx.open_table(MINUTES).map_err(store_error)?;
        tx.open_table(HOURS).map_err(store_error)?;
        let mut meta = tx.open_table(META).map_err(store_error)?;
        let position = meta.get("position").map_err(store_error)?;
        let position =
            position.and_then(|v| serde_json::from_slice::<Position>(v.value()).ok()).unwrap_or_default();
        let origin = match read_meta::<String>(&meta, "origin")? {
            Some(origin) => origin,
            None => {
                let origin = new_origin().map_err(store_error)?;
                let json = serde_json::to_vec(&origin).map_err(store_error)?;
                meta.insert("origin", json.as_slice()).map_err(store_error)?;
                origin
            }
        };
        let exchange = read_meta::<Exchange>(&meta, "exchange")?.unwrap_or_default();
        let published = read_meta::<Position>(&meta, "published")?;
        (position, read_spans(&tx.open_table(SEGMENTS).map_err(store_error)?)?, origin, exchange, published)
    };
    tx.commit().map_err(store_error)?;
    let (log, replayed) = Log::open(dir, position, &known).map_err(store_error)?;
    let stored = exchange.clone();
    let mut exchange = exchange;
    for (_, entry) in &replayed.entries {
        if let Entry::Shared(shared) = entry {
            exchange.saw(shared);
        }
    }
    let store = Arc::new(Embedded {
        db,
        dir: dir.to_owned(),
        log: Mutex::new(log),
        folding: Mutex::new(Folding { last_sweep_us: 0, stored }),
        scanning: Mutex::new(()),
        retention,
        records: AtomicU64::new(0),
        unlogged: AtomicU64::new(0),
        origin,
        exchange: Mutex::new(exchange),
        published: Mutex::new(published),
    });
    // What the last run logged but did not fold in.
    let n = replayed.entries.len();
    let exchange = lock(&store.exchange).clone();
    store.commit(&replayed.entries, replayed.position, &replayed.spans, Some(&exchange))?;
    lock(&store.folding).stored = exchange;
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
        let (entries, position, spans) = match lock(&self.log).take() {
            Take::Entries { entries, position, spans } => (entries, position, spans),
            // Read back from the log, outside its lock, a bounded batch.
            Take::Behind { from, to, max, spans } => match log::read_between(&self.dir, from, to, max) {
                Ok((entries, position)) => (entries, position, spans),
                Err(e) => {
                    lock(&self.log).put_back(Vec::new(), spans);
                    return Err(store_error(e));
                }
            },
        };
        // After the take: the exchange covers at least what is folded in
        // (and what it covers beyond is in the log, read back at start).
        let exchange = lock(&self.exchange).clone();
        let exchanged = (exchange != folding.stored).then_some(&exchange);
        if (!entries.is_empty() || spans.len() > 1 || exchanged.is_some())
            && let Err(e) = self.commit(&entries, position, &spans, exchanged)
        {
            // Kept for the next fold, in order.
            lock(&self.log).put_back(entries, spans);
            return Err(e);
        }
        lock(&self.log).folded(position);
        folding.stored = exchange;
        let now = crate::now_us();
        if now.saturating_sub(folding.last_sweep_us) >= SWEEP_INTERVAL.as_micros() as u64 {
            folding.last_sweep_us = now;
            self.sweep(now)?;
        }
        Ok(())
    }

    /// One transaction: the sums the entries add to, how far the log has
    /// been read, and the spans of the files they are in. Nothing is
    /// written per entry.
    fn commit(
        &self,
        entries: &[(u64, Entry)],
        position: Position,
        spans: &[(u64, Span)],
        exchange: Option<&Exchange>,
    ) -> Result<(), UsageError> {
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            // Keyed by the entries' own names: nothing copied per entry.
            let mut minutes: BTreeMap<(u64, &str, &str), Sums> = BTreeMap::new();
            let mut hours: BTreeMap<(u64, &str, &str), Sums> = BTreeMap::new();
            for (_, entry) in entries {
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
            let mut segments = tx.open_table(SEGMENTS).map_err(store_error)?;
            for (segment, span) in spans.iter().filter(|(_, s)| s.bytes > 0) {
                segments.insert(*segment, span.as_row()).map_err(store_error)?;
            }
            let mut meta = tx.open_table(META).map_err(store_error)?;
            let json = serde_json::to_vec(&position).map_err(store_error)?;
            meta.insert("position", json.as_slice()).map_err(store_error)?;
            if let Some(exchange) = exchange {
                let json = serde_json::to_vec(exchange).map_err(store_error)?;
                meta.insert("exchange", json.as_slice()).map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
    }

    /// Deletes raw records and sums past their retention.
    fn sweep(&self, now_us: u64) -> Result<(), UsageError> {
        let before = |keep: Duration| now_us.saturating_sub(keep.as_micros() as u64);
        let tx = self.db.begin_write().map_err(store_error)?;
        let mut gone = Vec::new();
        {
            let meta = tx.open_table(META).map_err(store_error)?;
            let folded_to = match meta.get("position").map_err(store_error)? {
                Some(v) => serde_json::from_slice::<Position>(v.value()).map_err(store_error)?.segment,
                None => 0,
            };
            let mut segments = tx.open_table(SEGMENTS).map_err(store_error)?;
            let spans = read_spans(&segments)?;
            let mut total: u64 = spans.values().map(|s| s.bytes).sum();
            let cutoff = before(self.retention.raw);
            let published_to = lock(&self.published).map_or(u64::MAX, |p| p.segment);
            // Oldest first; the file being appended to (and any not yet
            // folded in) is kept whatever its age or size; one not yet
            // published to the other gateways, whatever its age.
            for (&segment, span) in spans.range(..folded_to) {
                let old = span.max_us < cutoff && segment < published_to;
                if old || total > self.retention.raw_bytes {
                    segments.remove(segment).map_err(store_error)?;
                    total -= span.bytes;
                    gone.push(segment);
                }
            }
            let mut raw = tx.open_table(RAW).map_err(store_error)?;
            raw.retain_in((0, 0)..(before(self.retention.raw), 0), |_, _| false).map_err(store_error)?;
            for (definition, keep) in [(MINUTES, self.retention.minutes), (HOURS, self.retention.hours)] {
                let mut table = tx.open_table(definition).map_err(store_error)?;
                table.retain_in((0, "", "")..(before(keep), "", ""), |_, _| false).map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)?;
        // Once no longer listed: a file that could not be deleted is found
        // and listed again at the next start, and deleted then.
        for segment in gone {
            if let Err(e) = std::fs::remove_file(log::path_of(&self.dir, segment)) {
                tracing::warn!(segment, error = %e, "usage: could not delete an old log file");
            }
        }
        Ok(())
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
        let _scanning = lock(&self.scanning);
        // Folding stores the span of the file being appended to.
        self.fold()?;
        let tx = self.db.begin_read().map_err(store_error)?;
        // The `limit` earliest by (start, id): an id is a place in the log,
        // so a record is here once however it was found.
        let mut out: BTreeMap<(u64, u64), Record> = BTreeMap::new();
        let keep = |key: (u64, u64), r: Record, out: &mut BTreeMap<(u64, u64), Record>| {
            if (from_us..to_us).contains(&r.start_us) && filter.admits(&r.namespace, &r.function) {
                out.insert(key, r);
                if out.len() > limit {
                    out.pop_last();
                }
            }
        };
        let table = tx.open_table(RAW).map_err(store_error)?;
        for item in table.range((from_us, 0)..(to_us, 0)).map_err(store_error)? {
            let (k, v) = item.map_err(store_error)?;
            let r: Record = serde_json::from_slice(v.value()).map_err(store_error)?;
            keep(k.value(), r, &mut out);
        }
        let mut spans: Vec<(u64, Span)> = read_spans(&tx.open_table(SEGMENTS).map_err(store_error)?)?
            .into_iter()
            .filter(|(_, s)| s.meets(from_us, to_us))
            .collect();
        spans.sort_by_key(|(_, s)| s.min_us);
        for (segment, span) in spans {
            // Files are read earliest first: once `limit` are found, a file
            // that starts after the last of them has none to add.
            if out.len() >= limit && out.last_key_value().is_some_and(|((start, _), _)| span.min_us > *start)
            {
                break;
            }
            let read = log::read_segment(&self.dir, segment, 0, Some(span.bytes), |id, entry| {
                let call = match entry {
                    Entry::Call(r) => Some(r),
                    Entry::Shared(shared) => match shared.entry {
                        Entry::Call(r) => Some(r),
                        _ => None,
                    },
                    Entry::Cpu(_) => None,
                };
                if let Some(r) = call {
                    keep((r.start_us, id), r, &mut out);
                }
                true
            });
            match read {
                Ok(_) => {}
                // Deleted by retention since the spans were read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_error(format!("log file {segment}: {e}"))),
            }
        }
        Ok(out.into_values().collect())
    }

    /// This store's name among the gateways sharing entries.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The records of calls through this gateway (none taken from
    /// others) among the next `max` entries not yet published, the
    /// position after them, and whether there may be more. The
    /// first call starts at the beginning of the log. CPU samples are not
    /// published: every gateway reads the replicas it routes to (on a
    /// Swarm, all of them), so theirs would count each replica again.
    pub fn unpublished(&self, max: usize) -> Result<Unpublished, UsageError> {
        let from = lock(&self.published).get_or_insert_default().to_owned();
        let to = lock(&self.log).end();
        let (mut entries, at) = log::read_between(&self.dir, from, to, max).map_err(store_error)?;
        let more = entries.len() >= max;
        entries.retain(|(_, e)| matches!(e, Entry::Call(_)));
        Ok(Unpublished { entries, to: at, more })
    }

    /// Everything before `to` is published (in the stream the gateways
    /// share), so it is not published again after a restart.
    pub fn published(&self, to: Position) -> Result<(), UsageError> {
        if *lock(&self.published) == Some(to) {
            return Ok(());
        }
        let mut tx = self.db.begin_write().map_err(store_error)?;
        // No flush of its own: the next fold's commit makes it durable,
        // and a position lost with the machine only publishes some
        // records again (which the others pass over).
        tx.set_durability(redb::Durability::Eventual);
        {
            let mut meta = tx.open_table(META).map_err(store_error)?;
            let json = serde_json::to_vec(&to).map_err(store_error)?;
            meta.insert("published", json.as_slice()).map_err(store_error)?;
        }
        tx.commit().map_err(store_error)?;
        *lock(&self.published) = Some(to);
        Ok(())
    }

    /// The sequence of the stream of shared entries to read from next.
    pub fn next_seq(&self) -> u64 {
        lock(&self.exchange).next_seq.max(1)
    }

    /// Takes what another gateway (`origin`) published at stream sequence
    /// `seq`: every call's record with an id past the last taken from it
    /// is appended to the log. A sequence read before, this store's own
    /// entries and ids already taken are passed over, so every entry is
    /// here once, however often it is published or read.
    pub fn receive(&self, origin: &str, seq: u64, entries: Vec<(u64, Entry)>) {
        let mut exchange = lock(&self.exchange);
        if seq < exchange.next_seq {
            return;
        }
        exchange.next_seq = seq + 1;
        if origin == self.origin {
            return;
        }
        let mut mark = exchange.marks.get(origin).copied();
        let mut log = lock(&self.log);
        for (id, entry) in entries {
            if mark.is_some_and(|m| id <= m) || !matches!(entry, Entry::Call(_)) {
                continue;
            }
            mark = Some(id);
            let shared = crate::Shared { origin: origin.to_owned(), id, seq, entry };
            if let Err(e) = log.append(Entry::Shared(Box::new(shared))) {
                self.unlogged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "usage: could not append to the log");
            }
        }
        if let Some(mark) = mark {
            exchange.marks.insert(origin.to_owned(), mark);
        }
    }

    /// Whether `flag` was set ([`Embedded::set_flag`]).
    pub fn flag(&self, flag: &str) -> Result<bool, UsageError> {
        let tx = self.db.begin_read().map_err(store_error)?;
        let meta = tx.open_table(META).map_err(store_error)?;
        Ok(meta.get(format!("flag:{flag}").as_str()).map_err(store_error)?.is_some())
    }

    /// Sets `flag`, for good (what a store has done once: followed the
    /// shared plans, say).
    pub fn set_flag(&self, flag: &str) -> Result<(), UsageError> {
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            let mut meta = tx.open_table(META).map_err(store_error)?;
            meta.insert(format!("flag:{flag}").as_str(), b"true".as_slice()).map_err(store_error)?;
        }
        tx.commit().map_err(store_error)
    }

    /// The settings kept under `kind:` (plans, quotas), by namespace.
    fn read_settings<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<BTreeMap<String, T>, UsageError> {
        self.settings_json(kind)?
            .into_iter()
            .map(|(ns, json)| Ok((ns, serde_json::from_slice(&json).map_err(store_error)?)))
            .collect()
    }

    /// The settings kept under `kind:`, by namespace, as stored (JSON).
    pub fn settings_json(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, UsageError> {
        let tx = self.db.begin_read().map_err(store_error)?;
        let meta = tx.open_table(META).map_err(store_error)?;
        let (from, to) = (format!("{kind}:"), format!("{kind};"));
        let mut out = Vec::new();
        for item in meta.range(from.as_str()..to.as_str()).map_err(store_error)? {
            let (k, v) = item.map_err(store_error)?;
            out.push((k.value()[from.len()..].to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn write_setting<T: serde::Serialize>(
        &self,
        kind: &str,
        namespace: &str,
        value: Option<&T>,
    ) -> Result<(), UsageError> {
        let json = value.map(serde_json::to_vec).transpose().map_err(store_error)?;
        self.put_setting_json(kind, namespace, json.as_deref())
    }

    /// Stores (or with `None` removes) the setting `kind:namespace` as
    /// JSON; one that does not read as a plan or a quota is refused.
    pub fn put_setting_json(
        &self,
        kind: &str,
        namespace: &str,
        json: Option<&[u8]>,
    ) -> Result<(), UsageError> {
        if let Some(json) = json {
            let valid = match kind {
                "plan" => serde_json::from_slice::<Plan>(json).is_ok(),
                "quota" => serde_json::from_slice::<Quota>(json).is_ok(),
                _ => false,
            };
            if !valid {
                return Err(UsageError::Invalid(format!("not a {kind}: {}", String::from_utf8_lossy(json))));
            }
        }
        let tx = self.db.begin_write().map_err(store_error)?;
        {
            let mut meta = tx.open_table(META).map_err(store_error)?;
            let key = format!("{kind}:{namespace}");
            match json {
                Some(json) => {
                    meta.insert(key.as_str(), json).map_err(store_error)?;
                }
                None => {
                    meta.remove(key.as_str()).map_err(store_error)?;
                }
            }
        }
        tx.commit().map_err(store_error)
    }
}

fn read_spans(table: &impl ReadableTable<u64, (u64, u64, u64)>) -> Result<BTreeMap<u64, Span>, UsageError> {
    let mut out = BTreeMap::new();
    for item in table.iter().map_err(store_error)? {
        let (k, v) = item.map_err(store_error)?;
        out.insert(k.value(), Span::from_row(v.value()));
    }
    Ok(out)
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
