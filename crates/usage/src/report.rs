//! A store's [`Usage`] as `/system/usage` answers it: rows grouped by
//! function, namespace, hour or day, each with its price, and their total;
//! as JSON or CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::{Plan, Record, Sums, Usage};

/// A raw record with its share of what its function's replicas used in
/// its period (a minute, or an hour for older records): the period's CPU
/// time in proportion to the record's duration among the period's
/// invocations, and the period's peak memory. CPU is sampled every few
/// seconds per function, so a record's share is an estimate; the period's
/// shares add up to its CPU time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Apportioned {
    #[serde(flatten)]
    pub record: Record,
    pub cpu_us: u64,
    pub peak_memory_bytes: u64,
}

/// `records` with their shares of the sums in `usage`.
pub fn apportion(records: Vec<Record>, usage: &Usage) -> Vec<Apportioned> {
    let step = usage.resolution.micros();
    let sums: BTreeMap<(&str, &str, u64), &Sums> = usage
        .buckets
        .iter()
        .map(|b| ((b.namespace.as_str(), b.function.as_str(), b.start_us), &b.sums))
        .collect();
    records
        .into_iter()
        .map(|record| {
            let key = (
                record.namespace.as_str(),
                record.function.as_str(),
                record.start_us - record.start_us % step,
            );
            let (cpu_us, peak_memory_bytes) = match sums.get(&key) {
                Some(s) if s.duration_us > 0 => {
                    let share =
                        u128::from(s.cpu_us) * u128::from(record.duration_us) / u128::from(s.duration_us);
                    (u64::try_from(share).unwrap_or(u64::MAX), s.peak_memory_bytes)
                }
                Some(s) => (0, s.peak_memory_bytes),
                None => (0, 0),
            };
            Apportioned { record, cpu_us, peak_memory_bytes }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Function,
    Namespace,
    Hour,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy, String> {
        match s {
            "function" => Ok(GroupBy::Function),
            "namespace" => Ok(GroupBy::Namespace),
            "hour" => Ok(GroupBy::Hour),
            "day" => Ok(GroupBy::Day),
            other => Err(format!("group_by: {other:?} is not one of function, namespace, hour, day")),
        }
    }
}

/// One row: what it groups, what was used (its sums), and its price.
/// Written with the sums in the API's units (seconds, GB-seconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(into = "RowOut")]
pub struct Row {
    pub namespace: Option<String>,
    pub function: Option<String>,
    /// The start of the hour or day (RFC 3339, UTC).
    pub period: Option<String>,
    pub sums: Sums,
    /// At the namespaces' plans, before their free tiers.
    pub cost: f64,
}

/// A row as the API writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RowOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    invocations: u64,
    errors: u64,
    duration_seconds: f64,
    gb_seconds: f64,
    cpu_seconds: f64,
    /// The most memory one replica held, in MiB.
    peak_memory_mib: f64,
    bytes_in: u64,
    bytes_out: u64,
    cold_starts: u64,
    cold_start_seconds: f64,
    cost: f64,
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1u64 << 20) as f64 * 100.0).round() / 100.0
}

impl From<Row> for RowOut {
    fn from(r: Row) -> RowOut {
        let s = &r.sums;
        RowOut {
            invocations: s.invocations,
            errors: s.errors,
            duration_seconds: s.duration_seconds(),
            gb_seconds: s.gb_seconds(),
            cpu_seconds: s.cpu_seconds(),
            peak_memory_mib: mib(s.peak_memory_bytes),
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            cold_starts: s.cold_starts,
            cold_start_seconds: s.wait_seconds(),
            cost: r.cost,
            namespace: r.namespace,
            function: r.function,
            period: r.period,
        }
    }
}

impl Row {
    fn new(namespace: Option<String>, function: Option<String>, period: Option<String>) -> Row {
        Row { namespace, function, period, sums: Sums::default(), cost: 0.0 }
    }

    fn add(&mut self, sums: &Sums, cost: f64) {
        self.sums.merge(sums);
        self.cost = ((self.cost + cost) * 1e6).round() / 1e6;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The rollups the figures come from: `minute` or `hour`.
    pub resolution: &'static str,
    pub group_by: GroupBy,
    /// The plans' currency (`mixed` if the namespaces' plans differ).
    pub currency: String,
    pub rows: Vec<Row>,
    pub total: Row,
}

/// The plan of `namespace`: its own, else `*`, else free.
pub fn plan_of<'p>(plans: &'p BTreeMap<String, Plan>, namespace: &str) -> Option<&'p Plan> {
    plans.get(namespace).or_else(|| plans.get("*"))
}

/// `us` (µs since the epoch) as the API writes times.
pub fn rfc3339(us: u64) -> String {
    ferrofaas_types::time::format(std::time::UNIX_EPOCH + std::time::Duration::from_micros(us), false)
}

const DAY_US: u64 = 86_400_000_000;
const HOUR_US: u64 = 3_600_000_000;

/// Groups `usage` into rows, priced by `plans`.
pub fn report(usage: &Usage, group_by: GroupBy, plans: &BTreeMap<String, Plan>) -> Report {
    let free = Plan::default();
    let mut groups: BTreeMap<(String, String, u64), Row> = BTreeMap::new();
    let mut total = Row::new(None, None, None);
    let mut currencies = std::collections::BTreeSet::new();
    for b in &usage.buckets {
        let plan = plan_of(plans, &b.namespace).unwrap_or(&free);
        currencies.insert(plan.currency.as_str());
        let cost = plan.gross(&b.sums);
        let key = match group_by {
            GroupBy::Function => (b.namespace.clone(), b.function.clone(), 0),
            GroupBy::Namespace => (b.namespace.clone(), String::new(), 0),
            GroupBy::Hour => (String::new(), String::new(), b.start_us - b.start_us % HOUR_US),
            GroupBy::Day => (String::new(), String::new(), b.start_us - b.start_us % DAY_US),
        };
        let row = groups.entry(key).or_insert_with_key(|(ns, f, start)| match group_by {
            GroupBy::Function => Row::new(Some(ns.clone()), Some(f.clone()), None),
            GroupBy::Namespace => Row::new(Some(ns.clone()), None, None),
            GroupBy::Hour | GroupBy::Day => Row::new(None, None, Some(rfc3339(*start))),
        });
        row.add(&b.sums, cost);
        total.add(&b.sums, cost);
    }
    let currency = match currencies.len() {
        0 => plan_of(plans, "*").map_or("USD", |p| p.currency.as_str()).to_owned(),
        1 => currencies.into_iter().next().unwrap_or("USD").to_owned(),
        _ => "mixed".to_owned(),
    };
    Report {
        from: rfc3339(usage.from_us),
        to: rfc3339(usage.to_us),
        resolution: usage.resolution.as_str(),
        group_by,
        currency,
        rows: groups.into_values().collect(),
        total,
    }
}

/// The report's rows as CSV (RFC 4180), a header line first.
pub fn csv(report: &Report) -> String {
    let key = match report.group_by {
        GroupBy::Function => "namespace,function",
        GroupBy::Namespace => "namespace",
        GroupBy::Hour | GroupBy::Day => "period",
    };
    let mut out = format!(
        "{key},invocations,errors,duration_seconds,gb_seconds,cpu_seconds,peak_memory_mib,bytes_in,\
         bytes_out,cold_starts,cold_start_seconds,cost,currency\r\n"
    );
    for r in &report.rows {
        for field in [&r.namespace, &r.function, &r.period].into_iter().flatten() {
            out.push_str(&csv_field(field));
            out.push(',');
        }
        let t = &r.sums;
        let _ = write!(
            out,
            "{},{},{:.6},{:.6},{:.6},{:.2},{},{},{},{:.6},{:.6},{}\r\n",
            t.invocations,
            t.errors,
            t.duration_seconds(),
            t.gb_seconds(),
            t.cpu_seconds(),
            mib(t.peak_memory_bytes),
            t.bytes_in,
            t.bytes_out,
            t.cold_starts,
            t.wait_seconds(),
            r.cost,
            csv_field(&report.currency)
        );
    }
    out
}

/// A CSV field, quoted if it must be; a leading `=`, `+`, `-` or `@` is
/// escaped so that a spreadsheet does not run it as a formula (names are
/// checked anyway, but the file may be opened anywhere).
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_shared_by_duration() {
        let a = crate::record("f", 60_000_000, 1_000_000);
        let b = crate::record("f", 60_000_001, 3_000_000);
        let other = crate::record("g", 60_000_002, 1_000_000);
        let mut sums = Sums::default();
        sums.add(&crate::Entry::Call(a.clone()));
        sums.add(&crate::Entry::Call(b.clone()));
        sums.cpu_us = 800;
        sums.peak_memory_bytes = 7 << 20;
        let usage = Usage {
            from_us: 0,
            to_us: 120_000_000,
            resolution: crate::Resolution::Minute,
            buckets: vec![crate::Bucket {
                namespace: "openfaas-fn".into(),
                function: "f".into(),
                start_us: 60_000_000,
                sums,
            }],
        };
        let out = apportion(vec![a.clone(), b.clone(), other], &usage);
        assert_eq!(out.iter().map(|r| r.cpu_us).collect::<Vec<_>>(), [200, 600, 0]);
        assert_eq!(out[1].peak_memory_bytes, 7 << 20);
        assert_eq!(out[2].peak_memory_bytes, 0, "no sums of its own");
        let json = serde_json::to_value(&out[0]).unwrap();
        assert_eq!((json["function"].as_str(), json["cpuUs"].as_u64()), (Some("f"), Some(200)));
    }
    use crate::{Bucket, Entry, Resolution};

    fn bucket(ns: &str, f: &str, start_us: u64, n: u64) -> Bucket {
        let mut sums = Sums::default();
        for _ in 0..n {
            sums.add(&Entry::Call(crate::record(f, start_us, 1_000_000)));
        }
        Bucket { namespace: ns.into(), function: f.into(), start_us, sums }
    }

    #[test]
    fn rows_group_and_price() {
        let h = HOUR_US;
        let usage = Usage {
            from_us: 0,
            to_us: 2 * h,
            resolution: Resolution::Minute,
            buckets: vec![bucket("a", "f", 0, 2), bucket("a", "g", 60_000_000, 1), bucket("b", "f", h, 4)],
        };
        let mut plans = BTreeMap::new();
        plans.insert("a".to_owned(), Plan { per_million_invocations: 1e6, ..Plan::default() });
        let r = report(&usage, GroupBy::Function, &plans);
        assert_eq!(r.rows.len(), 3);
        assert_eq!(
            (r.rows[0].function.as_deref(), r.rows[0].sums.invocations, r.rows[0].cost),
            (Some("f"), 2, 2.0)
        );
        assert_eq!(r.rows[2].cost, 0.0, "namespace b has no plan: free");
        assert_eq!((r.total.sums.invocations, r.total.cost), (7, 3.0));
        assert_eq!(r.total.sums.gb_seconds(), 7.0 * 0.125);
        let json = serde_json::to_value(&r.total).unwrap();
        assert_eq!((json["invocations"].as_u64(), json["gbSeconds"].as_f64()), (Some(7), Some(0.875)));
        assert!(json.get("function").is_none() && json.get("sums").is_none(), "{json}");
        let by_ns = report(&usage, GroupBy::Namespace, &plans);
        assert_eq!(by_ns.rows.iter().map(|r| r.sums.invocations).collect::<Vec<_>>(), [3, 4]);
        let by_hour = report(&usage, GroupBy::Hour, &plans);
        assert_eq!(by_hour.rows[1].period.as_deref(), Some("1970-01-01T01:00:00Z"));
        assert_eq!(by_hour.rows.iter().map(|r| r.sums.invocations).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(report(&usage, GroupBy::Day, &plans).rows.len(), 1);
        let text = csv(&by_ns);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("namespace,invocations,errors,"), "{text}");
        assert!(lines[1].starts_with("a,3,0,3.000000,0.375000,"), "{text}");
        assert!(lines[1].ends_with(",3.000000,USD"), "{text}");
    }

    #[test]
    fn csv_fields_cannot_become_formulas() {
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
