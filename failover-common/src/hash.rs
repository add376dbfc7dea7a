//! The flow hash that spreads new flows over a service's selection.
//!
//! Runs unchanged in the XDP program and in userspace (`inspect explain`,
//! tests), so both sides agree on which backend a 5-tuple gets. Words are
//! taken as native-endian loads of wire bytes, as the data path sees them.

use crate::maps::FlowKey;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MurmurHash3-style 32-bit hash of the 5-tuple (and family) of `key`.
#[inline(always)]
pub const fn flow_hash(key: &FlowKey, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, key.src[0]);
    h = mix(h, key.src[1]);
    h = mix(h, key.src[2]);
    h = mix(h, key.src[3]);
    h = mix(h, key.dst[0]);
    h = mix(h, key.dst[1]);
    h = mix(h, key.dst[2]);
    h = mix(h, key.dst[3]);
    h = mix(h, (key.src_port_be as u32) << 16 | key.dst_port_be as u32);
    h = mix(h, (key.proto as u32) << 8 | key.family as u32);
    finish(h ^ 40)
}

/// Seed used by the data path; fixed so every edge host picks alike.
pub const FLOW_HASH_SEED: u32 = 0x5eed_f10e;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{FAMILY_IPV4, PROTO_TCP, ipv4_addr};

    fn key(src_port: u16) -> FlowKey {
        FlowKey {
            src: ipv4_addr([192, 0, 2, 7]),
            dst: ipv4_addr([203, 0, 113, 10]),
            src_port_be: src_port.to_be(),
            dst_port_be: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_IPV4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn deterministic() {
        assert_eq!(
            flow_hash(&key(1000), FLOW_HASH_SEED),
            flow_hash(&key(1000), FLOW_HASH_SEED)
        );
    }

    #[test]
    fn spreads_source_ports_evenly_over_buckets() {
        const BUCKETS: usize = 3;
        const FLOWS: u32 = 30_000;
        let mut counts = [0u32; BUCKETS];
        for port in 0..FLOWS {
            let h = flow_hash(&key(port as u16 + 1024), FLOW_HASH_SEED);
            counts[h as usize % BUCKETS] += 1;
        }
        let expected = FLOWS / BUCKETS as u32;
        for count in counts {
            // Within 3 % of the fair share.
            assert!(count.abs_diff(expected) < expected * 3 / 100, "{counts:?}");
        }
    }
}
