//! The agent configuration the demo writes for its lab.

use std::{fmt::Write as _, path::Path};

use super::{BACKEND_PORT, FAILBACK_DELAY, HOSTS, VIP_PORT, probe_interval, vip};
use crate::lab::topology::LB_CLIENT_IF;

/// The demo's configuration: one TCP service, active-passive over three
/// tiers, with passive detection (and SYN redispatch, the default).
pub(super) fn config_text(pin_dir: &Path, socket: &Path) -> String {
    let mut text = format!(
        r#"# written by `failover demo`
pin_dir = "{pin_dir}"

[control]
socket = "{socket}"

[[interfaces]]
name = "{LB_CLIENT_IF}"
mode = "native"
"#,
        pin_dir = pin_dir.display(),
        socket = socket.display()
    );
    for host in &HOSTS {
        let _ = write!(
            text,
            "\n[[interfaces]]\nname = \"{}\"\nmode = \"native\"\n",
            host.lb_if
        );
    }
    let _ = write!(
        text,
        r#"
[[services]]
name = "web"
vip = "{vip}"
port = {VIP_PORT}
protocol = "tcp"
failback = "auto"
failback_delay = "{delay}s"

[services.probe]
type = "tcp"
interval = "{interval}ms"
timeout = "{timeout}ms"
fall = 3
rise = 2

# The data path's evidence: three SYNs refused with RST eject a backend.
[services.passive]
resets = 3
"#,
        vip = vip(),
        delay = FAILBACK_DELAY.as_secs(),
        interval = probe_interval().as_millis(),
        timeout = (probe_interval() / 2).as_millis().max(1)
    );
    for host in &HOSTS {
        let _ = write!(
            text,
            "\n[[services.backends]]\nname = \"{}\"\naddress = \"{}\"\nport = {BACKEND_PORT}\ntier = {}\n",
            host.name,
            host.addr(),
            host.tier
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid() {
        let text = config_text(
            Path::new("/sys/fs/bpf/fo-demo-test"),
            Path::new("/tmp/fo-demo-test.sock"),
        );
        let config = crate::config::AgentConfig::parse(&text).unwrap();
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.services[0].backends.len(), 3);
        assert_eq!(config.interfaces.len(), 4);
        assert!(config.services[0].passive.is_some() && config.services[0].redispatch);
    }
}
