//! `[sync]`: where this agent listens for the other edge hosts' pinned
//! flows, who they are, and how often they are sent.

use std::net::SocketAddr;

use toml::Spanned;

use super::Resolver;
use crate::config::{ConfigError, DEFAULT_SYNC_INTERVAL, SyncConfig, limits, raw::RawSync};

impl Resolver<'_> {
    pub(super) fn sync(&self, raw: &Spanned<RawSync>) -> Result<SyncConfig, ConfigError> {
        let raw = raw.get_ref();
        let listen = self.sync_address("sync.listen", &raw.listen)?;
        let mut peers: Vec<SocketAddr> = Vec::new();
        for (i, text) in raw.peers.get_ref().iter().enumerate() {
            let field = format!("sync.peers[{i}]");
            let peer = self.sync_address(&field, text)?;
            if peer == listen {
                return self.invalid(
                    field,
                    text.span().start,
                    format!("{peer} is this agent's own sync.listen: list the other edge hosts"),
                );
            }
            if peer.is_ipv4() != listen.is_ipv4() {
                return self.invalid(
                    field,
                    text.span().start,
                    format!("{peer} and sync.listen {listen} are of two families: use one"),
                );
            }
            if peers.contains(&peer) {
                return self.invalid(field, text.span().start, format!("{peer} is listed twice"));
            }
            peers.push(peer);
        }
        if !limits::SYNC_PEERS.contains(&peers.len()) {
            return self.invalid(
                "sync.peers",
                raw.peers.span().start,
                format!(
                    "{} peers: must be {}",
                    peers.len(),
                    limits::describe(&limits::SYNC_PEERS)
                ),
            );
        }
        let interval = match &raw.interval {
            None => DEFAULT_SYNC_INTERVAL,
            Some(text) => self.duration("sync.interval", text, limits::SYNC_INTERVAL)?,
        };
        Ok(SyncConfig {
            listen,
            peers,
            interval,
        })
    }

    /// An address:port with a concrete address (datagrams are accepted from
    /// the peers' addresses only, and sent from `listen`).
    fn sync_address(&self, field: &str, text: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        match text.get_ref().parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() || addr.ip().is_multicast() => self.invalid(
                field,
                text.span().start,
                format!("{addr}: name one address of a host, not a wildcard or a group"),
            ),
            Ok(addr) if addr.port() == 0 => {
                self.invalid(field, text.span().start, format!("{addr}: name the port"))
            }
            Ok(addr) => Ok(addr),
            Err(_) => self.invalid(
                field,
                text.span().start,
                format!("{:?} is not an address:port", text.get_ref()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{AgentConfig, DEFAULT_SYNC_INTERVAL};

    const SERVICE: &str = "[[services]]\nname = \"web\"\nvip = \"203.0.113.10\"\nport = 80\nprotocol = \"tcp\"\n\
         [[services.backends]]\nname = \"a\"\naddress = \"198.51.100.2\"\n";

    fn with(sync: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(&format!("[sync]\n{sync}\n{SERVICE}")).map_err(|e| e.to_string())
    }

    #[test]
    fn sync_is_off_unless_written_and_has_a_default_interval() {
        assert!(AgentConfig::parse(SERVICE).unwrap().sync.is_none());
        let sync = with("listen = \"198.18.1.2:4790\"\npeers = [\"198.18.2.2:4790\"]")
            .unwrap()
            .sync
            .unwrap();
        assert_eq!(sync.listen, "198.18.1.2:4790".parse().unwrap());
        assert_eq!(sync.peers, vec!["198.18.2.2:4790".parse().unwrap()]);
        assert_eq!(sync.interval, DEFAULT_SYNC_INTERVAL);
        let sync = with(
            "listen = \"[2001:db8::1]:4790\"\npeers = [\"[2001:db8::2]:4790\"]\ninterval = \"2s\"",
        )
        .unwrap()
        .sync
        .unwrap();
        assert_eq!(sync.interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_sync_settings_name_the_field_and_the_fix() {
        for (text, field, words) in [
            (
                "listen = \"0.0.0.0:4790\"\npeers = [\"198.18.2.2:4790\"]",
                "sync.listen",
                "wildcard",
            ),
            (
                "listen = \"198.18.1.2\"\npeers = [\"198.18.2.2:4790\"]",
                "sync.listen",
                "address:port",
            ),
            (
                "listen = \"198.18.1.2:0\"\npeers = [\"198.18.2.2:4790\"]",
                "sync.listen",
                "port",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = []",
                "sync.peers",
                "between 1 and 32",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = [\"198.18.1.2:4790\"]",
                "sync.peers[0]",
                "own",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = [\"198.18.2.2:4790\", \"198.18.2.2:4790\"]",
                "sync.peers[1]",
                "twice",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = [\"[2001:db8::2]:4790\"]",
                "sync.peers[0]",
                "families",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = [\"198.18.2.2:4790\"]\ninterval = \"10ms\"",
                "sync.interval",
                "out of bounds",
            ),
            (
                "listen = \"198.18.1.2:4790\"\npeers = [\"198.18.2.2:4790\"]\nport = 1",
                "",
                "unknown field",
            ),
        ] {
            let err = with(text).unwrap_err();
            assert!(err.contains(field) && err.contains(words), "{text}: {err}");
        }
    }
}
