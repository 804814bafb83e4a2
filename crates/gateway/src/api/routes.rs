//! The routes of `/system/*`: one table of (method, path) -> operation,
//! read from the top. A path that some route takes with another method is a
//! 405 whose `Allow` lists, from the same table, the methods it does take.
//!
//! Who may do what is here too ([`need`]): the admin everything; a token
//! what its role allows, in its namespace only. A token's request is
//! scoped before any handler sees it: its query's `namespace` is the
//! token's (another is a 403), and so is the `namespace` of its JSON body
//! (read by [`super::read_json`]).

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::{Query, Scope, alert, asynchronous, bundles, functions, logs, secrets, system, tokens, usage};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::tokens::{Caller, Role};

/// A path: exactly this, or a prefix, one segment (a name, an id) and a
/// suffix.
enum Path {
    Exact(&'static str),
    Param(&'static str, &'static str),
}

impl Path {
    /// `None` if `path` is not this one; else the segment, if it has one.
    fn matches<'p>(&self, path: &'p str) -> Option<Option<&'p str>> {
        match *self {
            Path::Exact(p) => (path == p).then_some(None),
            Path::Param(prefix, suffix) => {
                let segment = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
                (!segment.is_empty() && !segment.contains('/')).then_some(Some(segment))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Info,
    Namespaces,
    ListFunctions,
    Deploy,
    Update,
    Remove,
    GetFunction,
    FunctionHistory,
    Scale,
    ListSecrets,
    CreateSecret,
    UpdateSecret,
    RemoveSecret,
    Logs,
    Alert,
    ListBundles,
    PushBundle,
    DeadLetters,
    CallStatus,
    RemoveDeadLetter,
    ReplayDeadLetter,
    Usage,
    UsageRecords,
    Bill,
    Plans,
    SetPlan,
    RemovePlan,
    Quotas,
    SetQuota,
    RemoveQuota,
    ListTokens,
    CreateToken,
    RevokeToken,
}

/// Who may run an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// The gateway's admin (basic auth) only: what is not one namespace's
    /// (bundles, whose names all namespaces share; the queue's dead
    /// letters; plans and quotas).
    Admin,
    /// The admin, or a token of at least this role.
    At(Role),
}

fn need(op: Op) -> Need {
    use Op::*;
    match op {
        Info | Namespaces | ListFunctions | GetFunction | FunctionHistory | ListSecrets | Logs | Usage
        | UsageRecords | Bill | Quotas => Need::At(Role::Read),
        Deploy | Update | Remove | Scale | CreateSecret | UpdateSecret | RemoveSecret => {
            Need::At(Role::Deploy)
        }
        ListTokens | CreateToken | RevokeToken => Need::At(Role::Admin),
        Alert | ListBundles | PushBundle | DeadLetters | CallStatus | RemoveDeadLetter | ReplayDeadLetter
        | Plans | SetPlan | RemovePlan | SetQuota | RemoveQuota => Need::Admin,
    }
}

/// Whether the path's segment names a function (`name[.namespace]`).
fn names_function(op: Op) -> bool {
    matches!(op, Op::GetFunction | Op::FunctionHistory | Op::Scale)
}

use Path::{Exact, Param};

/// First match wins: an exact path before a segment that could read it.
const ROUTES: &[(Method, Path, Op)] = &[
    (Method::GET, Exact("/system/info"), Op::Info),
    (Method::GET, Exact("/system/namespaces"), Op::Namespaces),
    (Method::GET, Exact("/system/functions"), Op::ListFunctions),
    (Method::POST, Exact("/system/functions"), Op::Deploy),
    (Method::PUT, Exact("/system/functions"), Op::Update),
    (Method::DELETE, Exact("/system/functions"), Op::Remove),
    (Method::GET, Param("/system/function/", ""), Op::GetFunction),
    (Method::GET, Param("/system/function-history/", ""), Op::FunctionHistory),
    (Method::POST, Param("/system/scale-function/", ""), Op::Scale),
    (Method::GET, Exact("/system/secrets"), Op::ListSecrets),
    (Method::POST, Exact("/system/secrets"), Op::CreateSecret),
    (Method::PUT, Exact("/system/secrets"), Op::UpdateSecret),
    (Method::DELETE, Exact("/system/secrets"), Op::RemoveSecret),
    (Method::GET, Exact("/system/logs"), Op::Logs),
    (Method::POST, Exact("/system/alert"), Op::Alert),
    (Method::GET, Exact("/system/bundles"), Op::ListBundles),
    (Method::POST, Exact("/system/bundles"), Op::PushBundle),
    (Method::PUT, Exact("/system/bundles"), Op::PushBundle),
    (Method::GET, Exact("/system/async/dead-letters"), Op::DeadLetters),
    (Method::DELETE, Param("/system/async/dead-letters/", ""), Op::RemoveDeadLetter),
    (Method::POST, Param("/system/async/dead-letters/", "/replay"), Op::ReplayDeadLetter),
    (Method::GET, Param("/system/async/", ""), Op::CallStatus),
    (Method::GET, Exact("/system/usage"), Op::Usage),
    (Method::GET, Exact("/system/usage/records"), Op::UsageRecords),
    (Method::GET, Exact("/system/usage/bill"), Op::Bill),
    (Method::GET, Exact("/system/plans"), Op::Plans),
    (Method::PUT, Param("/system/plans/", ""), Op::SetPlan),
    (Method::DELETE, Param("/system/plans/", ""), Op::RemovePlan),
    (Method::GET, Exact("/system/quotas"), Op::Quotas),
    (Method::PUT, Param("/system/quotas/", ""), Op::SetQuota),
    (Method::DELETE, Param("/system/quotas/", ""), Op::RemoveQuota),
    (Method::GET, Exact("/system/tokens"), Op::ListTokens),
    (Method::POST, Exact("/system/tokens"), Op::CreateToken),
    (Method::DELETE, Param("/system/tokens/", ""), Op::RevokeToken),
];

/// The operation `method` and `path` name, with the path's segment: a 404
/// if no route has the path, a 405 (with `Allow`) if none has the method.
fn find<'p>(method: &Method, path: &'p str) -> Result<(Op, &'p str), ApiError> {
    let routes = || ROUTES.iter().filter_map(|(m, pattern, op)| Some((m, pattern.matches(path)?, op)));
    if let Some((_, segment, op)) = routes().find(|(m, ..)| *m == method) {
        return Ok((*op, segment.unwrap_or("")));
    }
    // Only for an answer that is not a route: what the path does take.
    let mut allowed: Vec<&str> = Vec::new();
    for (m, ..) in routes() {
        if !allowed.contains(&m.as_str()) {
            allowed.push(m.as_str());
        }
    }
    if allowed.is_empty() {
        return Err(ApiError::not_found(format!("no route for {path}")));
    }
    Err(ApiError::method_not_allowed(&allowed.join(", ")))
}

/// Refuses what `caller` may not do, and scopes a token's request to its
/// namespace.
fn authorize(
    caller: &Caller,
    op: Op,
    segment: &str,
    query: &mut Query,
    req: &mut Request<Incoming>,
) -> Result<(), ApiError> {
    let Caller::Token { namespace, role, .. } = caller else { return Ok(()) };
    let forbidden = |m: String| ApiError::new(http::StatusCode::FORBIDDEN, m);
    match need(op) {
        Need::Admin => {
            return Err(forbidden(format!(
                "{} {} needs the gateway's admin credentials, not a token",
                req.method(),
                req.uri().path()
            )));
        }
        Need::At(wanted) if *role < wanted => {
            return Err(forbidden(format!(
                "this token's role is {}: {} {} needs {} or more",
                role.as_str(),
                req.method(),
                req.uri().path(),
                wanted.as_str()
            )));
        }
        Need::At(_) => {}
    }
    let other = |ns: &str| forbidden(format!("this token is for namespace {namespace}, not {ns}"));
    match query.get("namespace") {
        Some(ns) if ns != namespace => return Err(other(ns)),
        _ => query.set("namespace", namespace),
    }
    if names_function(op)
        && let Some((_, ns)) = segment.split_once('.')
        && ns != namespace
    {
        return Err(other(ns));
    }
    req.extensions_mut().insert(Scope(namespace.clone()));
    Ok(())
}

/// Answers a request to `/system/*` of `caller` (authenticated).
pub async fn handle(
    gw: &Gateway,
    mut req: Request<Incoming>,
    caller: Caller,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let (op, segment) = find(req.method(), &path)?;
    let mut query = Query::parse(req.uri().query())?;
    authorize(&caller, op, segment, &mut query, &mut req)?;
    match op {
        Op::Info => Ok(system::info(gw)),
        Op::Namespaces => match &caller {
            Caller::Token { namespace, .. } => Ok(super::json(http::StatusCode::OK, &[namespace])),
            Caller::Admin => system::namespaces(gw).await,
        },
        Op::ListFunctions => functions::list(gw, &query).await,
        Op::Deploy => functions::deploy(gw, req, true).await,
        Op::Update => functions::deploy(gw, req, false).await,
        Op::Remove => functions::delete(gw, req).await,
        Op::GetFunction => functions::get(gw, segment, &query).await,
        Op::FunctionHistory => functions::history(gw, segment, &query),
        Op::Scale => functions::scale(gw, segment, &query, req).await,
        Op::ListSecrets => secrets::list(gw, &query).await,
        Op::CreateSecret => secrets::create(gw, req).await,
        Op::UpdateSecret => secrets::update(gw, req).await,
        Op::RemoveSecret => secrets::delete(gw, req).await,
        Op::Logs => logs::get(gw, &query).await,
        Op::Alert => alert::post(gw, req).await,
        Op::ListBundles => bundles::list(gw).await,
        Op::PushBundle => bundles::push(gw, req).await,
        Op::DeadLetters => asynchronous::dead_letters(gw).await,
        Op::CallStatus => asynchronous::status_of(gw, segment).await,
        Op::RemoveDeadLetter => asynchronous::delete_dead_letter(gw, segment).await,
        Op::ReplayDeadLetter => asynchronous::replay(gw, segment).await,
        Op::Usage => usage::usage(gw, &req, &query).await,
        Op::UsageRecords => usage::records(gw, &query).await,
        Op::Bill => usage::bill(gw, &query).await,
        Op::Plans => usage::plans(gw).await,
        Op::SetPlan => usage::set_plan(gw, segment, req).await,
        Op::RemovePlan => usage::remove_plan(gw, segment).await,
        Op::Quotas => usage::quotas(gw, &query),
        Op::SetQuota => usage::set_quota(gw, segment, req).await,
        Op::RemoveQuota => usage::remove_quota(gw, segment).await,
        Op::ListTokens => tokens::list(gw, &query),
        Op::CreateToken => tokens::create(gw, req, &caller).await,
        Op::RevokeToken => tokens::revoke(gw, segment, &caller).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, path: &str) -> Result<(Op, &str), (u16, Option<String>)> {
        find(&method, path).map_err(|e| (e.status.as_u16(), e.allow))
    }

    #[test]
    fn the_table_routes_and_says_what_is_allowed() {
        assert_eq!(op(Method::GET, "/system/functions"), Ok((Op::ListFunctions, "")));
        assert_eq!(op(Method::GET, "/system/function/wc"), Ok((Op::GetFunction, "wc")));
        assert_eq!(op(Method::GET, "/system/function/a/b"), Err((404, None)));
        assert_eq!(op(Method::GET, "/system/function/"), Err((404, None)));
        assert_eq!(
            op(Method::PATCH, "/system/functions"),
            Err((405, Some("GET, POST, PUT, DELETE".to_owned())))
        );
        assert_eq!(op(Method::GET, "/system/async/dead-letters"), Ok((Op::DeadLetters, "")));
        assert_eq!(op(Method::GET, "/system/async/abc"), Ok((Op::CallStatus, "abc")));
        assert_eq!(op(Method::DELETE, "/system/async/dead-letters/abc"), Ok((Op::RemoveDeadLetter, "abc")));
        assert_eq!(
            op(Method::POST, "/system/async/dead-letters/abc/replay"),
            Ok((Op::ReplayDeadLetter, "abc"))
        );
        assert_eq!(op(Method::GET, "/system/async/dead-letters/abc"), Err((405, Some("DELETE".to_owned()))));
        assert_eq!(op(Method::GET, "/system/nothing"), Err((404, None)));
    }
}
