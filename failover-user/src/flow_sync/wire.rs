//! The sync datagram: a header, then up to [`RECORDS_PER_DATAGRAM`] pinned
//! flows of [`RECORD_BYTES`] each. Addresses and ports travel in network
//! order, as the maps hold them; every field is checked on the way in, and
//! a datagram with one bad record is refused whole (counted by reason).
//!
//! ```text
//! header (20 bytes): "FOSY" | version 1 | flags (1: last of its round) |
//!                    records u16 | sender's boot u32 | round u32 | index u16 |
//!                    the sender's round period in 10 ms u16
//! record (64 bytes): family | proto | backend family | state (1 open, 2 closing) |
//!                    client addr 16 | VIP 16 | client port | VIP port |
//!                    backend addr 16 | backend port | 0 u16 | milliseconds left u32
//! ```
//!
//! Round 0 is a hello: no records, sent every interval whatever the rounds
//! take, so a starting peer knows this host is there and how long its
//! rounds take.

use failover_common::{
    AddrBe, FAMILY_IPV4, FAMILY_IPV6, FlowKey, PROTO_TCP, PROTO_UDP, flow_state,
};

pub const MAGIC: [u8; 4] = *b"FOSY";
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 20;
pub const RECORD_BYTES: usize = 64;
/// Keeps a datagram (with IPv6 and UDP headers) within the 1,280 bytes
/// every IPv6 link carries: no fragmentation on any path.
pub const RECORDS_PER_DATAGRAM: usize = 18;
/// The most flows one round carries (its datagrams are numbered in 16 bits).
pub const MAX_ROUND_FLOWS: usize = u16::MAX as usize * RECORDS_PER_DATAGRAM;
pub const MAX_DATAGRAM: usize = HEADER_BYTES + RECORDS_PER_DATAGRAM * RECORD_BYTES;
const FLAG_LAST: u8 = 1;

/// Where a datagram sits in its sender's round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Random per agent start: a peer that restarted begins a new count.
    pub boot: u32,
    pub round: u32,
    pub index: u16,
    /// The round's last datagram (a round with no pinned flow is one empty
    /// datagram with this set).
    pub last: bool,
    /// How often the sender sends a round (its interval, or longer while
    /// its flow table takes long to walk).
    pub period: std::time::Duration,
}

impl Header {
    /// A hello (round 0): the sender is there, with this round period.
    pub fn hello(boot: u32, period: std::time::Duration) -> Self {
        Self {
            boot,
            round: 0,
            index: 0,
            last: false,
            period,
        }
    }

    pub fn is_hello(&self) -> bool {
        self.round == 0
    }
}

/// The period's unit on the wire.
const PERIOD_UNIT_MS: u128 = 10;

/// A backend as every host names it: its address and port (ids differ
/// between hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub family: u8,
    pub addr: AddrBe,
    /// Network order; 0: the service's port.
    pub port_be: u16,
}

/// A flow pinned to a backend its sender's table does not name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedFlow {
    /// Client → VIP, as the flow table keys it.
    pub key: FlowKey,
    pub backend: Endpoint,
    /// One of [`flow_state`].
    pub state: u8,
    /// How long the entry lives without packets, at the sender.
    pub remaining_ms: u32,
}

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than a header")]
    Short,
    #[error("not a failover sync datagram")]
    Magic,
    #[error("sync protocol version {0}, this agent speaks {VERSION}")]
    Version(u8),
    #[error("its length does not match its record count")]
    Length,
    #[error("a record with an unknown family, protocol or state")]
    Record,
}

impl WireError {
    /// The label of its counter.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Short | Self::Length => "length",
            Self::Magic => "magic",
            Self::Version(_) => "version",
            Self::Record => "record",
        }
    }
}

/// Encodes one datagram; `flows` holds at most [`RECORDS_PER_DATAGRAM`].
pub fn encode(header: Header, flows: &[PinnedFlow]) -> Vec<u8> {
    assert!(flows.len() <= RECORDS_PER_DATAGRAM);
    let mut out = Vec::with_capacity(HEADER_BYTES + flows.len() * RECORD_BYTES);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(if header.last { FLAG_LAST } else { 0 });
    out.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    out.extend_from_slice(&header.boot.to_be_bytes());
    out.extend_from_slice(&header.round.to_be_bytes());
    out.extend_from_slice(&header.index.to_be_bytes());
    let period = (header.period.as_millis() / PERIOD_UNIT_MS).min(u128::from(u16::MAX)) as u16;
    out.extend_from_slice(&period.to_be_bytes());
    for flow in flows {
        let k = &flow.key;
        out.extend_from_slice(&[k.family, k.proto, flow.backend.family, flow.state]);
        put_addr(&mut out, &k.src);
        put_addr(&mut out, &k.dst);
        out.extend_from_slice(&k.src_port_be.to_ne_bytes());
        out.extend_from_slice(&k.dst_port_be.to_ne_bytes());
        put_addr(&mut out, &flow.backend.addr);
        out.extend_from_slice(&flow.backend.port_be.to_ne_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&flow.remaining_ms.to_be_bytes());
    }
    out
}

/// Splits a round's flows into datagrams (at least one: an empty round
/// still tells the peers this host is there and done). Round 0 is the
/// hello's: a round number wraps past it.
pub fn round(
    boot: u32,
    round: u32,
    period: std::time::Duration,
    flows: &[PinnedFlow],
) -> Vec<Vec<u8>> {
    let chunks: Vec<&[PinnedFlow]> = if flows.is_empty() {
        vec![&[]]
    } else {
        flows.chunks(RECORDS_PER_DATAGRAM).collect()
    };
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let header = Header {
                boot,
                round,
                index: i.min(usize::from(u16::MAX)) as u16,
                last: i + 1 == count,
                period,
            };
            encode(header, chunk)
        })
        .collect()
}

/// Decodes and checks one datagram.
pub fn decode(bytes: &[u8]) -> Result<(Header, Vec<PinnedFlow>), WireError> {
    if bytes.len() < HEADER_BYTES {
        return Err(WireError::Short);
    }
    if bytes[..4] != MAGIC {
        return Err(WireError::Magic);
    }
    if bytes[4] != VERSION {
        return Err(WireError::Version(bytes[4]));
    }
    let flags = bytes[5];
    let count = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    if flags & !FLAG_LAST != 0 {
        return Err(WireError::Magic);
    }
    if count > RECORDS_PER_DATAGRAM || bytes.len() != HEADER_BYTES + count * RECORD_BYTES {
        return Err(WireError::Length);
    }
    let header = Header {
        boot: be32(&bytes[8..12]),
        round: be32(&bytes[12..16]),
        index: u16::from_be_bytes([bytes[16], bytes[17]]),
        last: flags & FLAG_LAST != 0,
        period: std::time::Duration::from_millis(
            u64::from(u16::from_be_bytes([bytes[18], bytes[19]])) * PERIOD_UNIT_MS as u64,
        ),
    };
    if header.is_hello() && (count != 0 || header.last) {
        return Err(WireError::Length);
    }
    let flows = bytes[HEADER_BYTES..]
        .chunks_exact(RECORD_BYTES)
        .map(record)
        .collect::<Result<_, _>>()?;
    Ok((header, flows))
}

fn record(r: &[u8]) -> Result<PinnedFlow, WireError> {
    let (family, proto, backend_family, state) = (r[0], r[1], r[2], r[3]);
    let key = FlowKey::new(
        family,
        addr(&r[4..20]),
        addr(&r[20..36]),
        u16::from_ne_bytes([r[36], r[37]]),
        u16::from_ne_bytes([r[38], r[39]]),
        proto,
    );
    let backend = Endpoint {
        family: backend_family,
        addr: addr(&r[40..56]),
        port_be: u16::from_ne_bytes([r[56], r[57]]),
    };
    let valid = family_ok(family, &key.src)
        && family_ok(family, &key.dst)
        && family_ok(backend_family, &backend.addr)
        && (proto == PROTO_TCP || proto == PROTO_UDP)
        && (state == flow_state::OPEN || state == flow_state::CLOSING)
        && key.dst_port_be != 0
        && backend.port_be != 0
        && r[58..60] == [0, 0];
    if !valid {
        return Err(WireError::Record);
    }
    Ok(PinnedFlow {
        key,
        backend,
        state,
        remaining_ms: be32(&r[60..64]),
    })
}

/// A known family, and an IPv4 address with its unused words zero (as the
/// maps hold it: another form would never match a key).
fn family_ok(family: u8, addr: &AddrBe) -> bool {
    family == FAMILY_IPV6 || (family == FAMILY_IPV4 && addr[1..] == [0, 0, 0])
}

fn put_addr(out: &mut Vec<u8>, addr: &AddrBe) {
    for word in addr {
        out.extend_from_slice(&word.to_ne_bytes());
    }
}

fn addr(bytes: &[u8]) -> AddrBe {
    let word = |i: usize| u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    [word(0), word(1), word(2), word(3)]
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

/// A pinned flow for the sync tests: client 192.0.2.2:`client_port` to
/// 203.0.113.10:80/tcp on backend 198.51.100.18:8080.
#[cfg(test)]
pub(super) fn sample_flow(client_port: u16, state: u8, remaining_ms: u32) -> PinnedFlow {
    use failover_common::ipv4_addr;
    PinnedFlow {
        key: FlowKey::new(
            FAMILY_IPV4,
            ipv4_addr([192, 0, 2, 2]),
            ipv4_addr([203, 0, 113, 10]),
            client_port.to_be(),
            80u16.to_be(),
            PROTO_TCP,
        ),
        backend: Endpoint {
            family: FAMILY_IPV4,
            addr: ipv4_addr([198, 51, 100, 18]),
            port_be: 8080u16.to_be(),
        },
        state,
        remaining_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use failover_common::ipv6_addr;

    use super::*;

    fn flow(i: u16) -> PinnedFlow {
        sample_flow(40_000 + i, flow_state::OPEN, 3_600_000 - u32::from(i))
    }

    #[test]
    fn a_round_survives_the_wire_in_full_datagrams_that_fit_any_ipv6_link() {
        let flows: Vec<PinnedFlow> = (0..40).map(flow).collect();
        let datagrams = round(7, 3, Duration::from_millis(500), &flows);
        assert_eq!(datagrams.len(), 3);
        assert!(datagrams.iter().all(|d| d.len() + 40 + 8 <= 1280));
        let mut back = Vec::new();
        for (i, d) in datagrams.iter().enumerate() {
            let (header, mut flows) = decode(d).unwrap();
            assert_eq!(
                header,
                Header {
                    boot: 7,
                    round: 3,
                    index: i as u16,
                    last: i == 2,
                    period: Duration::from_millis(500),
                }
            );
            back.append(&mut flows);
        }
        assert_eq!(back, flows);
    }

    #[test]
    fn an_empty_round_is_one_last_datagram() {
        let datagrams = round(1, 9, Duration::from_millis(500), &[]);
        assert_eq!(datagrams.len(), 1);
        let (header, flows) = decode(&datagrams[0]).unwrap();
        assert!(header.last && flows.is_empty());
    }

    #[test]
    fn ipv6_flows_keep_every_word() {
        let mut f = flow(1);
        f.key.family = FAMILY_IPV6;
        f.key.src = ipv6_addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.key.dst = ipv6_addr([
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        let (_, back) = decode(&encode(round_header(), &[f])).unwrap();
        assert_eq!(back, vec![f]);
    }

    fn round_header() -> Header {
        Header {
            boot: 1,
            round: 1,
            index: 0,
            last: true,
            period: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_hello_carries_the_period_and_nothing_else() {
        let hello = encode(Header::hello(5, Duration::from_millis(2_500)), &[]);
        let (header, flows) = decode(&hello).unwrap();
        assert!(header.is_hello() && flows.is_empty());
        assert_eq!(header.period, Duration::from_millis(2_500));
        let mut with_flow = encode(Header::hello(5, Duration::ZERO), &[flow(1)]);
        assert_eq!(decode(&with_flow).map(|_| ()), Err(WireError::Length));
        with_flow.truncate(HEADER_BYTES);
        with_flow[5] = 1;
        assert_eq!(
            decode(&with_flow).map(|_| ()),
            Err(WireError::Length),
            "a last hello"
        );
    }

    #[test]
    fn bad_datagrams_are_refused_with_their_reason() {
        let good = encode(round_header(), &[flow(1)]);
        let mut cases: Vec<(Vec<u8>, WireError)> = vec![
            (good[..10].to_vec(), WireError::Short),
            (good[..good.len() - 1].to_vec(), WireError::Length),
        ];
        let mut change = |at: usize, value: u8, err: WireError| {
            let mut bad = good.clone();
            bad[at] = value;
            cases.push((bad, err));
        };
        change(0, b'X', WireError::Magic);
        change(4, 2, WireError::Version(2));
        change(5, 0x80, WireError::Magic);
        change(7, 2, WireError::Length);
        // Record fields: family, protocol, backend family, state, an IPv4
        // address with a stray word, the VIP port, the reserved bytes.
        for (at, value) in [(20, 5), (21, 1), (22, 0), (23, 3), (28, 1), (78, 1)] {
            change(at, value, WireError::Record);
        }
        for at in [38, 56] {
            let mut zero_port = good.clone();
            zero_port[HEADER_BYTES + at..HEADER_BYTES + at + 2].copy_from_slice(&[0, 0]);
            cases.push((zero_port, WireError::Record));
        }
        for (bytes, err) in cases {
            assert_eq!(decode(&bytes).map(|_| ()), Err(err), "{bytes:?}");
        }
    }
}
