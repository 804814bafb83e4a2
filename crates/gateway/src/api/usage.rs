//! `/system/usage` (what was used, grouped and priced; JSON or CSV),
//! `/system/usage/records` (the raw records), `/system/usage/bill` (a
//! namespace's month) and `/system/plans` (the price plans).

use std::sync::Arc;

use ferrofaas_usage::report::{self, GroupBy};
use ferrofaas_usage::{Filter, Meter, Plan, Quota, UsageError};
use http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use super::{Query, json, read_json, status};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

fn meter(gw: &Gateway) -> Result<&Arc<dyn Meter>, ApiError> {
    gw.meter().ok_or_else(|| ApiError::not_found("usage metering is not enabled on this gateway"))
}

fn usage_error(e: UsageError) -> ApiError {
    match e {
        UsageError::Invalid(m) => ApiError::bad_request(m),
        e => {
            tracing::warn!(error = %e, "usage store");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the usage store failed; see the gateway's log")
        }
    }
}

const HOUR_US: u64 = 3_600_000_000;

/// A time of a query: RFC 3339, seconds since the epoch, or a duration
/// before now (`90m`, `24h`, `7d`).
fn time_of(field: &str, value: &str, now_us: u64) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::invalid(
            field,
            &format!(
                "{value:?} is not a time: use RFC 3339, seconds since the epoch, or a duration ago (24h, 7d)"
            ),
        )
    };
    if let Ok(secs) = value.parse::<u64>() {
        return secs.checked_mul(1_000_000).ok_or_else(bad);
    }
    if let Some(t) = ferrofaas_types::time::parse(value) {
        let us = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?.as_micros();
        return u64::try_from(us).map_err(|_| bad());
    }
    let ago = ferrofaas_types::duration::parse_days(value).ok_or_else(bad)?;
    Ok(now_us.saturating_sub(u64::try_from(ago.as_micros()).map_err(|_| bad())?))
}

/// The range and the functions a query names (`from` defaults to a day
/// ago, `to` to now).
fn range_and_filter(query: &Query) -> Result<(u64, u64, Filter), ApiError> {
    let now = ferrofaas_usage::now_us();
    let to = query.get("to").map_or(Ok(now), |v| time_of("to", v, now))?;
    let from = query.get("from").map_or(Ok(to.saturating_sub(24 * HOUR_US)), |v| time_of("from", v, now))?;
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let namespace = query.get("namespace").map(str::to_owned);
    if let Some(ns) = &namespace {
        super::valid_namespace(ns)?;
    }
    let function = query.get("function").map(str::to_owned);
    if let Some(f) = &function {
        ferrofaas_types::names::validate_function_name(f)
            .map_err(|e| ApiError::invalid("function", &e.to_string()))?;
    }
    Ok((from, to, Filter { namespace, function }))
}

fn wants_csv(req: &Request<Incoming>, query: &Query) -> bool {
    query.get("format") == Some("csv")
        || req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// `GET /system/usage?from=&to=&namespace=&function=&group_by=`.
pub async fn usage(gw: &Gateway, req: &Request<Incoming>, query: &Query) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    let (from, to, filter) = range_and_filter(query)?;
    let group_by = GroupBy::parse(query.get("group_by").unwrap_or("function"))
        .map_err(|e| ApiError::invalid("group_by", e.trim_start_matches("group_by: ")))?;
    let usage = meter.usage(from, to, &filter).await.map_err(usage_error)?;
    let plans = meter.plans().await.map_err(usage_error)?;
    let report = report::report(&usage, group_by, &plans);
    if wants_csv(req, query) {
        let mut resp = Response::new(Body::full(report::csv(&report)));
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"usage.csv\""));
        return Ok(resp);
    }
    Ok(json(StatusCode::OK, &report))
}

/// Most raw records one request returns.
const MAX_RECORDS: usize = 10_000;

/// `GET /system/usage/records?from=&to=&namespace=&function=&limit=`.
pub async fn records(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    let (from, to, filter) = range_and_filter(query)?;
    let limit = match query.get("limit") {
        None => 100,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_RECORDS).contains(n)).ok_or_else(|| {
            ApiError::invalid("limit", &format!("{v:?} is not a number from 1 to {MAX_RECORDS}"))
        })?,
    };
    let records = meter.records(from, to, &filter, limit).await.map_err(usage_error)?;
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(json(StatusCode::OK, &records));
    };
    // The sums of the periods the records are in, for their shares.
    let usage = meter.usage(first.start_us, last.start_us + 1, &filter).await.map_err(usage_error)?;
    Ok(json(StatusCode::OK, &report::apportion(records, &usage)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MonthBill {
    namespace: String,
    month: String,
    from: String,
    to: String,
    plan: Plan,
    #[serde(flatten)]
    bill: ferrofaas_usage::Bill,
    functions: Vec<report::Row>,
}

/// The first microsecond of `month` (`YYYY-MM`, UTC) and of the next.
fn month_range(month: &str) -> Option<(u64, u64)> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i16, i8) = (y.parse().ok()?, m.parse().ok()?);
    if month.len() != 7 {
        return None;
    }
    ferrofaas_usage::quota::month_window(y, m)
}

/// `GET /system/usage/bill?namespace=&month=YYYY-MM`: a namespace's month
/// at its plan, the free tier taken off.
pub async fn bill(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    let namespace = query.get("namespace").unwrap_or(ferrofaas_types::names::DEFAULT_NAMESPACE).to_owned();
    super::valid_namespace(&namespace)?;
    let month = match query.get("month") {
        Some(m) => m.to_owned(),
        None => jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).strftime("%Y-%m").to_string(),
    };
    let (from, to) = month_range(&month)
        .ok_or_else(|| ApiError::invalid("month", &format!("{month:?} is not a month such as 2026-12")))?;
    let filter = Filter { namespace: Some(namespace.clone()), function: None };
    let usage = meter.usage(from, to, &filter).await.map_err(usage_error)?;
    let plans = meter.plans().await.map_err(usage_error)?;
    let plan = report::plan_of(&plans, &namespace).cloned().unwrap_or_default();
    let report = report::report(&usage, GroupBy::Function, &plans);
    Ok(json(
        StatusCode::OK,
        &MonthBill {
            bill: plan.bill(&report.total.sums),
            namespace,
            month,
            from: report::rfc3339(from),
            to: report::rfc3339(to),
            plan,
            functions: report.rows,
        },
    ))
}

/// `GET /system/plans`: every namespace's plan, `*` for the others.
pub async fn plans(gw: &Gateway) -> Result<Response<Body>, ApiError> {
    let plans = meter(gw)?.plans().await.map_err(usage_error)?;
    Ok(json(StatusCode::OK, &plans))
}

fn plan_namespace(segment: &str) -> Result<&str, ApiError> {
    if segment != "*" {
        super::valid_namespace(segment)?;
    }
    Ok(segment)
}

/// `PUT /system/plans/<namespace>` (or `*`): sets its plan.
pub async fn set_plan(
    gw: &Gateway,
    segment: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    let namespace = plan_namespace(segment)?;
    let plan: Plan = read_json(req, gw.config.max_api_body).await?;
    plan.validate().map_err(|e| {
        let (field, why) = e.split_once(": ").unwrap_or(("plan", &e));
        ApiError::invalid(field, why)
    })?;
    meter.set_plan(namespace, Some(plan.clone())).await.map_err(usage_error)?;
    Ok(json(StatusCode::OK, &plan))
}

/// `DELETE /system/plans/<namespace>`.
pub async fn remove_plan(gw: &Gateway, segment: &str) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    let namespace = plan_namespace(segment)?;
    if !meter.plans().await.map_err(usage_error)?.contains_key(namespace) {
        return Err(ApiError::not_found(format!("namespace {namespace:?} has no plan of its own")));
    }
    meter.set_plan(namespace, None).await.map_err(usage_error)?;
    Ok(status(StatusCode::NO_CONTENT))
}

/// `GET /system/quotas[?namespace=]`: each quota and what its period has
/// used (a token sees its namespace's).
pub fn quotas(gw: &Gateway, query: &Query) -> Result<Response<Body>, ApiError> {
    meter(gw)?;
    let only = query.get("namespace");
    let states: std::collections::BTreeMap<String, crate::quota::QuotaState> =
        gw.quotas().states().into_iter().filter(|(ns, _)| only.is_none_or(|o| o == ns)).collect();
    Ok(json(StatusCode::OK, &states))
}

/// What `namespace` has used in its quota's current period: invocations
/// and MiB-µs, from the store.
async fn used(meter: &Arc<dyn Meter>, namespace: &str, quota: &Quota) -> Result<(u64, u64), ApiError> {
    let now = ferrofaas_usage::now_us();
    let (start, _) = quota.period.window(now);
    let filter = Filter { namespace: Some(namespace.to_owned()), function: None };
    let usage = meter.usage(start, now + 1, &filter).await.map_err(usage_error)?;
    let mut sums = ferrofaas_usage::Sums::default();
    for b in usage.buckets.iter().filter(|b| b.start_us >= start) {
        sums.merge(&b.sums);
    }
    Ok((sums.invocations, sums.mib_us))
}

/// `PUT /system/quotas/<namespace>`: sets its quota, enforced at once.
pub async fn set_quota(
    gw: &Gateway,
    namespace: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    super::valid_namespace(namespace)?;
    let quota: Quota = read_json(req, gw.config.max_api_body).await?;
    quota.validate().map_err(|e| {
        let (field, why) = e.split_once(": ").unwrap_or(("quota", &e));
        ApiError::invalid(field, why)
    })?;
    meter.set_quota(namespace, Some(quota.clone())).await.map_err(usage_error)?;
    let used = used(meter, namespace, &quota).await?;
    gw.quotas().set(namespace, Some(quota), used);
    let state = gw.quotas().states().into_iter().find(|(ns, _)| ns == namespace).map(|(_, s)| s);
    Ok(json(StatusCode::OK, &state))
}

/// `DELETE /system/quotas/<namespace>`.
pub async fn remove_quota(gw: &Gateway, namespace: &str) -> Result<Response<Body>, ApiError> {
    let meter = meter(gw)?;
    if !meter.quotas().await.map_err(usage_error)?.contains_key(namespace) {
        return Err(ApiError::not_found(format!("namespace {namespace:?} has no quota")));
    }
    meter.set_quota(namespace, None).await.map_err(usage_error)?;
    gw.quotas().set(namespace, None, (0, 0));
    Ok(status(StatusCode::NO_CONTENT))
}

/// At start: the stored quotas, with what their periods have used so far.
pub async fn restore_quotas(gw: &Gateway) {
    let Some(meter) = gw.meter() else { return };
    let quotas = match meter.quotas().await {
        Ok(quotas) => quotas,
        Err(e) => {
            tracing::error!(error = %e, "could not read the quotas: none is enforced");
            return;
        }
    };
    for (namespace, quota) in quotas {
        let used = used(meter, &namespace, &quota).await.unwrap_or_else(|e| {
            tracing::warn!(%namespace, error = %e.message, "could not read the quota's use so far");
            (0, 0)
        });
        gw.quotas().set(&namespace, Some(quota), used);
    }
}

/// How often a gateway sharing its store with others reads the quotas and
/// what their periods have used anew.
pub const QUOTA_REFRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// For a store shared with other gateways: every [`QUOTA_REFRESH`], the
/// quotas as the store has them (set through any gateway), and their
/// counts raised to what the store holds (calls through every gateway),
/// so a namespace stops at its limit whichever gateways its calls go
/// through, past it by at most what the others admitted since.
pub async fn follow_quotas(gw: Arc<Gateway>, shutdown: tokio_util::sync::CancellationToken) {
    let Some(meter) = gw.meter().filter(|m| m.shared()).cloned() else { return };
    let mut tick = tokio::time::interval(QUOTA_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let quotas = match meter.quotas().await {
            Ok(quotas) => quotas,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the quotas");
                continue;
            }
        };
        for (namespace, _) in gw.quotas().states() {
            if !quotas.contains_key(&namespace) {
                gw.quotas().set(&namespace, None, (0, 0));
            }
        }
        for (namespace, quota) in quotas {
            match used(&meter, &namespace, &quota).await {
                Ok(used) => gw.quotas().refresh(&namespace, quota, used),
                Err(e) => tracing::warn!(%namespace, error = %e.message, "could not read a quota's use"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_months() {
        let now = 1_000 * 86_400_000_000;
        assert_eq!(time_of("from", "60", now).unwrap(), 60_000_000);
        assert_eq!(time_of("from", "2h", now).unwrap(), now - 2 * HOUR_US);
        assert_eq!(time_of("from", "7d", now).unwrap(), now - 7 * 24 * HOUR_US);
        assert_eq!(time_of("from", "1970-01-01T00:01:00Z", now).unwrap(), 60_000_000);
        assert_eq!(time_of("from", "soon", now).unwrap_err().field.as_deref(), Some("from"));
        let (a, b) = month_range("1970-02").unwrap();
        assert_eq!((a, b), (31 * 86_400_000_000, 59 * 86_400_000_000));
        assert!(
            month_range("1970-13").is_none() && month_range("1970-2").is_none() && month_range("x").is_none()
        );
    }
}
