//! The program's own answers in the fuzzer: a frame too big for its next
//! hop, sent with "don't fragment", comes back as ICMP "fragmentation
//! needed" (`pmtu` in the data path). Checked here from the bytes alone:
//! addressed back to the sender from the address it sent to, the input's
//! IP header and first 8 transport bytes quoted unchanged, every checksum
//! valid, an MTU below the packet's length.

use super::XDP_TX;
use crate::{
    lab::RunResult,
    packet::{ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, residue},
};

/// Where the IPv4 header starts in an untagged or single-tagged frame.
fn l3_offset(frame: &[u8]) -> Option<usize> {
    match frame.get(12..14)? {
        [0x08, 0x00] => Some(14),
        [0x81, 0x00] | [0x88, 0xa8] if frame.get(16..18)? == [0x08, 0x00] => Some(18),
        _ => None,
    }
}

/// Whether the run's output is such an answer (then [`check`] judges it).
pub(super) fn is_answer(result: &RunResult) -> bool {
    let out = &result.output;
    result.action == XDP_TX
        && l3_offset(out).is_some_and(|l3| {
            out.get(l3 + 9) == Some(&1)
                && out.get(l3 + 20..l3 + 22) == Some(&[ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED])
        })
}

/// Checks an answer against its input.
pub(super) fn check(input: &[u8], result: &RunResult) -> Result<(), String> {
    let out = &result.output;
    let (Some(l3_in), Some(l3)) = (l3_offset(input), l3_offset(out)) else {
        return Err("answer: no IPv4 header".into());
    };
    if l3_in != l3 || input[12..l3] != out[12..l3] {
        return Err("answer: the L2 header's type or tag changed".into());
    }
    if out[..6] != input[6..12] || out[6..12] != input[..6] {
        return Err("answer: not addressed back to the sender's MAC".into());
    }
    let ihl = usize::from(input[l3_in] & 0x0f) * 4;
    let quoted = ihl + 8;
    let tot_len = usize::from(u16::from_be_bytes([input[l3_in + 2], input[l3_in + 3]]));
    if input[l3_in + 6] & 0x40 == 0 {
        return Err("answer: the input may be fragmented".into());
    }
    if out.len() != l3 + 28 + quoted {
        return Err(format!(
            "answer: {} bytes, not {}",
            out.len(),
            l3 + 28 + quoted
        ));
    }
    let ip = &out[l3..l3 + 20];
    if ip[0] != 0x45 || usize::from(u16::from_be_bytes([ip[2], ip[3]])) != 28 + quoted {
        return Err("answer: bad IPv4 header".into());
    }
    if ip[12..16] != input[l3_in + 16..l3_in + 20] || ip[16..20] != input[l3_in + 12..l3_in + 16] {
        return Err("answer: not from the address sent to, back to the sender".into());
    }
    if out[l3 + 28..] != input[l3_in..l3_in + quoted] {
        return Err("answer: the quote is not the input's header and 8 bytes".into());
    }
    let mtu = usize::from(u16::from_be_bytes([out[l3 + 26], out[l3 + 27]]));
    if mtu == 0 || mtu >= tot_len {
        return Err(format!("answer: MTU {mtu} for a {tot_len}-byte packet"));
    }
    if residue(ip) != 0xffff || residue(&out[l3 + 20..]) != 0xffff {
        return Err("answer: invalid checksums".into());
    }
    Ok(())
}
