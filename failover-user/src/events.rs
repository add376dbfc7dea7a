//! Decisions the agent takes, as events: the journal, the alert hooks and the
//! logs all describe the same thing. Publishing never blocks the decision
//! loop: a subscriber that falls behind loses the oldest events (counted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AgentStart,
    AgentStop,
    /// A backend's health flipped to unhealthy.
    BackendDown,
    /// A backend's health flipped to healthy.
    BackendUp,
    /// New flows moved away from failed backends (unplanned failover).
    Failover,
    /// New flows moved back to a recovered, more preferred backend.
    Failback,
    /// No backend of a service can take new flows.
    QuorumLost,
    /// A planned operation: drain, undrain, switchover, maintenance, reload, drill.
    Operation,
    /// A flapping backend was suppressed (flap damping): no new flows.
    BackendSuppressed,
    /// A suppressed backend's penalty decayed: it may take new flows again.
    BackendReused,
    /// A VIP is announced to the routing daemon (`[routing]`).
    VipAnnounced,
    /// A VIP is withdrawn: the routers send its traffic elsewhere.
    VipWithdrawn,
}

impl EventKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::AgentStart => "agent_start",
            Self::AgentStop => "agent_stop",
            Self::BackendDown => "backend_down",
            Self::BackendUp => "backend_up",
            Self::Failover => "failover",
            Self::Failback => "failback",
            Self::QuorumLost => "quorum_lost",
            Self::Operation => "operation",
            Self::BackendSuppressed => "backend_suppressed",
            Self::BackendReused => "backend_reused",
            Self::VipAnnounced => "vip_announced",
            Self::VipWithdrawn => "vip_withdrawn",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::AgentStart,
            Self::AgentStop,
            Self::BackendDown,
            Self::BackendUp,
            Self::Failover,
            Self::Failback,
            Self::QuorumLost,
            Self::Operation,
            Self::BackendSuppressed,
            Self::BackendReused,
            Self::VipAnnounced,
            Self::VipWithdrawn,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// One decision with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub message: String,
    /// Evidence: probe results, gaps, previous and new backends, ...
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl Event {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            time: rfc3339(SystemTime::now()),
            kind,
            service: None,
            backend: None,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Fan-out of events to the journal, the alert hooks and anyone else.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// `capacity` events are buffered per subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes without waiting; with no subscriber the event only goes to the log.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-11-22T03:04:05.678Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_316_645_678);
        assert_eq!(rfc3339(t), "2026-11-22T03:04:05.678Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn events_serialize_with_snake_case_kind() {
        let event = Event::new(EventKind::Failover, "web: primary -> standby")
            .service("web")
            .details(serde_json::json!({"gap_ms": 210}));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "failover");
        assert_eq!(json["service"], "web");
        assert!(json.get("backend").is_none());
        assert_eq!(json["details"]["gap_ms"], 210);
        assert_eq!(
            EventKind::from_name("quorum_lost"),
            Some(EventKind::QuorumLost)
        );
    }

    #[tokio::test]
    async fn publishing_without_subscribers_does_not_block() {
        let bus = EventBus::new(4);
        for _ in 0..100 {
            bus.publish(Event::new(EventKind::Operation, "x"));
        }
        let mut rx = bus.subscribe();
        bus.publish(Event::new(EventKind::AgentStop, "bye"));
        assert_eq!(rx.recv().await.unwrap().kind, EventKind::AgentStop);
    }
}
