//! The demo's client: new TCP connections to the VIP every
//! [`REQUEST_EVERY`] from the client namespace (the lab's shared load
//! recorder), read as who answered.

use std::{net::SocketAddr, time::Instant};

use super::{CLIENT_MAX_LIFETIME, HOSTS, IO_TIMEOUT, REQUEST_EVERY, VIP_PORT, vip};
use crate::lab::{
    load::{FailureKind, Load, Plan, Sample},
    netns::NetNs,
};

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `HOSTS[i]` answered.
    Answer(usize),
    Refused,
    Reset,
    Timeout,
    Other,
}

/// One request of the client.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    pub(super) started: Instant,
    pub(super) finished: Instant,
    pub(super) outcome: Outcome,
}

impl From<&Sample> for Record {
    fn from(sample: &Sample) -> Self {
        let outcome = match &sample.result {
            Ok(name) => HOSTS
                .iter()
                .position(|h| h.name == name.trim())
                .map_or(Outcome::Other, Outcome::Answer),
            Err(failed) => match failed.kind {
                FailureKind::Refused => Outcome::Refused,
                FailureKind::Reset => Outcome::Reset,
                FailureKind::Timeout => Outcome::Timeout,
                FailureKind::Other => Outcome::Other,
            },
        };
        Self {
            started: sample.started,
            finished: sample.done,
            outcome,
        }
    }
}

/// The client's load; stopped and joined in `Drop`.
pub(super) struct Client {
    load: Load,
}

impl Client {
    pub(super) fn start(ns: &NetNs) -> anyhow::Result<Self> {
        let vip = SocketAddr::new(vip(), VIP_PORT);
        let plan = Plan {
            lifetime: CLIENT_MAX_LIFETIME,
            ..Plan::new_flows(vip, REQUEST_EVERY, IO_TIMEOUT)
        };
        Ok(Self {
            load: Load::start(ns, plan)?,
        })
    }

    /// Every request so far, in the order they started.
    pub(super) fn records(&self) -> Vec<Record> {
        self.load
            .snapshot()
            .new_flows
            .iter()
            .map(Record::from)
            .collect()
    }
}
