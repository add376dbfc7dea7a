//! Setting up the data path at start, all or nothing: every interface is
//! resolved before the first write, and a start that fails half-way
//! removes what it created (links it attached; the maps too when it made
//! them) or puts adopted maps back as the previous agent left them, so
//! forwarding either goes on as before or was never started.

use std::path::PathBuf;

use failover_common::names;
use tracing::{error, info, warn};

use super::{Agent, AgentError};
use crate::{
    config::AgentConfig,
    dataplane::{self, Attached},
};

/// What a start wrote, to undo it if the start fails.
pub(super) struct Undo {
    /// No maps were pinned before: the start created them.
    fresh: bool,
    snapshot: Option<dataplane::Snapshot>,
    links: Vec<PathBuf>,
}

/// Checks what can be checked before anything is written.
pub(super) fn preflight(config: &AgentConfig) -> Result<(), AgentError> {
    for (interface, _) in &config.interfaces {
        dataplane::interface_index(interface).map_err(|source| AgentError::Interface {
            interface: interface.clone(),
            source,
        })?;
    }
    Ok(())
}

impl Undo {
    /// Call before loading the data path.
    pub fn new(config: &AgentConfig) -> Self {
        Self {
            fresh: !config.pin_dir.join(names::SERVICES).exists(),
            snapshot: None,
            links: Vec::new(),
        }
    }
}

impl Undo {
    /// The start is given up: the control socket goes, and pins it
    /// created (a fresh start) with it.
    pub fn abandon(&self, config: &AgentConfig) {
        let _ = std::fs::remove_file(&config.control_socket);
        if self.fresh {
            let _ = dataplane::remove_pins(&config.pin_dir);
        }
    }
}

impl Agent {
    /// Programs the services and attaches every interface; on failure,
    /// undoes what it did.
    pub(super) fn set_up(&mut self, undo: &mut Undo) -> Result<(), AgentError> {
        undo.snapshot = Some(self.dataplane.snapshot());
        let result = self.program_and_attach(undo);
        if let Err(err) = &result {
            error!(cause = %crate::util::chain(err), "start failed; undoing what it wrote");
            self.undo_start(undo);
        }
        result
    }

    fn program_and_attach(&mut self, undo: &mut Undo) -> Result<(), AgentError> {
        let config = self.config.clone();
        self.services = self.apply_services(&config, &[])?;
        self.settle();
        for (interface, mode) in &config.interfaces {
            let attached = self.dataplane.attach_pinned(interface, *mode)?;
            match attached {
                Attached::New(mode) => info!(interface, ?mode, "XDP attached (pinned link)"),
                Attached::Adopted => info!(interface, "XDP link adopted"),
                Attached::Reattached { mode, was_ifindex } => warn!(
                    interface,
                    ?mode,
                    was_ifindex,
                    "XDP attached again: the interface was recreated since the link was pinned"
                ),
            }
            if attached != Attached::Adopted {
                undo.links.push(
                    self.config
                        .pin_dir
                        .join(dataplane::link_pin_name(interface)),
                );
            }
        }
        let_local_vip_replies_through(&config);
        Ok(())
    }

    fn undo_start(&mut self, undo: &mut Undo) {
        for link in &undo.links {
            let _ = std::fs::remove_file(link);
        }
        if undo.fresh {
            if let Err(err) = self.dataplane.unpin() {
                warn!(cause = %crate::util::chain(&err), "removing the pins this start created failed");
            }
            return;
        }
        if let Some(snapshot) = undo.snapshot.take()
            && let Err(err) = self.dataplane.restore(snapshot)
        {
            warn!(cause = %crate::util::chain(&err), "putting the adopted maps back failed");
        }
    }
}

/// With a VIP that is also an address of this host, turns `accept_local`
/// on for every interface the data path is attached to (see
/// `dataplane::local_vips`): otherwise the first reply to a new client,
/// which the kernel forwards while it resolves the client's neighbour, is
/// dropped as a martian and the client's connection times out.
pub(super) fn let_local_vip_replies_through(config: &AgentConfig) {
    use crate::dataplane::local_vips;
    let local = match local_vips::local_ipv4() {
        Ok(local) => local,
        Err(err) => {
            warn!(cause = %crate::util::chain(&err), "cannot list this host's addresses to check for local VIPs");
            return;
        }
    };
    let vips: Vec<String> = config
        .services
        .iter()
        .filter(|s| matches!(s.spec.vip, std::net::IpAddr::V4(vip) if local.contains(&vip)))
        .map(|s| s.spec.vip.to_string())
        .collect();
    if vips.is_empty() {
        return;
    }
    for (interface, _) in &config.interfaces {
        let done = match local_vips::accept_local(interface) {
            Ok(true) => continue,
            Ok(false) => local_vips::set_accept_local(interface),
            Err(err) => Err(err),
        };
        match done {
            Ok(()) => info!(
                interface,
                vips = ?vips,
                "a VIP is an address of this host: accept_local turned on, so the first reply to a new client is not dropped as a martian while its neighbour is resolved"
            ),
            Err(err) => warn!(
                interface,
                vips = ?vips,
                cause = %crate::util::chain(&err),
                "a VIP is an address of this host and accept_local could not be turned on: the first reply to a new client may be lost; set net.ipv4.conf.<interface>.accept_local = 1"
            ),
        }
    }
}
