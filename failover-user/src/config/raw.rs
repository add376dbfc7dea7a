//! The configuration file as written: serde's view, unknown fields
//! rejected, every value still unchecked.

use std::{net::IpAddr, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) pin_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) interfaces: Vec<RawInterface>,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    #[serde(default)]
    pub(super) control: RawControl,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    pub(super) journal: Option<RawJournal>,
    #[serde(default)]
    pub(super) alerts: Vec<RawAlert>,
    #[serde(default)]
    pub(super) conntrack: RawConntrack,
    pub(super) routing: Option<Spanned<RawRouting>>,
    pub(super) sync: Option<Spanned<RawSync>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) listen: Spanned<String>,
    pub(super) peers: Spanned<Vec<Spanned<String>>>,
    pub(super) interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) daemon: Spanned<String>,
    pub(super) table: Option<Spanned<u32>>,
    pub(super) device: Option<Spanned<String>>,
    pub(super) when_unusable: Option<Spanned<String>>,
    pub(super) drain_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    pub(super) max_flows: Option<Spanned<u32>>,
    pub(super) tcp_timeout: Option<Spanned<String>>,
    pub(super) tcp_closing_timeout: Option<Spanned<String>>,
    pub(super) udp_timeout: Option<Spanned<String>>,
    pub(super) max_new_flows_per_cpu: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub(super) socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// "127.0.0.1:9370" by default; "" turns the endpoint off.
    pub(super) listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) path: PathBuf,
    pub(super) max_bytes: Option<u64>,
    pub(super) keep: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) exec: Option<Spanned<Vec<String>>>,
    pub(super) events: Option<Spanned<Vec<String>>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) mode: RawMode,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawMode {
    Native,
    Skb,
    #[default]
    Auto,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Spanned<String>,
    pub(super) vip: Spanned<IpAddr>,
    pub(super) port: u16,
    pub(super) protocol: RawProto,
    #[serde(default)]
    pub(super) failback: RawFailback,
    pub(super) failback_delay: Option<Spanned<String>>,
    /// Maglev table slots (a prime); 0 hashes over the backends directly.
    pub(super) table_size: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) mode: RawRedundancy,
    /// rehash | keep | reset
    #[serde(default)]
    pub(super) dead_flows: RawDeadFlows,
    /// Send SYNs a backend refuses to another one (default on).
    pub(super) redispatch: Option<bool>,
    /// A returning backend's share of new flows ramps up over this.
    pub(super) slow_start: Option<Spanned<String>>,
    /// A count (2) or a percentage ("50%") of the active tier's members.
    pub(super) min_healthy: Option<Spanned<RawQuorum>>,
    pub(super) quorum_policy: Option<Spanned<RawQuorumPolicy>>,
    #[serde(default)]
    pub(super) probe: RawProbe,
    /// Passive detection from the data path's evidence; absent: off.
    pub(super) passive: Option<Spanned<RawPassive>>,
    /// Flap damping; absent: off.
    pub(super) damping: Option<Spanned<RawDamping>>,
    #[serde(default)]
    pub(super) backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    pub(super) window: Option<Spanned<String>>,
    pub(super) resets: Option<u64>,
    pub(super) unreachable: Option<u64>,
    pub(super) unanswered: Option<u64>,
    pub(super) syn_timeout: Option<Spanned<String>>,
    pub(super) max_ejected_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDamping {
    pub(super) half_life: Option<Spanned<String>>,
    pub(super) suppress: Option<u32>,
    pub(super) reuse: Option<u32>,
    pub(super) max_suppress: Option<Spanned<String>>,
    pub(super) penalty: Option<u32>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawDeadFlows {
    #[default]
    Rehash,
    Keep,
    Reset,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawQuorum {
    Count(u32),
    Text(String),
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawQuorumPolicy {
    NextTier,
    FailOpen,
    FailClosed,
}

/// Redundancy mode of a service.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawRedundancy {
    #[default]
    Tiers,
    NPlusOne,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawProto {
    Tcp,
    Udp,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFailback {
    #[default]
    Auto,
    Manual,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<IpAddr>,
    pub(super) port: Option<u16>,
    #[serde(default)]
    pub(super) tier: u8,
    #[serde(default = "one")]
    pub(super) weight: u32,
    #[serde(default)]
    pub(super) probe: RawProbe,
    /// hot | warm | cold; default hot in the most preferred tier, warm below.
    pub(super) temperature: Option<Spanned<RawTemperature>>,
    /// cold: run to start the backend when it is needed.
    pub(super) start_command: Option<Spanned<Vec<String>>>,
    /// cold: how long it may take to pass `rise` probes after the start.
    pub(super) start_timeout: Option<Spanned<String>>,
    /// cold: pause before one that did not come up is tried again.
    pub(super) start_retry: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawTemperature {
    Hot,
    Warm,
    Cold,
}

pub(super) fn one() -> u32 {
    1
}

/// Probe settings; every field optional so a backend's table can override
/// only some of its service's.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<RawProbeKind>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) rise: Option<Spanned<u32>>,
    pub(super) fall: Option<Spanned<u32>>,
    pub(super) jitter: Option<Spanned<String>>,
    /// Port to probe; defaults to the backend's (mapped) port.
    pub(super) port: Option<u16>,
    /// http
    pub(super) path: Option<Spanned<String>>,
    /// http: inclusive range, e.g. [200, 399]
    pub(super) expect_status: Option<Spanned<[u16; 2]>>,
    /// http: substring the body must contain
    pub(super) expect_body: Option<String>,
    /// udp: payload to send
    pub(super) send: Option<Spanned<String>>,
    /// udp: substring the answer must contain (any answer if absent)
    pub(super) expect: Option<String>,
    /// exec: program and arguments; `{address}` and `{port}` are substituted
    pub(super) command: Option<Spanned<Vec<String>>>,
    /// http/udp: most response bytes read
    pub(super) max_response_bytes: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawProbeKind {
    Tcp,
    Http,
    Udp,
    Icmp,
    Exec,
}

impl RawProbe {
    /// `self` with unset fields taken from `base`. A backend that switches
    /// the probe type inherits only the type-independent settings.
    pub(super) fn over(&self, base: &RawProbe) -> RawProbe {
        let kind_of = |p: &RawProbe| p.kind.as_ref().map(|k| *k.get_ref());
        let same_kind = self.kind.is_none() || kind_of(self) == kind_of(base);
        let empty = RawProbe::default();
        let typed_base = if same_kind { base } else { &empty };
        // Each field from the backend's probe, else the service's; the
        // settings of one probe type only from a service probe of that type.
        macro_rules! merged {
            ($($field:ident: $from:ident),* $(,)?) => {
                RawProbe {
                    $($field: self.$field.clone().or_else(|| $from.$field.clone()),)*
                }
            };
        }
        merged! {
            kind: base, interval: base, timeout: base, rise: base, fall: base, jitter: base,
            port: base, max_response_bytes: base, path: typed_base, expect_status: typed_base,
            expect_body: typed_base, send: typed_base, expect: typed_base, command: typed_base,
        }
    }
}
