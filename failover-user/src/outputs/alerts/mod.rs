//! Alert hooks: events of the kinds an alert lists are delivered to its
//! webhook (HTTP POST of the event JSON) or command (event JSON on stdin).
//!
//! Delivery never holds up the event loop: each alert has its own bounded
//! queue and worker. The loop only `try_send`s; when an alert's queue is full
//! (its target is down or slow) the event is dropped for that alert, counted
//! and logged. A worker delivers in order, each attempt under the alert's
//! `timeout`, and retries up to `retries` times with exponential backoff.
//!
//! When the event channel closes, the queued deliveries still run; `run`
//! returns when every worker is done. A caller that cannot wait that long
//! drops the future, which stops the workers and kills running commands.

mod target;
#[cfg(test)]
mod tests;
mod webhook;

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{
        broadcast::{self, error::RecvError},
        mpsc::{self, error::TrySendError},
    },
    task::JoinSet,
    time::sleep,
};
use tracing::{Instrument as _, debug, error, warn};

use crate::{
    config::{AlertConfig, AlertTarget},
    events::{Event, EventKind},
};

pub use target::DeliveryError;
use target::Target;
pub use webhook::UrlError;

/// Events queued per alert before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Pause after the first failed attempt; doubles after each further one.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most bytes of a webhook response read while looking for its status line.
pub const MAX_STATUS_LINE: usize = 1024;

/// Delivers the events each alert asks for until `events` closes and the
/// queued deliveries are done.
pub async fn run(alerts: Vec<AlertConfig>, events: broadcast::Receiver<Event>) {
    run_with(alerts, events, QUEUE_CAPACITY).await;
}

/// What a run counted, for tests.
#[derive(Debug, Default)]
struct RunStats {
    /// Events the bus dropped before we read them.
    lagged: u64,
    /// Events dropped because the alert's queue was full, per routed alert.
    dropped: Vec<u64>,
}

/// One alert's end of the fan-out.
struct Route {
    label: Arc<str>,
    events: Vec<EventKind>,
    queue: mpsc::Sender<Arc<Delivery>>,
    dropped: u64,
}

/// An event ready to deliver, shared by every alert that wants it.
struct Delivery {
    kind: EventKind,
    service: Option<String>,
    backend: Option<String>,
    json: String,
}

async fn run_with(
    alerts: Vec<AlertConfig>,
    mut events: broadcast::Receiver<Event>,
    capacity: usize,
) -> RunStats {
    let mut routes = Vec::new();
    let mut workers = JoinSet::new();
    for alert in alerts {
        let label: Arc<str> = label(&alert.target).into();
        let target = match Target::new(&alert.target) {
            Ok(target) => target,
            Err(err) => {
                error!(alert = %label, cause = %crate::util::chain(&err), "alert disabled");
                continue;
            }
        };
        let (queue, pending) = mpsc::channel(capacity.max(1));
        workers.spawn(worker(
            label.clone(),
            target,
            alert.timeout,
            alert.retries,
            pending,
        ));
        routes.push(Route {
            label,
            events: alert.events,
            queue,
            dropped: 0,
        });
    }

    let mut stats = RunStats::default();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                stats.lagged += n;
                warn!(
                    lost = n,
                    lost_total = stats.lagged,
                    "alerts fell behind; events lost"
                );
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        if !routes
            .iter()
            .any(|route| route.events.contains(&event.kind))
        {
            continue;
        }
        let delivery = match serde_json::to_string(&event) {
            Ok(json) => Arc::new(Delivery {
                kind: event.kind,
                service: event.service,
                backend: event.backend,
                json,
            }),
            Err(err) => {
                warn!(kind = event.kind.name(), cause = %crate::util::chain(&err), "event not serializable; not alerted");
                continue;
            }
        };
        for route in routes
            .iter_mut()
            .filter(|r| r.events.contains(&delivery.kind))
        {
            match route.queue.try_send(delivery.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    route.dropped += 1;
                    warn!(
                        alert = %route.label,
                        kind = delivery.kind.name(),
                        service = delivery.service.as_deref(),
                        backend = delivery.backend.as_deref(),
                        dropped_total = route.dropped,
                        "alert queue full; event dropped for this alert"
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    warn!(alert = %route.label, kind = delivery.kind.name(), "alert worker gone; event not delivered");
                }
            }
        }
    }

    stats.dropped = routes.iter().map(|route| route.dropped).collect();
    // Closing the queues lets each worker finish what it holds, then end.
    drop(routes);
    while let Some(done) = workers.join_next().await {
        if let Err(err) = done {
            error!(cause = %crate::util::chain(&err), "alert worker panicked");
        }
    }
    stats
}

/// Delivers one alert's queue in order until it closes.
async fn worker(
    label: Arc<str>,
    target: Target,
    limit: Duration,
    retries: u32,
    mut queue: mpsc::Receiver<Arc<Delivery>>,
) {
    while let Some(delivery) = queue.recv().await {
        // Every line about this delivery names the alert and the event.
        let span = tracing::info_span!(
            "alert",
            alert = &*label,
            kind = delivery.kind.name(),
            service = delivery.service.as_deref(),
            backend = delivery.backend.as_deref(),
        );
        deliver(&target, limit, retries, &delivery)
            .instrument(span)
            .await;
    }
}

/// One event to one alert: up to `1 + retries` attempts. Returns whether it
/// was delivered.
async fn deliver(target: &Target, limit: Duration, retries: u32, delivery: &Delivery) -> bool {
    let attempts = retries.saturating_add(1);
    for attempt in 0..attempts {
        match target.attempt(delivery, limit).await {
            Ok(()) => {
                debug!(attempt = attempt + 1, "alert delivered");
                return true;
            }
            Err(err) => {
                warn!(
                    attempt = attempt + 1,
                    attempts,
                    cause = %crate::util::chain(&err),
                    "alert delivery failed"
                );
                if attempt + 1 < attempts {
                    sleep(backoff(attempt)).await;
                }
            }
        }
    }
    error!(attempts, "alert given up");
    false
}

/// Pause after failed attempt `n` (0-based): 100 ms × 2^n, at most 2 s.
fn backoff(n: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// How an alert is named in logs: without the URL path or the command's
/// arguments, which may carry tokens.
fn label(target: &AlertTarget) -> String {
    match target {
        AlertTarget::Webhook { url } => {
            let rest = url.strip_prefix("http://").unwrap_or(url);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("webhook http://{authority}")
        }
        AlertTarget::Exec { command } => {
            format!("exec {}", command.first().map_or("", String::as_str))
        }
    }
}
