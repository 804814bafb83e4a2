//! `POST /system/alert`: scaling by AlertManager's webhook, as OpenFaaS's
//! gateway takes it, for users who keep their own alert rules.
//!
//! Each alert names a function in its `function_name` label. A firing alert
//! adds `com.openfaas.scale.factor` percent (default 20) of the function's
//! `com.openfaas.scale.max` replicas, up to that max; a resolved one brings
//! it back to `com.openfaas.scale.min`.

use std::collections::BTreeMap;

use ferrofaas_types::FunctionRef;
use ferrofaas_types::scaling::{AlertScaling, ScalingPolicy};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{json, read_json};
use crate::body::Body;
use crate::error::ApiError;
use crate::gateway::Gateway;

#[derive(Deserialize)]
struct Webhook {
    #[serde(default)]
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What happened to one alert's function.
#[derive(Serialize)]
struct Outcome {
    function: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The replicas an alert asks for, from `current`.
fn replicas_for(firing: bool, current: u64, policy: &ScalingPolicy, factor: u64) -> u64 {
    if !firing {
        return policy.min;
    }
    let step = AlertScaling { factor }.step(policy.max);
    current.saturating_add(step).min(policy.max)
}

pub async fn post(gw: &Gateway, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let hook: Webhook = read_json(req, gw.config.max_api_body).await?;
    if hook.alerts.is_empty() {
        return Err(ApiError::bad_request("alerts: the webhook carries no alert"));
    }
    let mut outcomes = Vec::new();
    for alert in hook.alerts {
        let name = alert.labels.get("function_name").cloned().unwrap_or_default();
        let mut outcome = Outcome {
            function: name.clone(),
            status: alert.status.clone(),
            from: None,
            to: None,
            error: None,
        };
        let firing = match alert.status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => {
                outcome.error = Some(format!("status {other:?} is neither firing nor resolved"));
                outcomes.push(outcome);
                continue;
            }
        };
        let function = match FunctionRef::parse(&name) {
            Ok(f) => f,
            Err(e) => {
                outcome.error = Some(format!("labels.function_name: {e}"));
                outcomes.push(outcome);
                continue;
            }
        };
        let status = match gw.provider.status(&function).await {
            Ok(s) => s,
            Err(e) => {
                outcome.error = Some(e.to_string());
                outcomes.push(outcome);
                continue;
            }
        };
        // Its policies as its route carries them (read when it was deployed).
        let policies = gw.provider.routes().get(&function.name, &function.namespace).map(|r| r.policies());
        let policy = policies.map(|p| p.scaling.clone()).unwrap_or_default();
        let factor = policy.factor;
        let to = if factor == 0 {
            status.replicas
        } else {
            replicas_for(firing, status.replicas, &policy, factor)
        };
        outcome.from = Some(status.replicas);
        outcome.to = Some(to);
        if to != status.replicas {
            match gw.provider.scale(&function, to).await {
                Ok(()) => tracing::info!(%function, from = status.replicas, to, firing, "scaled by an alert"),
                Err(e) => outcome.error = Some(e.to_string()),
            }
        }
        outcomes.push(outcome);
    }
    Ok(json(StatusCode::OK, &outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_adds_a_fifth_of_max_and_resolved_goes_to_min() {
        let p = ScalingPolicy { min: 1, max: 20, ..ScalingPolicy::default() };
        assert_eq!(replicas_for(true, 1, &p, 20), 5);
        assert_eq!(replicas_for(true, 17, &p, 20), 20);
        assert_eq!(replicas_for(false, 17, &p, 20), 1);
        let small = ScalingPolicy { min: 1, max: 3, ..ScalingPolicy::default() };
        assert_eq!(replicas_for(true, 1, &small, 20), 2, "at least one step");
    }
}
