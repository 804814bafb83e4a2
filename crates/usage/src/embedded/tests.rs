use super::*;
use crate::record;

const MIN: u64 = 60_000_000;

fn store(dir: &Path) -> Store {
    Store(open(dir, Retention::default()).unwrap())
}

async fn total(s: &Store, filter: &Filter) -> Sums {
    let usage = s.usage(0, u64::MAX / 2, filter).await.unwrap();
    let mut sums = Sums::default();
    for b in &usage.buckets {
        sums.merge(&b.sums);
    }
    sums
}

/// A time inside the minute retention (so queries read minutes).
fn recent(minutes_ago: u64) -> u64 {
    let now = crate::now_us();
    now - now % MIN - minutes_ago * MIN
}

#[tokio::test]
async fn every_record_is_folded_in_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = recent(30);
    {
        let s = store(dir.path());
        for i in 0..100 {
            s.record(Entry::Call(record("a", t0 + i, 1_000)));
        }
        assert_eq!(total(&s, &Filter::default()).await.invocations, 100);
        // Logged, not folded in, when the process ends.
        for i in 0..50 {
            s.record(Entry::Call(record("b", t0 + MIN + i, 1_000)));
        }
        assert!(s.stats().pending > 0 || total(&s, &Filter::default()).await.invocations == 150);
        // The fold thread holds a weak reference: dropping the store ends it.
    }
    std::thread::sleep(FOLD_INTERVAL * 2);
    // Half a line, as a kill in the middle of a write would leave.
    let last = segments(dir.path()).unwrap().into_iter().max().unwrap();
    let mut f = OpenOptions::new().append(true).open(log_path(dir.path(), last)).unwrap();
    f.write_all(br#"{"call":{"function":"#).unwrap();
    drop(f);
    let s = store(dir.path());
    let sums = total(&s, &Filter::default()).await;
    assert_eq!(sums.invocations, 150);
    assert_eq!(sums.mib_us, 150 * 128 * 1_000);
    let only_b = Filter { function: Some("b".into()), ..Filter::default() };
    assert_eq!(total(&s, &only_b).await.invocations, 50);
    drop(s);
    std::thread::sleep(FOLD_INTERVAL * 2);
    let s = store(dir.path());
    assert_eq!(total(&s, &Filter::default()).await.invocations, 150, "opened again: nothing twice");
    // Raw records stay in the log files, each once, the earliest first.
    let raw = s.records(t0, t0 + 2 * MIN, &only_b, 10).await.unwrap();
    assert_eq!(raw.len(), 10);
    assert!(raw.iter().all(|r| r.function == "b"));
    let starts: Vec<u64> = raw.iter().map(|r| r.start_us).collect();
    assert_eq!(starts, (0..10).map(|i| t0 + MIN + i).collect::<Vec<_>>());
    let all = s.records(0, u64::MAX / 2, &Filter::default(), 1000).await.unwrap();
    assert_eq!(all.len(), 150);
    // A range inside one file's span.
    let some = s.records(t0 + 20, t0 + 30, &Filter::default(), 1000).await.unwrap();
    assert_eq!(
        some.iter().map(|r| r.start_us).collect::<Vec<_>>(),
        (20..30).map(|i| t0 + i).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn sums_per_minute_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let t0 = recent(10);
    for i in 0..3u64 {
        for _ in 0..=i {
            s.record(Entry::Call(record("a", t0 + i * MIN + 5, 2_000_000)));
        }
    }
    s.record(Entry::Cpu(crate::CpuSample {
        function: "a".into(),
        namespace: "openfaas-fn".into(),
        at_us: t0 + 1,
        cpu_us: 700,
        memory_bytes: 5 << 20,
    }));
    s.record(Entry::Cpu(crate::CpuSample {
        function: "a".into(),
        namespace: "openfaas-fn".into(),
        at_us: t0 + 2,
        cpu_us: 300,
        memory_bytes: 3 << 20,
    }));
    let usage = s.usage(t0, t0 + 3 * MIN, &Filter::default()).await.unwrap();
    assert_eq!(usage.resolution, Resolution::Minute);
    let per_minute: Vec<u64> = usage.buckets.iter().map(|b| b.sums.invocations).collect();
    assert_eq!(per_minute, [1, 2, 3]);
    assert_eq!(usage.buckets[0].sums.cpu_us, 1000);
    assert_eq!(usage.buckets[0].sums.peak_memory_bytes, 5 << 20, "the peak is the most, not a sum");
    // A range that starts before the minutes kept reads hours.
    let old = s.usage(1, u64::MAX / 2, &Filter::default()).await.unwrap();
    assert_eq!(old.resolution, Resolution::Hour);
    let n: u64 = old.buckets.iter().map(|b| b.sums.invocations).sum();
    assert_eq!(n, 6);
    // A range that misses them has none.
    assert!(s.usage(t0 + 3 * MIN, t0 + 4 * MIN, &Filter::default()).await.unwrap().buckets.is_empty());
}

#[tokio::test]
async fn retention_deletes_old_figures() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        raw: Duration::from_secs(3600),
        minutes: Duration::from_secs(7200),
        hours: Duration::from_secs(86_400 * 400),
        raw_bytes: 1 << 30,
    };
    let now = crate::now_us();
    let old = now - 3 * 3_600_000_000;
    {
        // Each start appends to a file of its own.
        let s = Store(open(dir.path(), retention).unwrap());
        s.record(Entry::Call(record("a", old, 1)));
        s.record(Entry::Call(record("a", old + 1, 1)));
    }
    let files = segments(dir.path()).unwrap();
    assert_eq!(files.len(), 1);
    let s = Store(open(dir.path(), retention).unwrap());
    s.record(Entry::Call(record("a", now, 1)));
    // The first fold sweeps too.
    s.0.fold().unwrap();
    let kept = s.records(0, u64::MAX / 2, &Filter::default(), 10).await.unwrap();
    assert_eq!(kept.iter().map(|r| r.start_us).collect::<Vec<_>>(), [now]);
    let left = segments(dir.path()).unwrap();
    assert!(left.len() == 1 && left[0] > files[0], "the old file is deleted: {left:?}");
    let hours = s.usage(0, u64::MAX / 2, &Filter::default()).await.unwrap();
    assert_eq!(hours.buckets.iter().map(|b| b.sums.invocations).sum::<u64>(), 3, "hours are kept");
}

#[tokio::test]
async fn raw_records_are_bounded_in_size() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention { raw_bytes: 3000, ..Retention::default() };
    let t0 = recent(5);
    // Five files of 10 records (about 250 bytes each).
    for run in 0..5 {
        let s = Store(open(dir.path(), retention).unwrap());
        for i in 0..10 {
            s.record(Entry::Call(record("a", t0 + run * 100 + i, 1)));
        }
        s.0.fold().unwrap();
    }
    let s = Store(open(dir.path(), retention).unwrap());
    s.record(Entry::Call(record("a", t0 + 1000, 1)));
    s.0.fold().unwrap();
    s.0.sweep(crate::now_us()).unwrap();
    let kept = s.records(0, u64::MAX / 2, &Filter::default(), 1000).await.unwrap();
    // The file being written is allocated ahead: the others count.
    let files = segments(dir.path()).unwrap();
    let bytes: u64 = files[..files.len() - 1]
        .iter()
        .map(|n| std::fs::metadata(log_path(dir.path(), *n)).unwrap().len())
        .sum::<u64>()
        + s.0.log.lock().unwrap().offset();
    assert!(bytes <= 3000 + 300, "{bytes} bytes of log kept");
    // The newest are kept, the oldest went whole files at a time.
    assert_eq!(kept.last().unwrap().start_us, t0 + 1000);
    assert!(kept.len() < 51 && kept.len() % 10 == 1, "{} kept", kept.len());
    assert_eq!(kept[0].start_us % 100, 0, "a file is deleted whole");
    assert_eq!(total(&s, &Filter::default()).await.invocations, 51, "the sums keep everything");
}

#[tokio::test]
async fn a_file_no_table_lists_is_read_at_start() {
    // A file the tables do not list (a store written before files kept
    // raw records, a deletion that failed) is listed again when opened.
    let dir = tempfile::tempdir().unwrap();
    let t0 = recent(3);
    {
        let s = store(dir.path());
        for i in 0..5 {
            s.record(Entry::Call(record("a", t0 + i, 1)));
        }
        s.0.fold().unwrap();
        let tx = s.0.db.begin_write().unwrap();
        tx.open_table(SEGMENTS).unwrap().retain(|_, _| false).unwrap();
        tx.commit().unwrap();
    }
    let s = store(dir.path());
    assert_eq!(s.records(0, u64::MAX / 2, &Filter::default(), 100).await.unwrap().len(), 5);
    assert_eq!(total(&s, &Filter::default()).await.invocations, 5, "read for its span, not counted again");
}

#[tokio::test]
async fn plans_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path());
        let plan = Plan { per_gb_second: 0.5, ..Plan::default() };
        s.set_plan("team", Some(plan.clone())).await.unwrap();
        s.set_plan("*", Some(Plan::default())).await.unwrap();
        s.set_plan("gone", Some(plan)).await.unwrap();
        s.set_plan("gone", None).await.unwrap();
        let quota = Quota { invocations: Some(5), ..serde_json::from_str(r#"{"concurrent": 2}"#).unwrap() };
        s.set_quota("team", Some(quota)).await.unwrap();
    }
    std::thread::sleep(FOLD_INTERVAL * 2);
    let s = store(dir.path());
    let plans = s.plans().await.unwrap();
    assert_eq!(plans.keys().collect::<Vec<_>>(), ["*", "team"]);
    assert_eq!(plans["team"].per_gb_second, 0.5);
    let quotas = s.quotas().await.unwrap();
    assert_eq!(quotas.keys().collect::<Vec<_>>(), ["team"], "plans and quotas apart");
    assert_eq!((quotas["team"].invocations, quotas["team"].concurrent), (Some(5), Some(2)));
}

#[tokio::test]
async fn folds_that_fall_behind_read_the_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = recent(4);
    let all = || Filter::default();
    {
        let s = store(dir.path());
        // Held back by the fold's lock: more than memory may keep.
        let folding = lock(&s.0.folding);
        lock(&s.0.log).pending_max = 10;
        lock(&s.0.log).catch_up_max = 0;
        for i in 0..95 {
            s.record(Entry::Call(record("a", t0 + i, 1_000)));
        }
        assert_eq!(s.stats().pending, 10, "at least that many");
        drop(folding);
        // Read back 10 at a time, then in memory again.
        let mut folds = 0;
        while lock(&s.0.log).pending() > 0 && folds < 100 {
            s.0.fold().unwrap();
            folds += 1;
        }
        assert!(folds < 100);
        assert_eq!(total(&s, &all()).await.invocations, 95);
        for i in 0..5 {
            s.record(Entry::Call(record("a", t0 + 100 + i, 1_000)));
        }
        assert_eq!(s.stats().pending, 5, "in memory again");
        assert_eq!(total(&s, &all()).await.invocations, 100);
        // Behind again, then the process ends.
        let folding = lock(&s.0.folding);
        for i in 0..30 {
            s.record(Entry::Call(record("a", t0 + 200 + i, 1_000)));
        }
        drop(folding);
        s.0.fold().unwrap();
    }
    std::thread::sleep(FOLD_INTERVAL * 2);
    let s = store(dir.path());
    let sums = total(&s, &all()).await;
    assert_eq!(sums.invocations, 130, "each once");
    assert_eq!(sums.mib_us, 130 * 128 * 1_000);
    assert_eq!(s.records(0, u64::MAX / 2, &all(), 1000).await.unwrap().len(), 130);
}

#[test]
fn the_log_is_read_back_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Position::default(), &BTreeMap::new()).unwrap();
    let start = match log.take() {
        Take::Entries { position, .. } => position,
        Take::Behind { .. } => unreachable!(),
    };
    for i in 0..25 {
        log.append(Entry::Call(record("a", i, 1))).unwrap();
    }
    let end = match log.take() {
        Take::Entries { entries, position, .. } => {
            assert_eq!(entries.len(), 25);
            position
        }
        Take::Behind { .. } => unreachable!(),
    };
    let mut at = start;
    let mut starts = Vec::new();
    for _ in 0..3 {
        let (batch, next) = log::read_between(dir.path(), at, end, 10).unwrap();
        assert!(batch.len() <= 10);
        starts.extend(batch.iter().map(|(_, e)| e.key().2));
        at = next;
    }
    assert_eq!(at, end);
    assert_eq!(starts, (0..25).collect::<Vec<_>>(), "each once, in order");
    assert!(log::read_between(dir.path(), at, end, 10).unwrap().0.is_empty());
}

#[test]
fn a_killed_writer_leaves_zeros_that_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Position::default(), &BTreeMap::new()).unwrap();
    assert!(log.is_mapped(), "this file system allocates files");
    // More than one mapped window's worth (4 MiB).
    for i in 0..30_000 {
        log.append(Entry::Call(record("a", i, 1))).unwrap();
    }
    let written = log.offset();
    assert!(written > 4 << 20, "{written}");
    let file = log_path(dir.path(), segments(dir.path()).unwrap()[0]);
    // Killed: nothing cuts the file.
    std::mem::forget(log);
    assert!(std::fs::metadata(&file).unwrap().len() > 64 << 20, "allocated ahead");
    let (log, replayed) = Log::open(dir.path(), Position::default(), &BTreeMap::new()).unwrap();
    assert_eq!(replayed.entries.len(), 30_000);
    assert!(replayed.entries.iter().enumerate().all(|(i, (_, e))| e.key().2 == i as u64), "each, in order");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), written, "cut to what it holds");
    assert_eq!(replayed.spans[0].1.bytes, written);
    drop(log);
    // A clean end cuts the file it wrote.
    let last = log_path(dir.path(), *segments(dir.path()).unwrap().last().unwrap());
    assert_eq!(std::fs::metadata(&last).unwrap().len(), 0);
}

fn log_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("log-{segment:020}.jsonl"))
}

use std::fs::OpenOptions;
use std::io::Write;

fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("log-")?.strip_suffix(".jsonl")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Two gateways' stores, the stream between them played by hand: each
/// entry of A is in B once, whatever is published twice or read twice,
/// across restarts of B; B's own entries are not published back.
#[tokio::test]
async fn entries_shared_between_stores_are_taken_once() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store(dir_a.path());
    let t0 = recent(5);
    for i in 0..10 {
        a.record(Entry::Call(record("fa", t0 + i, 1_000)));
    }
    // A's readings of the replicas: its own, not published.
    a.record(Entry::Cpu(crate::CpuSample {
        function: "fa".into(),
        namespace: "openfaas-fn".into(),
        at_us: t0,
        cpu_us: 5,
        memory_bytes: 0,
    }));
    let origin_a = a.0.origin().to_owned();
    assert_eq!(origin_a.len(), 16);
    let Unpublished { entries: first, to, more } = a.0.unpublished(4).unwrap();
    assert!(more);
    assert_eq!(first.len(), 4, "a batch at most");
    // Not marked published (the acknowledgement was lost): the same again.
    assert_eq!(a.0.unpublished(4).unwrap().entries, first);
    a.0.published(to).unwrap();
    let Unpublished { entries: rest, to, more } = a.0.unpublished(100).unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 6);
    a.0.published(to).unwrap();
    assert!(a.0.unpublished(100).unwrap().entries.is_empty());

    let seq;
    {
        let b = store(dir_b.path());
        assert_ne!(b.0.origin(), origin_a);
        assert_eq!(b.0.next_seq(), 1);
        b.0.receive(&origin_a, 1, first.clone());
        // Published again after A restarted, with more in it: only the new.
        let mut again = first.clone();
        again.extend(rest.iter().take(2).cloned());
        b.0.receive(&origin_a, 2, again);
        // Read again (a consumer made anew from an older sequence).
        b.0.receive(&origin_a, 1, first.clone());
        // Its own, as the stream has them: passed over.
        b.0.receive(b.0.origin(), 3, vec![(1, Entry::Call(record("fb", t0, 1)))]);
        b.record(Entry::Call(record("fb", t0 + 1, 1_000)));
        assert_eq!(b.0.next_seq(), 4);
        assert_eq!(total(&b, &Filter::default()).await.invocations, 7);
        // What B publishes is its own only.
        let own = b.0.unpublished(100).unwrap().entries;
        assert_eq!(own.len(), 1);
        assert!(matches!(&own[0].1, Entry::Call(r) if r.function == "fb"));
        // Taken, not yet folded in, when B stops.
        b.0.receive(&origin_a, 4, rest[2..4].to_vec());
        seq = b.0.next_seq();
    }
    std::thread::sleep(FOLD_INTERVAL * 2);
    let b = store(dir_b.path());
    assert_eq!(b.0.next_seq(), seq, "read on from where it was");
    b.0.receive(&origin_a, 4, rest[2..4].to_vec());
    b.0.receive(&origin_a, 5, rest.clone());
    let sums = total(&b, &Filter::default()).await;
    assert_eq!(sums.invocations, 11, "A's 10 and B's 1, each once");
    let only_a = Filter { function: Some("fa".into()), ..Filter::default() };
    let raw = b.records(0, u64::MAX / 2, &only_a, 100).await.unwrap();
    assert_eq!(
        raw.iter().map(|r| r.start_us).collect::<Vec<_>>(),
        (0..10).map(|i| t0 + i).collect::<Vec<_>>()
    );
    // Shared entries are never published again.
    let own = b.0.unpublished(100).unwrap().entries;
    assert_eq!(own.len(), 1);
}

#[tokio::test]
async fn settings_read_as_json_and_refuse_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let plan = br#"{"perMillionInvocations":1.5}"#;
    s.0.put_setting_json("plan", "team-a", Some(plan)).unwrap();
    assert!(s.plans().await.unwrap().contains_key("team-a"));
    assert_eq!(s.0.settings_json("plan").unwrap().len(), 1);
    assert!(s.0.put_setting_json("plan", "team-b", Some(b"{\"perMillionInvocations\":\"x\"}")).is_err());
    assert!(s.0.put_setting_json("token", "x", Some(b"{}")).is_err());
    s.0.put_setting_json("plan", "team-a", None).unwrap();
    assert!(s.plans().await.unwrap().is_empty());
}
