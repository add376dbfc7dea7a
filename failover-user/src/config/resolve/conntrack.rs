//! `[conntrack]`: the flow table's size, lifetimes and flood guard; and the
//! rule that no two services share a backend endpoint (a reply finds its
//! VIP by the endpoint alone).

use std::{collections::HashMap, net::IpAddr};

use toml::Spanned;

use super::Resolver;
use crate::{
    config::{ConfigError, ConntrackConfig, ServicePlan, limits, raw::RawConntrack},
    model::Proto,
};

impl Resolver<'_> {
    pub(super) fn conntrack(&self, raw: &RawConntrack) -> Result<ConntrackConfig, ConfigError> {
        let defaults = ConntrackConfig::default();
        let number = |field: &str, value: &Option<Spanned<u32>>, default, bounds| {
            self.number(
                &format!("conntrack.{field}"),
                value.as_ref().map(|v| *v.get_ref()),
                value.as_ref().map_or(0, |v| v.span().start),
                default,
                bounds,
            )
        };
        let duration = |field: &str, value: &Option<Spanned<String>>, default| match value {
            None => Ok(default),
            Some(text) => self.duration(&format!("conntrack.{field}"), text, limits::FLOW_TIMEOUT),
        };
        Ok(ConntrackConfig {
            max_flows: number(
                "max_flows",
                &raw.max_flows,
                defaults.max_flows,
                limits::MAX_FLOWS,
            )?,
            tcp_timeout: duration("tcp_timeout", &raw.tcp_timeout, defaults.tcp_timeout)?,
            tcp_closing_timeout: duration(
                "tcp_closing_timeout",
                &raw.tcp_closing_timeout,
                defaults.tcp_closing_timeout,
            )?,
            udp_timeout: duration("udp_timeout", &raw.udp_timeout, defaults.udp_timeout)?,
            max_new_flows_per_cpu: number(
                "max_new_flows_per_cpu",
                &raw.max_new_flows_per_cpu,
                defaults.max_new_flows_per_cpu,
                limits::NEW_FLOWS_PER_CPU,
            )?,
        })
    }

    /// Refuses a backend endpoint (address, port it serves on, protocol)
    /// that an earlier service in `owners` has: replies from it could not
    /// be told apart. `at`: where the service is written.
    pub(super) fn endpoints_unshared<'s>(
        &self,
        owners: &mut HashMap<(IpAddr, u16, Proto), &'s str>,
        service: &'s ServicePlan,
        at: usize,
    ) -> Result<(), ConfigError> {
        for backend in &service.backends {
            let key = backend.spec.endpoint(&service.spec);
            let (addr, port, proto) = key;
            if let Some(other) = owners.insert(key, &service.name)
                && other != service.name
            {
                return self.invalid(
                    format!("services.{}.backends.{}", service.name, backend.name),
                    at,
                    format!(
                        "{addr}:{port}/{proto} also serves service {other}: replies from it \
                         could not be told apart; give each service its own backend port"
                    ),
                );
            }
        }
        Ok(())
    }
}
