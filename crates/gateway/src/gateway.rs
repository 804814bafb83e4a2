//! The gateway's state, shared by every request: the provider, the
//! configuration, the autoscaler, the traffic history, the queue, the
//! invocation path and the shutdown token. Handlers take a `&Gateway`.

use std::sync::Arc;

use ferrofaas_provider::Provider;
use ferrofaas_queue::Queue;
use tokio_util::sync::CancellationToken;

use crate::autoscale::Autoscaler;
use crate::config::GatewayConfig;
use crate::history::History;
use crate::proxy::Invoker;

/// The chart's resolution and span: a point every 2 s, 10 minutes of them.
const HISTORY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const HISTORY_POINTS: usize = 300;

pub struct Gateway {
    pub provider: Arc<dyn Provider>,
    pub config: GatewayConfig,
    pub autoscaler: Arc<Autoscaler>,
    /// The last minutes of each function's traffic (the UI's chart).
    pub history: Arc<History>,
    /// Where asynchronous calls are stored; `None`: `/async-function/` is off.
    pub queue: Option<Arc<dyn Queue>>,
    pub(crate) invoker: Invoker,
    /// Memory of the asynchronous bodies being received.
    pub(crate) receiving: crate::request_body::Budget,
    /// Cancelled when the gateway stops: ends endless responses (log follows).
    pub shutdown: CancellationToken,
    /// Schedules (with a queue): what they did, and how to make the
    /// connector read the functions again.
    pub schedules: Option<crate::triggers::Schedules>,
}

impl Gateway {
    pub fn new(provider: Arc<dyn Provider>, config: GatewayConfig) -> Gateway {
        let access = Arc::new(crate::tokens::Access {
            credentials: config.auth.clone(),
            tokens: Arc::new(crate::tokens::Tokens::in_memory()),
        });
        Gateway {
            invoker: Invoker::new(config.upstream_timeout, config.replica_wait, access),
            autoscaler: Arc::new(Autoscaler::new(config.autoscale, config.autoscale_interval)),
            history: Arc::new(History::new(HISTORY_INTERVAL, HISTORY_POINTS)),
            queue: None,
            receiving: crate::request_body::Budget::new(config.async_memory.max(config.max_async_body)),
            provider,
            config,
            shutdown: CancellationToken::new(),
            schedules: None,
        }
    }

    /// With the API tokens of `tokens` (kept in the state folder, and
    /// maybe shared with other gateways).
    pub fn with_tokens(mut self, tokens: Arc<crate::tokens::Tokens>) -> Gateway {
        self.invoker.access =
            Arc::new(crate::tokens::Access { credentials: self.config.auth.clone(), tokens });
        self
    }

    /// Who may use the API and private functions: the admin, the tokens.
    pub fn access(&self) -> &crate::tokens::Access {
        &self.invoker.access
    }

    /// Where usage records go; `None`: usage is not metered.
    pub fn meter(&self) -> Option<&Arc<dyn ferrofaas_usage::Meter>> {
        self.invoker.metering.as_ref().map(|m| &m.meter)
    }

    /// The quotas being enforced.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.invoker.quotas
    }

    /// With every invocation metered (a record to `metering.meter`), and
    /// `/system/usage` and the price plans answered from it.
    pub fn with_metering(mut self, metering: crate::invocation::Metering) -> Gateway {
        self.invoker.metering = Some(metering);
        self
    }

    /// With asynchronous invocations stored in `queue` (and run by the
    /// dispatcher that [`run`] starts).
    /// Schedules fire through it too, and events of `brokers` (the
    /// connectors switched on) become calls on it.
    pub fn with_queue(
        mut self,
        queue: Arc<dyn Queue>,
        brokers: Vec<Arc<dyn ferrofaas_triggers::broker::Broker>>,
    ) -> Gateway {
        self.schedules = Some(crate::triggers::Schedules::new(&queue, &self.provider, brokers));
        self.queue = Some(queue);
        self
    }
}
