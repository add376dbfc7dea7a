//! The agent's decisions, pure and unit-tested (no I/O; time is passed
//! in): a backend's health from its probe results, a service's policy
//! (failover, failback, operator states, quorum, dead flows), who takes new
//! flows and the Maglev table that spreads them; passive detection and
//! flap damping; which VIPs the host announces.

pub mod announce;
pub mod damping;
pub mod health;
pub mod maglev;
pub mod passive;
pub mod policy;
pub mod second_opinion;
pub mod select;
