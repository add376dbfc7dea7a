//! `[routing]`: the daemon that announces this host's VIPs, the kernel
//! table and device the announcements are written to, and what becomes of
//! a VIP that cannot be served.

use std::path::PathBuf;

use toml::Spanned;

use super::Resolver;
use crate::{
    config::{
        ConfigError, DEFAULT_ROUTING_DEVICE, DEFAULT_ROUTING_DRAIN_FILE, DEFAULT_ROUTING_TABLE,
        RoutingConfig, RoutingDaemon, limits, raw::RawRouting,
    },
    decide::announce::WhenUnusable,
};

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

impl Resolver<'_> {
    pub(super) fn routing(&self, raw: &Spanned<RawRouting>) -> Result<RoutingConfig, ConfigError> {
        let at = raw.span().start;
        let raw = raw.get_ref();
        let daemon = match raw.daemon.get_ref().as_str() {
            "bird" => RoutingDaemon::Bird,
            other => {
                return self.invalid(
                    "routing.daemon",
                    raw.daemon.span().start,
                    format!("{other:?} is not a daemon failover announces through; use \"bird\""),
                );
            }
        };
        let table = self.number(
            "routing.table",
            raw.table.as_ref().map(|t| *t.get_ref()),
            raw.table.as_ref().map_or(at, |t| t.span().start),
            DEFAULT_ROUTING_TABLE,
            limits::ROUTING_TABLE,
        )?;
        let device = match &raw.device {
            None => DEFAULT_ROUTING_DEVICE.to_owned(),
            Some(name) => {
                let text = name.get_ref();
                let valid = !text.is_empty()
                    && text.len() <= IFNAME_MAX
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !valid {
                    return self.invalid(
                        "routing.device",
                        name.span().start,
                        format!(
                            "{text:?} is not an interface name (1 to {IFNAME_MAX} letters, digits, '-', '_' or '.')"
                        ),
                    );
                }
                text.clone()
            }
        };
        let when_unusable = match raw
            .when_unusable
            .as_ref()
            .map(|w| (w.get_ref().as_str(), w.span().start))
        {
            None | Some(("withdraw", _)) => WhenUnusable::Withdraw,
            Some(("announce", _)) => WhenUnusable::Announce,
            Some((other, at)) => {
                return self.invalid(
                    "routing.when_unusable",
                    at,
                    format!("{other:?}: must be \"withdraw\" or \"announce\""),
                );
            }
        };
        let drain_file = match &raw.drain_file {
            None => PathBuf::from(DEFAULT_ROUTING_DRAIN_FILE),
            Some(path) if path.get_ref().is_absolute() => path.get_ref().clone(),
            Some(path) => {
                return self.invalid(
                    "routing.drain_file",
                    path.span().start,
                    format!("{} is not an absolute path", path.get_ref().display()),
                );
            }
        };
        Ok(RoutingConfig {
            daemon,
            table,
            device,
            when_unusable,
            drain_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        config::{AgentConfig, DEFAULT_ROUTING_DEVICE, DEFAULT_ROUTING_TABLE, RoutingDaemon},
        decide::announce::WhenUnusable,
    };

    const SERVICE: &str = "[[services]]\nname = \"web\"\nvip = \"203.0.113.10\"\nport = 80\nprotocol = \"tcp\"\n\
         [[services.backends]]\nname = \"a\"\naddress = \"198.51.100.2\"\n";

    fn with(routing: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(&format!("[routing]\n{routing}\n{SERVICE}")).map_err(|e| e.to_string())
    }

    #[test]
    fn routing_has_defaults_and_is_off_unless_written() {
        assert!(AgentConfig::parse(SERVICE).unwrap().routing.is_none());
        let routing = with("daemon = \"bird\"").unwrap().routing.unwrap();
        assert_eq!(routing.daemon, RoutingDaemon::Bird);
        assert_eq!(routing.table, DEFAULT_ROUTING_TABLE);
        assert_eq!(routing.device, DEFAULT_ROUTING_DEVICE);
        assert_eq!(routing.when_unusable, WhenUnusable::Withdraw);
        let routing =
            with("daemon = \"bird\"\ntable = 7\ndevice = \"vips\"\nwhen_unusable = \"announce\"")
                .unwrap()
                .routing
                .unwrap();
        assert_eq!((routing.table, routing.device.as_str()), (7, "vips"));
        assert_eq!(routing.when_unusable, WhenUnusable::Announce);
    }

    #[test]
    fn bad_routing_settings_name_the_field_and_the_fix() {
        for (routing, field, hint) in [
            ("daemon = \"quagga\"", "routing.daemon", "use \"bird\""),
            (
                "daemon = \"bird\"\ntable = 254",
                "routing.table",
                "out of bounds",
            ),
            (
                "daemon = \"bird\"\ntable = 0",
                "routing.table",
                "out of bounds",
            ),
            (
                "daemon = \"bird\"\ndevice = \"a/b\"",
                "routing.device",
                "not an interface name",
            ),
            (
                "daemon = \"bird\"\ndevice = \"sixteen-letters-x\"",
                "routing.device",
                "1 to 15",
            ),
            (
                "daemon = \"bird\"\nwhen_unusable = \"drop\"",
                "routing.when_unusable",
                "\"withdraw\" or \"announce\"",
            ),
            (
                "daemon = \"bird\"\ndrain_file = \"drained\"",
                "routing.drain_file",
                "absolute",
            ),
        ] {
            let error = with(routing).unwrap_err();
            assert!(
                error.contains(field) && error.contains(hint),
                "{routing}: {error}"
            );
            assert!(error.contains("line "), "{error}");
        }
        assert!(with("table = 200").unwrap_err().contains("daemon"));
        assert!(
            with("daemon = \"bird\"\nasn = 1")
                .unwrap_err()
                .contains("asn")
        );
    }
}
