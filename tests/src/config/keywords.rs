//! The values of the configuration's enumerated keys, written as the
//! agent spells them.

use super::render::{Value, quote};

/// An enumerated key's values, written as the agent spells them.
macro_rules! keyword {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),*
                }
            }
        }

        impl Value for $name {
            fn toml(&self) -> String {
                quote(self.as_str())
            }
        }
    };
}

keyword! {
    /// `interfaces.mode`: how XDP is attached.
    XdpMode { Native = "native", Skb = "skb", Auto = "auto" }
}
keyword! {
    /// `services.protocol`.
    Protocol { Tcp = "tcp", Udp = "udp" }
}
keyword! {
    /// `services.failback`.
    FailbackMode { Auto = "auto", Manual = "manual" }
}
keyword! {
    /// `services.mode`: the redundancy mode.
    Redundancy { Tiers = "tiers", NPlusOne = "n_plus_one" }
}
keyword! {
    /// `services.dead_flows`: what becomes of a dead backend's flows.
    DeadFlows { Rehash = "rehash", Keep = "keep", Reset = "reset" }
}
keyword! {
    /// `services.quorum_policy`.
    QuorumPolicy { NextTier = "next_tier", FailOpen = "fail_open", FailClosed = "fail_closed" }
}
keyword! {
    /// `probe.type`.
    ProbeType { Tcp = "tcp", Http = "http", Udp = "udp", Icmp = "icmp", Exec = "exec" }
}
keyword! {
    /// `backends.temperature`.
    Temperature { Hot = "hot", Warm = "warm", Cold = "cold" }
}

/// `services.min_healthy`: a count of the active tier's members, or a
/// percentage of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    Count(u32),
    Percent(u32),
}

impl Value for Quorum {
    fn toml(&self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Percent(p) => quote(&format!("{p}%")),
        }
    }
}
