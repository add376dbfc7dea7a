//! Probes: a service's defaults, a backend's overrides, each kind's settings.

use toml::Spanned;

use super::Resolver;
use crate::{
    config::limits,
    config::{ConfigError, plan::*, raw::*},
};

impl Resolver<'_> {
    pub(super) fn probe(
        &self,
        field: &str,
        at: usize,
        raw: &RawProbe,
        target_port: u16,
    ) -> Result<ProbeSpec, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        let interval = match &raw.interval {
            Some(t) => self.duration(&f("interval"), t, limits::PROBE_INTERVAL)?,
            None => DEFAULT_INTERVAL,
        };
        let timeout = match &raw.timeout {
            Some(t) => self.duration(&f("timeout"), t, limits::PROBE_TIMEOUT)?,
            None => DEFAULT_TIMEOUT.min(interval),
        };
        let jitter = match &raw.jitter {
            Some(t) => self.duration(&f("jitter"), t, limits::PROBE_JITTER)?,
            None => interval / 10,
        };
        let span = |s: Option<std::ops::Range<usize>>| s.map_or(at, |r| r.start);
        if interval.is_zero() {
            return self.invalid(
                f("interval"),
                span(raw.interval.as_ref().map(Spanned::span)),
                "must be above zero",
            );
        }
        if timeout.is_zero() || timeout > interval {
            return self.invalid(
                f("timeout"),
                span(raw.timeout.as_ref().map(Spanned::span)),
                format!("must be above zero and at most the interval ({interval:?})"),
            );
        }
        if jitter >= interval {
            return self.invalid(
                f("jitter"),
                span(raw.jitter.as_ref().map(Spanned::span)),
                format!("must be below the interval ({interval:?})"),
            );
        }
        let rise = raw.rise.as_ref().map_or(DEFAULT_RISE, |r| *r.get_ref());
        let fall = raw.fall.as_ref().map_or(DEFAULT_FALL, |r| *r.get_ref());
        for (name, value, spanned) in [("rise", rise, &raw.rise), ("fall", fall, &raw.fall)] {
            self.number(
                &f(name),
                Some(value),
                span(spanned.as_ref().map(Spanned::span)),
                value,
                limits::RISE_FALL,
            )?;
        }
        let kind_name = raw
            .kind
            .as_ref()
            .map_or(RawProbeKind::Tcp, |k| *k.get_ref());
        let kind_at = span(raw.kind.as_ref().map(Spanned::span));
        let port = raw.port.unwrap_or(target_port);
        // Reject settings that belong to another probe type: they would be ignored.
        let foreign: &[(&str, bool)] = &[
            (
                "path",
                raw.path.is_some() && kind_name != RawProbeKind::Http,
            ),
            (
                "expect_status",
                raw.expect_status.is_some() && kind_name != RawProbeKind::Http,
            ),
            (
                "expect_body",
                raw.expect_body.is_some() && kind_name != RawProbeKind::Http,
            ),
            ("send", raw.send.is_some() && kind_name != RawProbeKind::Udp),
            (
                "expect",
                raw.expect.is_some() && kind_name != RawProbeKind::Udp,
            ),
            (
                "command",
                raw.command.is_some() && kind_name != RawProbeKind::Exec,
            ),
        ];
        if let Some((name, _)) = foreign.iter().find(|(_, bad)| *bad) {
            return self.invalid(
                f(name),
                kind_at,
                format!("not a setting of a {kind_name:?} probe"),
            );
        }
        let kind = match kind_name {
            RawProbeKind::Tcp => ProbeKind::Tcp { port },
            RawProbeKind::Icmp => ProbeKind::Icmp,
            RawProbeKind::Http => {
                let path = raw
                    .path
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone());
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return self.invalid(
                        f("path"),
                        span(raw.path.as_ref().map(Spanned::span)),
                        "must start with '/' and contain no spaces",
                    );
                }
                let [low, high] = raw
                    .expect_status
                    .as_ref()
                    .map_or([200, 399], |s| *s.get_ref());
                if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
                    return self.invalid(
                        f("expect_status"),
                        span(raw.expect_status.as_ref().map(Spanned::span)),
                        "must be [low, high] within 100..=599",
                    );
                }
                ProbeKind::Http {
                    port,
                    path,
                    status: low..=high,
                    body: raw.expect_body.clone(),
                }
            }
            RawProbeKind::Udp => {
                let Some(send) = raw.send.as_ref().filter(|s| !s.get_ref().is_empty()) else {
                    return self.invalid(
                        f("send"),
                        kind_at,
                        "a udp probe needs a non-empty `send` payload",
                    );
                };
                ProbeKind::Udp {
                    port,
                    send: send.get_ref().as_bytes().to_vec(),
                    expect: raw.expect.as_ref().map(|e| e.as_bytes().to_vec()),
                }
            }
            RawProbeKind::Exec => {
                let Some(command) = raw.command.as_ref().filter(|c| !c.get_ref().is_empty()) else {
                    return self.invalid(
                        f("command"),
                        kind_at,
                        "an exec probe needs `command = [\"program\", ...]`",
                    );
                };
                ProbeKind::Exec {
                    command: command.get_ref().clone(),
                    port,
                }
            }
        };
        Ok(ProbeSpec {
            kind,
            interval,
            timeout,
            rise,
            fall,
            jitter,
            max_response_bytes: self.number(
                &f("max_response_bytes"),
                raw.max_response_bytes,
                at,
                DEFAULT_MAX_RESPONSE_BYTES,
                limits::MAX_RESPONSE_BYTES,
            )?,
        })
    }
}
