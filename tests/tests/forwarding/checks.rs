//! Tallies of answers, flow keys, and counters read once they settle.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use failover_common::{FlowKey, ipv4_addr};

use crate::lab::BACKENDS;

pub fn tally<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    counts
}

/// Every answer names a backend, and each backend got at least `min_share`
/// of them.
pub fn assert_spread(what: &str, counts: &BTreeMap<String, usize>, total: usize, min_share: f64) {
    for name in counts.keys() {
        assert!(
            BACKENDS.iter().any(|b| b.name == name),
            "{what}: unexpected answer {name:?}"
        );
    }
    for host in &BACKENDS {
        let got = counts.get(host.name).copied().unwrap_or(0);
        assert!(
            got as f64 >= min_share * total as f64,
            "{what}: {} got {got} of {total} flows (want at least {:.0} %): {counts:?}",
            host.name,
            min_share * 100.0
        );
    }
}

pub fn flow_key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), proto: u8) -> FlowKey {
    FlowKey::ipv4(
        ipv4_addr(src.0.octets()),
        ipv4_addr(dst.0.octets()),
        src.1.to_be(),
        dst.1.to_be(),
        proto,
    )
}

/// Reads counters until two reads 100 ms apart agree (late FIN/ACKs settle).
pub fn settled<T: PartialEq>(mut read: impl FnMut() -> T) -> T {
    let mut last = read();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("counters never settled");
}
