//! Checks of a whole plan: what `check` and `run` warn about, and whether
//! it fits the data path.

use std::net::Ipv4Addr;

use super::AgentConfig;
use crate::model::Proto;

impl AgentConfig {
    /// What `check` and `run` warn about: valid settings that are usually
    /// a mistake.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (backend, services) in self.shared_backends() {
            warnings.push(format!(
                "backend {backend} serves services {}: a client that uses one source port toward both at once \
                 is mixed up at the backend (give each service its own backend port)",
                services.join(", ")
            ));
        }
        if let Some(listen) = self.metrics_listen
            && !listen.ip().is_loopback()
        {
            warnings.push(format!(
                "metrics.listen = \"{listen}\" serves /metrics beyond this host, without authentication: \
                 it shows every service, backend and traffic figure; bind it to 127.0.0.1 or an address only \
                 your monitoring reaches"
            ));
        }
        warnings
    }

    /// Whether the configuration fits the data path's maps; `previous`
    /// (on a reload) counts the larger table of a service whose size
    /// changes, since both are live while it flips.
    pub fn capacity(
        &self,
        previous: Option<&AgentConfig>,
    ) -> Result<crate::dataplane::Capacity, crate::dataplane::CapacityError> {
        let needs: Vec<_> = self
            .services
            .iter()
            .map(|plan| {
                let mut needs = plan.needs();
                if let Some(old) = previous
                    .and_then(|p| p.services.iter().find(|o| o.spec.key() == plan.spec.key()))
                {
                    needs.table_size = needs.table_size.max(old.table_size);
                }
                needs
            })
            .collect();
        crate::dataplane::Capacity::check(&needs)
    }

    /// Backends (address, port, protocol) that more than one service sends
    /// to, with those services. Valid, but the data path tells a reply's
    /// flow by backend and client address and port: when one client uses
    /// the same source port toward two of these services at once, both
    /// flows meet at the backend as one connection and the later one takes
    /// over the reply mapping. Distinct backend ports per service avoid it.
    pub fn shared_backends(&self) -> Vec<(String, Vec<String>)> {
        let mut users: std::collections::HashMap<(Ipv4Addr, u16, Proto), Vec<String>> =
            Default::default();
        for service in &self.services {
            for backend in &service.backends {
                let port = backend.spec.port.unwrap_or(service.spec.port);
                let names = users
                    .entry((backend.spec.addr, port, service.spec.proto))
                    .or_default();
                if !names.contains(&service.name) {
                    names.push(service.name.clone());
                }
            }
        }
        let mut shared: Vec<(String, Vec<String>)> = users
            .into_iter()
            .filter(|(_, names)| names.len() > 1)
            .map(|((addr, port, proto), names)| (format!("{addr}:{port}/{proto}"), names))
            .collect();
        shared.sort();
        shared
    }
}
