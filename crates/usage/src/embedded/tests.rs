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
    assert_eq!(segments(dir.path()).unwrap().len(), 1, "folded logs are deleted");
    let raw = s.records(t0, t0 + 2 * MIN, &only_b, 10).await.unwrap();
    assert_eq!(raw.len(), 10);
    assert!(raw.iter().all(|r| r.function == "b"));
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
    }));
    let usage = s.usage(t0, t0 + 3 * MIN, &Filter::default()).await.unwrap();
    assert_eq!(usage.resolution, Resolution::Minute);
    let per_minute: Vec<u64> = usage.buckets.iter().map(|b| b.sums.invocations).collect();
    assert_eq!(per_minute, [1, 2, 3]);
    assert_eq!(usage.buckets[0].sums.cpu_us, 700);
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
    };
    let s = Store(open(dir.path(), retention).unwrap());
    let now = crate::now_us();
    let old = now - 3 * 3_600_000_000;
    s.record(Entry::Call(record("a", old, 1)));
    s.record(Entry::Call(record("a", now, 1)));
    s.0.fold().unwrap();
    s.0.sweep(now).unwrap();
    assert_eq!(s.records(0, u64::MAX / 2, &Filter::default(), 10).await.unwrap().len(), 1);
    let hours = s.usage(0, u64::MAX / 2, &Filter::default()).await.unwrap();
    assert_eq!(hours.buckets.iter().map(|b| b.sums.invocations).sum::<u64>(), 2, "hours are kept");
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
