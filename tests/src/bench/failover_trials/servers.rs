//! The backends' servers, which a trial can kill at an instant.

use super::{LONG_CONNECTIONS, STABLE_BACKEND_PORT};
use crate::{
    agent_lab::{BACKEND_PORT, BACKEND_UDP_PORT},
    bench::killable::KillableServer,
    netns::NetNs,
};

/// The standby's server for the second service.
pub(super) fn serve_stable(ns: &NetNs) -> KillableServer {
    KillableServer::start(
        ns,
        "standby",
        STABLE_BACKEND_PORT,
        None,
        2 + LONG_CONNECTIONS,
    )
}

pub(super) fn serve(ns: &NetNs, name: &str) -> KillableServer {
    KillableServer::start(
        ns,
        name,
        BACKEND_PORT,
        Some(BACKEND_UDP_PORT),
        8 + LONG_CONNECTIONS,
    )
}
