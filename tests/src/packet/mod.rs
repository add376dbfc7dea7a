//! Building test frames with correct checksums, and checking frames the data
//! path produced by full recomputation (never by incremental arithmetic).
//!
//! The parts: `frame` (the description), `build` (its bytes), `parse`
//! (reading output frames), `checksum` (validity by full recomputation),
//! `v6` (all of it for IPv6).

mod build;
mod checksum;
mod frame;
mod parse;
pub mod v6;

pub use self::{
    checksum::{checksum_residues, checksums_valid, looks_partial, residue},
    frame::{
        ETH_LEN, Frame, ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACHABLE,
        ICMP_TIME_EXCEEDED, L4, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
    },
    parse::{IcmpErrorFrame, Parsed, parse, parse_icmp_error},
    v6::{Frame6, Parsed6, checksum_valid6, parse6},
};

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn built_frames_have_valid_checksums() {
        let a = (Ipv4Addr::new(192, 0, 2, 2), 40000);
        let b = (Ipv4Addr::new(203, 0, 113, 10), 80);
        assert!(checksums_valid(&Frame::tcp(a, b, TCP_SYN).build()));
        assert!(checksums_valid(&Frame::udp(a, b).build()));
        let mut with_options = Frame::tcp(a, b, TCP_ACK);
        with_options.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        with_options.vlan = Some(100);
        let bytes = with_options.build();
        assert!(checksums_valid(&bytes));
        let parsed = parse(&bytes).unwrap();
        assert_eq!(
            (parsed.ihl, parsed.vlan, parsed.dst_port),
            (24, Some(100), 80)
        );
    }

    #[test]
    fn corruption_is_detected() {
        let a = (Ipv4Addr::new(192, 0, 2, 2), 40000);
        let b = (Ipv4Addr::new(203, 0, 113, 10), 80);
        let mut bytes = Frame::tcp(a, b, TCP_SYN).build();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(!checksums_valid(&bytes));
    }
}
