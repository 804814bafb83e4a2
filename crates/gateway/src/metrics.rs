//! `/metrics`: OpenFaaS's gateway metric names, from the routes' statistics,
//! and the autoscaler's: replicas wanted and ready, the target load, time
//! spent waiting for a replica and starts from zero; and the asynchronous
//! queue's.

use std::fmt;
use std::sync::Arc;

use ferrofaas_provider::{FunctionRoute, Provider};
use ferrofaas_queue::QueueStats;
use ferrofaas_triggers::broker::TopicStats;
use ferrofaas_triggers::schedule::TriggerStats;
use ferrofaas_types::FunctionRef;
use ferrofaas_types::prom::{self, Histogram, Kind};

/// The metrics page, from what the routes (and the queue, if there is one)
/// count now.
pub fn render(
    provider: &dyn Provider,
    queue: Option<QueueStats>,
    triggers: Vec<(FunctionRef, TriggerStats)>,
    topics: Vec<((String, String), TopicStats)>,
    meter: Option<ferrofaas_usage::MeterStats>,
) -> String {
    let routes = provider.routes().all();
    let functions = routes
        .into_iter()
        .map(|route| Function { name: route.function.to_string(), by_code: route.stats.snapshot(), route })
        .collect();
    let triggers = triggers.into_iter().map(|(f, stats)| (f.to_string(), stats)).collect();
    prom::render(Figures { functions, queue, triggers, topics, meter })
}

/// What a scrape read.
struct Figures {
    functions: Vec<Function>,
    queue: Option<QueueStats>,
    /// Each scheduled function (`name.namespace`) and what its schedule did.
    triggers: Vec<(String, TriggerStats)>,
    /// Each broker subscription: (connector, topic) and what it did.
    topics: Vec<((String, String), TopicStats)>,
    /// Usage metering's counts, if it is on.
    meter: Option<ferrofaas_usage::MeterStats>,
}

struct Function {
    /// `name.namespace`, OpenFaaS's `function_name` label.
    name: String,
    route: Arc<FunctionRoute>,
    by_code: Vec<(u16, Histogram)>,
}

type Labels<'a> = [(&'static str, &'a str); 1];
/// `code` and `function_name`.
type CodeLabels<'a> = ([(&'static str, u16); 1], Labels<'a>);

impl Figures {
    /// One series per function: `function_name` and a figure of its route.
    fn per_function<'a>(
        &'a self,
        value: impl Fn(&FunctionRoute) -> u64 + 'a,
    ) -> impl Iterator<Item = (Labels<'a>, u64)> + 'a {
        self.functions.iter().map(move |f| ([("function_name", f.name.as_str())], value(&f.route)))
    }

    /// One series per function and status code (labels borrowed: a scrape
    /// allocates nothing per series).
    fn per_code(&self) -> impl Iterator<Item = (CodeLabels<'_>, Histogram)> + '_ {
        self.functions.iter().flat_map(|f| {
            f.by_code.iter().map(|&(code, h)| (([("code", code)], [("function_name", f.name.as_str())]), h))
        })
    }
}

impl prom::Page for Figures {
    fn write(&self, f: &mut prom::Families<'_>) -> fmt::Result {
        f.values(
            "gateway_function_invocation",
            Kind::Counter,
            "Invocations of each function, by status code.",
            self.per_code().map(|(labels, h)| (labels, h.count)),
        )?;
        f.histograms(
            "gateway_functions_seconds",
            "Duration of invocations, by status code.",
            self.per_code(),
        )?;
        f.values(
            "gateway_function_invocation_started",
            Kind::Untyped,
            "Invocations started, per function.",
            self.per_function(|r| r.stats.started_total()),
        )?;
        f.values(
            "gateway_function_invocation_inflight",
            Kind::Gauge,
            "Invocations in flight, per function.",
            self.per_function(|r| r.stats.in_flight().unsigned_abs()),
        )?;
        f.values(
            "gateway_service_count",
            Kind::Gauge,
            "Replicas of each function (desired).",
            self.per_function(FunctionRoute::desired),
        )?;
        f.values(
            "gateway_service_ready_count",
            Kind::Gauge,
            "Replicas of each function ready for requests.",
            self.per_function(|r| r.ready_count() as u64),
        )?;
        f.values(
            "gateway_service_target_load",
            Kind::Gauge,
            "The load per replica each function is scaled to (com.openfaas.scale.target), by scaling type; \
             for Community Edition's rule (scaling_type alert), the requests per second of all its replicas \
             above which it fires.",
            self.functions.iter().map(|f| {
                let policies = f.route.policies();
                let policy = &policies.scaling;
                let (kind, target) = match policy.alert {
                    Some(_) => ("alert", ferrofaas_types::scaling::AlertScaling::RATE),
                    None => (policy.kind.as_str(), policy.target),
                };
                ([("function_name", f.name.as_str()), ("scaling_type", kind)], target)
            }),
        )?;
        f.histograms(
            "gateway_function_cold_start_seconds",
            "Time invocations waited for a ready replica (starting, or started from zero).",
            self.functions.iter().map(|f| ([("function_name", f.name.as_str())], f.route.stats.waits())),
        )?;
        f.values(
            "gateway_function_cold_starts",
            Kind::Counter,
            "Starts of each function from zero replicas.",
            self.per_function(|r| r.stats.cold_starts()),
        )?;
        if let Some(meter) = &self.meter {
            f.values(
                "gateway_function_gb_seconds",
                Kind::Counter,
                "Memory times duration of each function's invocations (GB-seconds, as usage is billed).",
                self.functions.iter().map(|f| {
                    (
                        [("function_name", f.name.as_str())],
                        ferrofaas_usage::gb_seconds(f.route.stats.mib_us()),
                    )
                }),
            )?;
            f.values(
                "gateway_usage_records",
                Kind::Counter,
                "Usage records handed to the meter.",
                [([("state", "recorded")], meter.records), ([("state", "unlogged")], meter.unlogged)],
            )?;
            f.values(
                "gateway_usage_pending",
                Kind::Gauge,
                "Usage records logged, not yet folded into the usage tables.",
                [([] as [(&str, &str); 0], meter.pending)],
            )?;
        }
        let per_trigger = |value: fn(&TriggerStats) -> u64| {
            self.triggers.iter().map(move |(name, t)| {
                (
                    [
                        ("function_name", name.as_str()),
                        ("connector", ferrofaas_triggers::schedule::CONNECTOR),
                    ],
                    value(t),
                )
            })
        };
        f.values(
            "gateway_trigger_events",
            Kind::Counter,
            "Events of each function's triggers (schedule slots that came).",
            per_trigger(|t| t.events),
        )?;
        f.values(
            "gateway_trigger_dispatched",
            Kind::Counter,
            "Trigger events this gateway stored on the queue as calls.",
            per_trigger(|t| t.dispatched),
        )?;
        f.values(
            "gateway_trigger_failed",
            Kind::Counter,
            "Trigger events given up: the queue refused them.",
            per_trigger(|t| t.failed),
        )?;
        f.values(
            "gateway_trigger_lag_seconds",
            Kind::Gauge,
            "How late the last event of each trigger was stored.",
            self.triggers.iter().map(|(name, t)| {
                (
                    [
                        ("function_name", name.as_str()),
                        ("connector", ferrofaas_triggers::schedule::CONNECTOR),
                    ],
                    t.last_lag_secs,
                )
            }),
        )?;
        let per_topic = |value: fn(&TopicStats) -> u64| {
            self.topics.iter().map(move |((connector, topic), t)| {
                ([("connector", connector.as_str()), ("topic", topic.as_str())], value(t))
            })
        };
        f.values(
            "gateway_topic_events",
            Kind::Counter,
            "Messages received from a broker, per subscribed topic.",
            per_topic(|t| t.events),
        )?;
        f.values(
            "gateway_topic_dispatched",
            Kind::Counter,
            "Calls stored on the queue for a topic's messages (one per function).",
            per_topic(|t| t.dispatched),
        )?;
        f.values(
            "gateway_topic_failed",
            Kind::Counter,
            "Messages whose calls could not be stored (handed back to the broker).",
            per_topic(|t| t.failed),
        )?;
        f.values(
            "gateway_topic_subscribed",
            Kind::Gauge,
            "1 while the topic's subscription is up.",
            per_topic(|t| u64::from(t.subscribed)),
        )?;
        f.values(
            "gateway_topic_lag_seconds",
            Kind::Gauge,
            "From the last message's time to its calls stored.",
            self.topics.iter().map(|((connector, topic), t)| {
                ([("connector", connector.as_str()), ("topic", topic.as_str())], t.last_lag_secs)
            }),
        )?;
        let Some(queue) = &self.queue else { return Ok(()) };
        for (name, kind, help, values) in [
            ("gateway_async_pending", Kind::Gauge, "Asynchronous calls waiting or running.", &queue.pending),
            ("gateway_async_processed", Kind::Counter, "Asynchronous calls finished.", &queue.processed),
            (
                "gateway_async_retried",
                Kind::Counter,
                "Asynchronous call attempts to be retried.",
                &queue.retried,
            ),
            (
                "gateway_async_dead_lettered",
                Kind::Counter,
                "Asynchronous calls out of attempts.",
                &queue.dead_lettered,
            ),
        ] {
            f.values(
                name,
                kind,
                help,
                values.iter().map(|(function, &n)| ([("function_name", function.as_str())], n)),
            )?;
        }
        Ok(())
    }
}
