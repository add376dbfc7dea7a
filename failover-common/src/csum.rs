//! Internet checksum arithmetic (RFC 1071, incremental updates per RFC 1624).
//!
//! Byte order: every value is passed exactly as loaded from the packet with a
//! native-endian load (no byte swapping). The one's-complement sum commutes
//! with byte swapping, so updating with raw loads and storing the raw result is
//! correct on any host, and the data path never spends instructions on swaps.

/// Folds a 64-bit accumulator of 16-bit words into 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    // Four folds suffice for any u64; written out so the verifier sees no loop.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum after a 16-bit field covered by it changed from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub const fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u64 + (!old) as u64 + new as u64;
    !fold(sum)
}

/// Checksum after a 32-bit field covered by it changed from `old` to `new`.
#[inline(always)]
pub const fn update32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u64
        + ((!old) & 0xffff) as u64
        + ((!old) >> 16) as u64
        + (new & 0xffff) as u64
        + (new >> 16) as u64;
    !fold(sum)
}

/// Checksum after a 128-bit field covered by it (an IPv6 address, four
/// raw words) changed from `old` to `new`.
#[inline(always)]
pub const fn update128(check: u16, old: [u32; 4], new: [u32; 4]) -> u16 {
    let mut sum = (!check) as u64;
    let mut i = 0;
    while i < 4 {
        sum += ((!old[i]) & 0xffff) as u64
            + ((!old[i]) >> 16) as u64
            + (new[i] & 0xffff) as u64
            + (new[i] >> 16) as u64;
        i += 1;
    }
    !fold(sum)
}

/// UDP variant of [`update128`] (see [`udp_update32`]).
#[inline(always)]
pub const fn udp_update128(check: u16, old: [u32; 4], new: [u32; 4]) -> u16 {
    if check == 0 {
        return 0;
    }
    mangled_zero(update128(check, old, new))
}

/// UDP variant of [`update32`]: a zero checksum means "none" and stays zero,
/// and a computed zero is sent as 0xffff (RFC 768).
#[inline(always)]
pub const fn udp_update32(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    mangled_zero(update32(check, old, new))
}

/// UDP variant of [`update16`].
#[inline(always)]
pub const fn udp_update16(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    mangled_zero(update16(check, old, new))
}

#[inline(always)]
const fn mangled_zero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

/// One's-complement sum of `bytes` as big-endian 16-bit words (odd length
/// padded with a zero byte), added to `initial`. For full recomputation in
/// userspace and tests; the data path only updates incrementally.
pub fn sum_be_words(bytes: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u16::from_be_bytes([pair[0], pair[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += u16::from_be_bytes([*last, 0]) as u64;
    }
    sum
}

/// The checksum (as a big-endian value) that makes `bytes` sum to 0xffff,
/// with the checksum field itself zeroed beforehand by the caller.
pub fn checksum_be(bytes: &[u8], initial: u64) -> u16 {
    !fold(sum_be_words(bytes, initial))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header from RFC 1071 style worked examples: checksum field zeroed.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn with_checksum(mut header: [u8; 20]) -> [u8; 20] {
        header[10..12].copy_from_slice(&[0, 0]);
        let check = checksum_be(&header, 0);
        header[10..12].copy_from_slice(&check.to_be_bytes());
        header
    }

    #[test]
    fn full_checksum_matches_known_value() {
        assert_eq!(with_checksum(HEADER)[10..12], [0xb8, 0x61]);
    }

    #[test]
    fn update128_equals_recomputation() {
        // 36 bytes standing in for a pseudo-header with an IPv6 address at 4..20.
        let mut before = [0u8; 36];
        for (i, b) in before.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let check = checksum_be(&before, 0);
        let mut after = before;
        after[4..20].copy_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        let words = |b: &[u8]| -> [u32; 4] {
            core::array::from_fn(|i| u32::from_ne_bytes(b[4 * i..4 * i + 4].try_into().unwrap()))
        };
        let raw = update128(
            u16::from_ne_bytes(check.to_be_bytes()),
            words(&before[4..20]),
            words(&after[4..20]),
        );
        let expected = checksum_be(&after, 0);
        assert_eq!(raw.to_ne_bytes(), expected.to_be_bytes());
    }

    #[test]
    fn incremental_update_equals_recomputation_for_raw_loads() {
        let before = with_checksum(HEADER);
        let mut after = before;
        after[16..20].copy_from_slice(&[198, 51, 100, 17]);
        after[8] -= 1; // TTL
        let expected = with_checksum(after);

        // What the data path does: native loads, no swaps.
        let check = u16::from_ne_bytes([before[10], before[11]]);
        let old_addr = u32::from_ne_bytes(before[16..20].try_into().unwrap());
        let new_addr = u32::from_ne_bytes(after[16..20].try_into().unwrap());
        let old_ttl = u16::from_ne_bytes([before[8], before[9]]);
        let new_ttl = u16::from_ne_bytes([after[8], after[9]]);
        let check = update32(check, old_addr, new_addr);
        let check = update16(check, old_ttl, new_ttl);
        assert_eq!(check.to_ne_bytes(), [expected[10], expected[11]]);
    }

    #[test]
    fn exhaustive_16bit_update_agrees_with_recomputation() {
        // Every value of one word, against a fixed rest of the header.
        let base = with_checksum(HEADER);
        for word in (0..=u16::MAX).step_by(7) {
            let mut changed = base;
            changed[4..6].copy_from_slice(&word.to_be_bytes());
            let expected = with_checksum(changed);
            let check = update16(
                u16::from_be_bytes([base[10], base[11]]),
                u16::from_be_bytes([base[4], base[5]]),
                word,
            );
            assert_eq!(
                check.to_be_bytes(),
                [expected[10], expected[11]],
                "{word:#x}"
            );
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        assert_eq!(udp_update32(0, 0x1234_5678, 0x9abc_def0), 0);
        assert_eq!(udp_update16(0, 1, 2), 0);
    }

    #[test]
    fn udp_computed_zero_becomes_ffff() {
        // Choose new so the sum comes out as 0: ~(~0x0001 + ~0x0000 + new)
        // with new = 0x0001 gives ~(0xfffe + 0xffff + 1) = ~0xffff(after fold) = 0.
        assert_eq!(update16(0x0001, 0x0000, 0x0001), 0x0000);
        assert_eq!(udp_update16(0x0001, 0x0000, 0x0001), 0xffff);
    }
}
