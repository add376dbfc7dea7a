//! What the agent tells the world: the telemetry snapshot its readers share,
//! the journal of events on disk, alerts to webhooks and hooks, and the
//! Prometheus endpoint.

pub mod alerts;
pub mod journal;
pub mod metrics;
pub mod telemetry;
