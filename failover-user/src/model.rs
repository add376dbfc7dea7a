//! Services and backends as the agent describes them, and the pure rules that
//! turn them into map values.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use failover_common::{
    AddrBe, Backend, FAMILY_IPV4, FAMILY_IPV6, PROTO_TCP, PROTO_UDP, ServiceKey, backend_state,
    ipv4_addr, ipv6_addr,
};

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
        }
    }

    pub const fn from_number(number: u8) -> Option<Self> {
        match number {
            PROTO_TCP => Some(Self::Tcp),
            PROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// An address as map keys hold it, and its family (`FAMILY_*`).
pub fn addr_key(addr: IpAddr) -> (AddrBe, u8) {
    match addr {
        IpAddr::V4(v4) => (ipv4_addr(v4.octets()), FAMILY_IPV4),
        IpAddr::V6(v6) => (ipv6_addr(v6.octets()), FAMILY_IPV6),
    }
}

/// The address a map key holds; `None` for an unknown family.
pub fn addr_of_key(addr: &AddrBe, family: u8) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(Ipv4Addr::from(addr[0].to_ne_bytes()).into()),
        FAMILY_IPV6 => {
            let mut octets = [0u8; 16];
            for (i, word) in addr.iter().enumerate() {
                octets[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
            }
            Some(Ipv6Addr::from(octets).into())
        }
        _ => None,
    }
}

/// `addr:port`, with brackets around an IPv6 address.
pub fn endpoint_text(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// A service: traffic to (vip, port, proto) is spread over its backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl ServiceSpec {
    pub fn new(vip: impl Into<IpAddr>, port: u16, proto: Proto) -> Self {
        Self {
            vip: vip.into(),
            port,
            proto,
        }
    }

    pub fn key(&self) -> ServiceKey {
        let (addr, family) = addr_key(self.vip);
        ServiceKey {
            addr,
            port_be: self.port.to_be(),
            proto: self.proto.number(),
            family,
        }
    }
}

impl fmt::Display for ServiceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", endpoint_text(self.vip, self.port), self.proto)
    }
}

/// Health/administrative state of a backend, as the data path sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// Takes new and established flows.
    Up,
    /// Takes nothing; its established flows are re-picked.
    Down,
    /// Takes no new flows; established ones stay until they end.
    Draining,
}

impl BackendState {
    pub const fn raw(self) -> u32 {
        match self {
            Self::Up => backend_state::UP,
            Self::Down => backend_state::DOWN,
            Self::Draining => backend_state::DRAINING,
        }
    }

    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            backend_state::UP => Some(Self::Up),
            backend_state::DOWN => Some(Self::Down),
            backend_state::DRAINING => Some(Self::Draining),
            _ => None,
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Draining => "draining",
        })
    }
}

/// One backend of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    pub addr: IpAddr,
    /// `None` keeps the service's port; `Some` maps to another port.
    pub port: Option<u16>,
    /// Priority tier, 0 most preferred. New flows go to the lowest-numbered
    /// tier that has a usable backend.
    pub tier: u8,
    pub weight: u32,
    pub state: BackendState,
    /// Slow start: how much of its weight new flows see, per mille
    /// ([`RAMP_FULL`] but while a returning backend ramps up). Agent
    /// state, not configuration: kept when a reload keeps the backend.
    pub ramp: u16,
}

/// [`BackendSpec::ramp`] of a backend at its full weight.
pub const RAMP_FULL: u16 = 1000;

impl BackendSpec {
    /// Where this backend serves `service`, as its replies carry it:
    /// address, port (its own or the service's), protocol. One endpoint
    /// serves one service: a reply finds its VIP by the endpoint alone.
    pub fn endpoint(&self, service: &ServiceSpec) -> (IpAddr, u16, Proto) {
        (self.addr, self.port.unwrap_or(service.port), service.proto)
    }

    /// An up backend in tier 0 on the service's port.
    pub fn new(addr: impl Into<IpAddr>) -> Self {
        Self {
            addr: addr.into(),
            port: None,
            tier: 0,
            weight: 1,
            state: BackendState::Up,
            ramp: RAMP_FULL,
        }
    }

    pub const fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub const fn tier(mut self, tier: u8) -> Self {
        self.tier = tier;
        self
    }

    pub const fn state(mut self, state: BackendState) -> Self {
        self.state = state;
        self
    }

    /// The `FO_BACKENDS` value; the slot's generation is the data path's to
    /// set ([`crate::Dataplane`]).
    pub fn to_map_value(&self, service_id: u32) -> Backend {
        let (addr, family) = addr_key(self.addr);
        Backend {
            addr,
            port_be: self.port.unwrap_or(0).to_be(),
            family,
            tier: self.tier,
            state: self.state.raw(),
            service_id,
            weight: self.weight,
            generation: 0,
            _pad: 0,
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => f.write_str(&endpoint_text(self.addr, port)),
            None => write!(f, "{}", self.addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_is_network_order() {
        let spec = ServiceSpec::new(Ipv4Addr::new(203, 0, 113, 10), 80, Proto::Tcp);
        let key = spec.key();
        assert_eq!(key.addr[0].to_ne_bytes(), [203, 0, 113, 10]);
        assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
        assert_eq!(key.proto, 6);
    }
}
