//! What the agent tells the world: the telemetry snapshot its readers share,
//! the journal of events on disk (and the last ones in memory), alerts to
//! webhooks and hooks, and the HTTP endpoint: Prometheus metrics and the
//! status page.

pub mod alerts;
pub mod journal;
pub mod metrics;
pub mod recent;
pub mod telemetry;
