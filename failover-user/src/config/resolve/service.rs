//! Services and their backends.

use std::collections::BTreeSet;

use failover_common::MAX_SELECTION;
use toml::Spanned;

use super::Resolver;
use crate::{
    config::limits,
    config::{ConfigError, plan::*, raw::*},
    decide::policy::Failback,
    model::{BackendSpec, Proto, ServiceSpec},
};

impl Resolver<'_> {
    pub(super) fn service(&self, raw: &RawService) -> Result<ServicePlan, ConfigError> {
        let name = raw.name.get_ref().clone();
        let at = raw.name.span().start;
        let field = |f: &str| format!("services.{name}.{f}");
        if name.is_empty() {
            return self.invalid("services.name", at, "must not be empty");
        }
        let spec = ServiceSpec {
            vip: *raw.vip.get_ref(),
            port: raw.port,
            proto: match raw.protocol {
                RawProto::Tcp => Proto::Tcp,
                RawProto::Udp => Proto::Udp,
            },
        };
        if raw.port == 0 {
            return self.invalid(field("port"), at, "port 0 is not a service port");
        }
        let failback = match raw.failback {
            RawFailback::Manual => {
                if let Some(delay) = &raw.failback_delay {
                    return self.invalid(
                        field("failback_delay"),
                        delay.span().start,
                        "only meaningful with failback = \"auto\"",
                    );
                }
                Failback::Manual
            }
            RawFailback::Auto => Failback::Auto {
                delay: match &raw.failback_delay {
                    Some(text) => {
                        self.duration(&field("failback_delay"), text, limits::FAILBACK_DELAY)?
                    }
                    None => DEFAULT_FAILBACK_DELAY,
                },
            },
        };
        if raw.backends.is_empty() {
            return self.invalid(
                field("backends"),
                at,
                "a service needs at least one [[services.backends]]",
            );
        }
        if raw.backends.len() > MAX_SELECTION {
            return self.invalid(
                field("backends"),
                at,
                format!(
                    "{} backends; at most {MAX_SELECTION} per service",
                    raw.backends.len()
                ),
            );
        }
        let mut backend_names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        let mut backends = Vec::new();
        for raw_backend in &raw.backends {
            let backend_name = raw_backend.name.get_ref().clone();
            let bat = raw_backend.name.span().start;
            let bfield = |f: &str| format!("services.{name}.backends.{backend_name}.{f}");
            if backend_name.is_empty() {
                return self.invalid(field("backends.name"), bat, "must not be empty");
            }
            if !backend_names.insert(backend_name.clone()) {
                return self.invalid(
                    bfield("name"),
                    bat,
                    "backend name used twice in this service",
                );
            }
            let address = self.same_family(&bfield("address"), &raw_backend.address, spec.vip)?;
            if !endpoints.insert((address, raw_backend.port)) {
                return self.invalid(
                    bfield("address"),
                    bat,
                    "the same address and port appear twice in this service",
                );
            }
            if raw_backend.port == Some(0) {
                return self.invalid(bfield("port"), bat, "port 0 is not a backend port");
            }
            if !limits::WEIGHT.contains(&raw_backend.weight) {
                return self.invalid(
                    bfield("weight"),
                    bat,
                    format!("must be {}", limits::describe(&limits::WEIGHT)),
                );
            }
            let target_port = raw_backend.port.unwrap_or(raw.port);
            let merged = raw_backend.probe.over(&raw.probe);
            let probe = self.probe(&bfield("probe"), bat, &merged, target_port)?;
            let best_tier = raw.backends.iter().map(|b| b.tier).min().unwrap_or(0);
            let temperature = raw_backend.temperature.as_ref().map(|t| *t.get_ref());
            let temperature_at = raw_backend
                .temperature
                .as_ref()
                .map_or(bat, |t| t.span().start);
            match temperature {
                Some(RawTemperature::Hot) if raw_backend.tier != best_tier => {
                    return self.invalid(
                        bfield("temperature"),
                        temperature_at,
                        "hot backends serve: put them in the most preferred tier",
                    );
                }
                Some(RawTemperature::Cold) if raw_backend.tier == best_tier => {
                    return self.invalid(
                        bfield("temperature"),
                        temperature_at,
                        "a cold standby must be in a less preferred tier than the serving backends",
                    );
                }
                _ => {}
            }
            let cold = temperature == Some(RawTemperature::Cold);
            if !cold
                && (raw_backend.start_command.is_some()
                    || raw_backend.start_timeout.is_some()
                    || raw_backend.start_retry.is_some())
            {
                return self.invalid(
                    bfield("start_command"),
                    bat,
                    "start_command, start_timeout and start_retry are for temperature = \"cold\"",
                );
            }
            let cold = if cold {
                let command = match &raw_backend.start_command {
                    Some(c) if c.get_ref().is_empty() => {
                        return self.invalid(
                            bfield("start_command"),
                            c.span().start,
                            "needs a program",
                        );
                    }
                    Some(c) => Some(c.get_ref().clone()),
                    None => None,
                };
                let timeout = match &raw_backend.start_timeout {
                    Some(t) => self.duration(&bfield("start_timeout"), t, limits::START_TIMEOUT)?,
                    None => DEFAULT_START_TIMEOUT,
                };
                let retry = match &raw_backend.start_retry {
                    Some(t) => self.duration(&bfield("start_retry"), t, limits::START_RETRY)?,
                    None => DEFAULT_START_RETRY,
                };
                Some(ColdStart {
                    command,
                    timeout,
                    retry,
                })
            } else {
                None
            };
            backends.push(BackendPlan {
                name: backend_name.clone(),
                spec: BackendSpec {
                    addr: address,
                    port: raw_backend.port,
                    tier: raw_backend.tier,
                    weight: raw_backend.weight,
                    // A cold standby takes nothing until it has been started
                    // and has passed its probes.
                    state: if cold.is_some() {
                        crate::model::BackendState::Down
                    } else {
                        crate::model::BackendState::Up
                    },
                    ramp: crate::model::RAMP_FULL,
                },
                probe,
                cold,
            });
        }
        let table_size = match &raw.table_size {
            None => crate::decide::maglev::DEFAULT_TABLE_SIZE,
            Some(size) => {
                let value = *size.get_ref();
                if value != 0
                    && (!crate::decide::maglev::is_prime(value)
                        || value < backends.len() as u32
                        || value > failover_common::MAX_TABLE_SIZE)
                {
                    return self.invalid(
                        field("table_size"),
                        size.span().start,
                        format!(
                            "must be 0 (no table) or a prime between the number of backends and {}; \
                             about 100 slots per backend keeps shares within 1 %",
                            failover_common::MAX_TABLE_SIZE
                        ),
                    );
                }
                value
            }
        };
        let mode = match raw.mode {
            RawRedundancy::Tiers => crate::decide::select::Mode::Tiers,
            RawRedundancy::NPlusOne => crate::decide::select::Mode::NPlusOne,
        };
        let dead_flows = match raw.dead_flows {
            RawDeadFlows::Rehash => crate::decide::policy::DeadFlows::Rehash,
            RawDeadFlows::Keep => crate::decide::policy::DeadFlows::Keep,
            RawDeadFlows::Reset => crate::decide::policy::DeadFlows::Reset,
        };
        let quorum = match (&raw.min_healthy, &raw.quorum_policy) {
            (None, None) => None,
            (None, Some(policy)) => {
                return self.invalid(
                    field("quorum_policy"),
                    policy.span().start,
                    "needs min_healthy",
                );
            }
            (Some(min), policy) => {
                let at = min.span().start;
                let quorum = match min.get_ref() {
                    RawQuorum::Count(0) => {
                        return self.invalid(field("min_healthy"), at, "must be at least 1");
                    }
                    RawQuorum::Count(n) => crate::decide::policy::Quorum::Count(*n),
                    RawQuorum::Text(text) => match text
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<u32>().ok())
                    {
                        Some(p) if (1..=100).contains(&p) => {
                            crate::decide::policy::Quorum::Percent(p)
                        }
                        _ => {
                            return self.invalid(
                                field("min_healthy"),
                                at,
                                format!("{text:?}: a count or a percentage such as \"50%\""),
                            );
                        }
                    },
                };
                let policy = match policy.as_ref().map(|p| *p.get_ref()) {
                    None | Some(RawQuorumPolicy::NextTier) => {
                        crate::decide::policy::QuorumPolicy::NextTier
                    }
                    Some(RawQuorumPolicy::FailOpen) => {
                        crate::decide::policy::QuorumPolicy::FailOpen
                    }
                    Some(RawQuorumPolicy::FailClosed) => {
                        crate::decide::policy::QuorumPolicy::FailClosed
                    }
                };
                Some((quorum, policy))
            }
        };
        let passive = match &raw.passive {
            None => None,
            Some(passive) => Some(self.passive(&name, passive)?),
        };
        let slow_start = match &raw.slow_start {
            None => None,
            Some(text) => Some(self.duration(
                &format!("services.{name}.slow_start"),
                text,
                limits::SLOW_START,
            )?),
        };
        let damping = match &raw.damping {
            None => None,
            Some(damping) => Some(self.damping(&name, damping)?),
        };
        Ok(ServicePlan {
            name,
            spec,
            failback,
            table_size,
            mode,
            dead_flows,
            redispatch: raw.redispatch.unwrap_or(true),
            slow_start,
            quorum,
            passive,
            damping,
            backends,
        })
    }

    /// `[services.damping]`, every value within its bounds, `reuse` below
    /// `suppress`, and a ceiling (`max_suppress`) that lets it suppress.
    fn damping(
        &self,
        name: &str,
        raw: &Spanned<RawDamping>,
    ) -> Result<crate::decide::damping::DampingSettings, ConfigError> {
        let at = raw.span().start;
        let field = |f: &str| format!("services.{name}.damping.{f}");
        let raw = raw.get_ref();
        let defaults = crate::decide::damping::DampingSettings::default();
        let duration = |key: &str, text: &Option<Spanned<String>>, default, bounds| match text {
            None => Ok(default),
            Some(text) => self.duration(&field(key), text, bounds),
        };
        let number = |key: &str, value: Option<u32>, default| {
            self.number(&field(key), value, at, default, limits::DAMPING_PENALTY)
        };
        let settings = crate::decide::damping::DampingSettings {
            half_life: duration(
                "half_life",
                &raw.half_life,
                defaults.half_life,
                limits::DAMPING_HALF_LIFE,
            )?,
            max_suppress: duration(
                "max_suppress",
                &raw.max_suppress,
                defaults.max_suppress,
                limits::DAMPING_MAX_SUPPRESS,
            )?,
            suppress: number("suppress", raw.suppress, defaults.suppress)?,
            reuse: number("reuse", raw.reuse, defaults.reuse)?,
            penalty: number("penalty", raw.penalty, defaults.penalty)?,
        };
        if settings.reuse >= settings.suppress {
            return self.invalid(
                field("reuse"),
                at,
                format!(
                    "{} is not below suppress ({}): a suppressed backend would never be reused; lower `reuse` or raise `suppress`",
                    settings.reuse, settings.suppress
                ),
            );
        }
        if !settings.can_suppress() {
            return self.invalid(
                field("max_suppress"),
                at,
                format!(
                    "{:?} caps the penalty at {:.0}, below suppress ({}): nothing would ever be suppressed; raise `max_suppress` (at least {:?}) or lower `suppress`",
                    settings.max_suppress,
                    settings.ceiling(),
                    settings.suppress,
                    settings.min_max_suppress(),
                ),
            );
        }
        Ok(settings)
    }

    /// `[services.passive]`, every value within its bounds.
    fn passive(
        &self,
        name: &str,
        raw: &Spanned<RawPassive>,
    ) -> Result<crate::decide::passive::PassiveSettings, ConfigError> {
        let at = raw.span().start;
        let field = |f: &str| format!("services.{name}.passive.{f}");
        let raw = raw.get_ref();
        let defaults = crate::decide::passive::PassiveSettings::default();
        let window = match &raw.window {
            None => defaults.window,
            Some(text) => self.duration(&field("window"), text, limits::PASSIVE_WINDOW)?,
        };
        let syn_timeout = match &raw.syn_timeout {
            None => defaults.syn_timeout,
            Some(text) => {
                self.duration(&field("syn_timeout"), text, limits::PASSIVE_SYN_TIMEOUT)?
            }
        };
        if syn_timeout >= window {
            return self.invalid(
                field("syn_timeout"),
                at,
                format!(
                    "{syn_timeout:?} is not shorter than the window ({window:?}): the window must hold the SYNs and the time they wait; raise `window` or lower `syn_timeout`"
                ),
            );
        }
        Ok(crate::decide::passive::PassiveSettings {
            window,
            syn_timeout,
            unanswered: self.number(
                &field("unanswered"),
                raw.unanswered,
                at,
                defaults.unanswered,
                limits::PASSIVE_COUNT,
            )?,
            resets: self.number(
                &field("resets"),
                raw.resets,
                at,
                defaults.resets,
                limits::PASSIVE_COUNT,
            )?,
            unreachable: self.number(
                &field("unreachable"),
                raw.unreachable,
                at,
                defaults.unreachable,
                limits::PASSIVE_COUNT,
            )?,
            max_ejected_percent: self.number(
                &field("max_ejected_percent"),
                raw.max_ejected_percent,
                at,
                defaults.max_ejected_percent,
                limits::PASSIVE_MAX_EJECTED_PERCENT,
            )?,
        })
    }
}
