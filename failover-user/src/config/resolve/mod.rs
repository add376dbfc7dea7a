//! From the file as written to the plan: every value checked against its
//! bounds, every error naming its field and line. One `impl Resolver` per
//! part of the file: the whole file and its operations sections here,
//! services and their backends in `service`, probes in `probe`.

mod conntrack;
mod probe;
mod routing;
mod service;
mod sync;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use toml::Spanned;

use super::{ConfigError, parse_duration, plan::*, raw::*};
use crate::{config::limits, dataplane::AttachMode};

impl AgentConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        Resolver { text }.resolve(raw)
    }
}

struct Resolver<'a> {
    text: &'a str,
}

impl Resolver<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// A backend's address, of its service VIP's family: the data path
    /// translates IPv4 to IPv4 and IPv6 to IPv6 (no NAT46/64).
    fn same_family(
        &self,
        field: &str,
        addr: &Spanned<IpAddr>,
        vip: IpAddr,
    ) -> Result<IpAddr, ConfigError> {
        let address = *addr.get_ref();
        if address.is_ipv4() == vip.is_ipv4() {
            return Ok(address);
        }
        let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        self.invalid(
            field,
            addr.span().start,
            format!(
                "{address} is an {} address but the service's VIP {vip} is {}: a service's \
                 VIP and backends must be one family (failover does not translate between \
                 IPv4 and IPv6); give this backend an {} address, or make a second service \
                 on an {} VIP for it",
                family(address),
                family(vip),
                family(vip),
                family(address),
            ),
        )
    }

    fn invalid<T>(
        &self,
        field: impl Into<String>,
        at: usize,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            field: field.into(),
            line: self.line(at),
            message: message.into(),
        })
    }

    fn resolve(&self, raw: RawConfig) -> Result<AgentConfig, ConfigError> {
        let mut interfaces = Vec::new();
        for (i, iface) in raw.interfaces.iter().enumerate() {
            let name = iface.name.get_ref();
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.contains(char::is_whitespace)
            {
                return self.invalid(
                    format!("interfaces[{i}].name"),
                    iface.name.span().start,
                    format!("{name:?} is not an interface name"),
                );
            }
            let mode = match iface.mode {
                RawMode::Native => AttachMode::Native,
                RawMode::Skb => AttachMode::Skb,
                RawMode::Auto => AttachMode::Auto,
            };
            interfaces.push((name.clone(), mode));
        }
        if raw.services.is_empty() {
            return self.invalid("services", 0, "at least one [[services]] table is needed");
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut services = Vec::new();
        for raw_service in &raw.services {
            let service = self.service(raw_service)?;
            let at = raw_service.name.span().start;
            if !names.insert(service.name.clone()) {
                return self.invalid(
                    format!("services.{}", service.name),
                    at,
                    "service name used twice",
                );
            }
            let key = (
                service.spec.vip,
                service.spec.port,
                service.spec.proto.number(),
            );
            if !keys.insert(key) {
                return self.invalid(
                    format!("services.{}", service.name),
                    at,
                    format!("{} is already another service's", service.spec),
                );
            }
            services.push(service);
        }
        let mut owners = std::collections::HashMap::new();
        for (service, raw_service) in services.iter().zip(&raw.services) {
            self.endpoints_unshared(&mut owners, service, raw_service.name.span().start)?;
        }
        let conntrack = self.conntrack(&raw.conntrack)?;
        let routing = match &raw.routing {
            None => None,
            Some(routing) => Some(self.routing(routing)?),
        };
        let sync = match &raw.sync {
            None => None,
            Some(sync) => Some(self.sync(sync)?),
        };
        let metrics_listen = match &raw.metrics.listen {
            None => Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
            Some(text) if text.get_ref().is_empty() => None,
            Some(text) => match text.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    return self.invalid(
                        "metrics.listen",
                        text.span().start,
                        format!("{:?} is not an address:port", text.get_ref()),
                    );
                }
            },
        };
        let journal = match raw.journal.as_ref() {
            None => None,
            Some(j) => Some(JournalConfig {
                path: j.path.clone(),
                max_bytes: self.number(
                    "journal.max_bytes",
                    j.max_bytes,
                    0,
                    DEFAULT_JOURNAL_MAX_BYTES,
                    limits::JOURNAL_MAX_BYTES,
                )?,
                keep: self.number(
                    "journal.keep",
                    j.keep,
                    0,
                    DEFAULT_JOURNAL_KEEP,
                    limits::JOURNAL_KEEP,
                )?,
            }),
        };
        let mut alerts = Vec::new();
        for (i, alert) in raw.alerts.iter().enumerate() {
            alerts.push(self.alert(i, alert)?);
        }
        let config = AgentConfig {
            pin_dir: raw
                .pin_dir
                .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_PIN_DIR)),
            interfaces,
            services,
            control_socket: raw
                .control
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            metrics_listen,
            journal,
            alerts,
            conntrack,
            routing,
            sync,
        };
        config.capacity(None)?;
        Ok(config)
    }

    fn alert(&self, index: usize, raw: &RawAlert) -> Result<AlertConfig, ConfigError> {
        let field = |f: &str| format!("alerts[{index}].{f}");
        let target = match (&raw.webhook, &raw.exec) {
            (Some(url), None) => {
                if !url.get_ref().starts_with("http://") || url.get_ref().len() <= "http://".len() {
                    return self.invalid(
                        field("webhook"),
                        url.span().start,
                        "must be an http:// URL (for https, point an exec hook at curl)",
                    );
                }
                AlertTarget::Webhook {
                    url: url.get_ref().clone(),
                }
            }
            (None, Some(command)) if !command.get_ref().is_empty() => AlertTarget::Exec {
                command: command.get_ref().clone(),
            },
            (None, Some(command)) => {
                return self.invalid(field("exec"), command.span().start, "needs a program");
            }
            _ => {
                return self.invalid(
                    format!("alerts[{index}]"),
                    0,
                    "exactly one of `webhook` or `exec`",
                );
            }
        };
        let events = match &raw.events {
            None => DEFAULT_ALERT_EVENTS.to_vec(),
            Some(names) => {
                let mut kinds = Vec::new();
                for name in names.get_ref() {
                    match crate::events::EventKind::from_name(name) {
                        Some(kind) => kinds.push(kind),
                        None => {
                            return self.invalid(
                                field("events"),
                                names.span().start,
                                format!("unknown event {name:?}"),
                            );
                        }
                    }
                }
                kinds
            }
        };
        let timeout = match &raw.timeout {
            Some(text) => self.duration(&field("timeout"), text, limits::ALERT_TIMEOUT)?,
            None => DEFAULT_ALERT_TIMEOUT,
        };
        Ok(AlertConfig {
            target,
            events,
            timeout,
            retries: self.number(
                &field("retries"),
                raw.retries,
                0,
                DEFAULT_ALERT_RETRIES,
                limits::ALERT_RETRIES,
            )?,
        })
    }

    /// A duration within `bounds`.
    fn duration(
        &self,
        field: &str,
        text: &Spanned<String>,
        bounds: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        match parse_duration(text.get_ref()) {
            Some(d) if bounds.contains(&d) => Ok(d),
            Some(_) => self.invalid(
                field,
                text.span().start,
                format!(
                    "{:?} is out of bounds: must be {}",
                    text.get_ref(),
                    limits::describe(&bounds)
                ),
            ),
            None => self.invalid(
                field,
                text.span().start,
                format!(
                    "{:?} is not a duration (e.g. \"250ms\", \"1s\", \"2m\")",
                    text.get_ref()
                ),
            ),
        }
    }

    /// A number within `bounds`, or `default` when absent.
    fn number<T: Copy + PartialOrd + std::fmt::Debug>(
        &self,
        field: &str,
        value: Option<T>,
        at: usize,
        default: T,
        bounds: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or(default);
        if bounds.contains(&value) {
            return Ok(value);
        }
        self.invalid(
            field,
            at,
            format!(
                "{value:?} is out of bounds: must be {}",
                limits::describe(&bounds)
            ),
        )
    }
}
