//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of
//! prime size `M` in which every backend owns about `M × weight / Σweights`
//! slots, and which changes little when a backend comes or goes.
//!
//! Deterministic across hosts: backends are identified by their address and
//! port (not by local ids or names), ordered by that identity before the
//! table is filled, and hashed with fixed functions. The same configuration
//! therefore yields a byte-identical table on every edge host behind ECMP.

use std::net::IpAddr;

/// Default table size: a prime comfortably above 100 × the most backends a
/// service may have (64), so each backend's share is even to within ~1 %.
pub const DEFAULT_TABLE_SIZE: u32 = 16_411;

/// A backend as Maglev sees it: a stable identity and a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub address: IpAddr,
    /// 0 when the backend uses the service's port.
    pub port: u16,
    pub weight: u32,
}

impl Member {
    /// Address and port bytes (an IPv4 member's 6 bytes are what every
    /// earlier version hashed: its tables stay byte-identical).
    fn identity(&self) -> Vec<u8> {
        let mut bytes = match self.address {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        bytes.extend_from_slice(&self.port.to_be_bytes());
        bytes
    }
}

/// FNV-1a 64 with a seed, finished with splitmix64 for avalanche.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for byte in bytes {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether `n` is prime (table sizes are validated with it).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// Builds the table: entry `i` is the index (into `members`) of the backend
/// owning slot `i`. Empty when there is no member with a weight.
///
/// Panics if `size` is not prime (callers validate configuration first).
pub fn build(members: &[Member], size: u32) -> Vec<u32> {
    assert!(is_prime(size), "Maglev table size {size} is not prime");
    let m = u64::from(size);
    // Fill in identity order so every host fills alike; map back at the end.
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight > 0)
        .collect();
    order.sort_by_key(|&i| members[i].identity());
    if order.is_empty() {
        return Vec::new();
    }
    let perms: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let id = members[i].identity();
            let offset = hash(&id, 0x6d61_676c_6576_0001) % m;
            let skip = hash(&id, 0x6d61_676c_6576_0002) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_weight = order.iter().map(|&i| members[i].weight).max().unwrap_or(1) as u64;

    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; size as usize];
    let mut next = vec![0u64; order.len()];
    let mut credit = vec![0u64; order.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (k, &member) in order.iter().enumerate() {
            // Weighted turns: a member claims a slot each time its credit
            // reaches the largest weight.
            credit[k] += u64::from(members[member].weight);
            while credit[k] >= max_weight {
                credit[k] -= max_weight;
                let (offset, skip) = perms[k];
                loop {
                    let slot = ((offset + next[k] * skip) % m) as usize;
                    next[k] += 1;
                    if table[slot] == EMPTY {
                        table[slot] = member as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    table
}

/// Slots owned by each member (by index into `members`).
pub fn shares(table: &[u32], members: usize) -> Vec<usize> {
    let mut counts = vec![0; members];
    for &owner in table {
        counts[owner as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The members of the golden table (addresses, ports, weights).
    fn golden_members() -> Vec<Member> {
        [
            (11, 8080, 1),
            (12, 8080, 1),
            (13, 0, 2),
            (14, 9090, 1),
            (15, 8080, 3),
        ]
        .into_iter()
        .map(|(last, port, weight)| Member {
            address: Ipv4Addr::new(198, 51, 100, last).into(),
            port,
            weight,
        })
        .collect()
    }

    /// Every edge host behind ECMP must build the same table from the same
    /// configuration, across versions too: a change of the hash or the fill
    /// order would split a fleet's flows silently. The table is compared
    /// with one committed with the code (`maglev_golden.txt`); change it
    /// only with a release note that says every host must be upgraded at
    /// once.
    #[test]
    fn the_table_matches_the_committed_golden_table() {
        let table = build(&golden_members(), 251);
        let text = table
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        if std::env::var_os("FAILOVER_WRITE_GOLDEN").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/decide/maglev_golden.txt"),
                format!("{text}\n"),
            )
            .unwrap();
        }
        assert_eq!(text, include_str!("maglev_golden.txt").trim());
    }

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                address: Ipv4Addr::new(198, 51, (100 + i / 250) as u8, (i % 250 + 1) as u8).into(),
                port: 8080,
                weight: 1,
            })
            .collect()
    }

    /// Addresses of the owner of each slot, to compare tables whose member
    /// lists differ.
    fn owners(table: &[u32], members: &[Member]) -> Vec<Member> {
        table.iter().map(|&i| members[i as usize]).collect()
    }

    #[test]
    fn every_slot_is_owned_and_shares_are_even() {
        for n in [1, 2, 3, 10, 64] {
            let list = members(n);
            let table = build(&list, DEFAULT_TABLE_SIZE);
            assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
            let fair = DEFAULT_TABLE_SIZE as f64 / n as f64;
            for (i, share) in shares(&table, n).into_iter().enumerate() {
                let error = (share as f64 - fair).abs() / fair;
                assert!(
                    error < 0.02,
                    "n={n} member {i}: {share} slots vs fair {fair:.0}"
                );
            }
        }
    }

    #[test]
    fn removing_one_of_n_moves_only_its_slots_and_about_one_percent_more() {
        for n in [5, 10, 50] {
            let list = members(n);
            let before = owners(&build(&list, DEFAULT_TABLE_SIZE), &list);
            for removed in [0, n / 2, n - 1] {
                let mut fewer = list.clone();
                let gone = fewer.remove(removed);
                let after = owners(&build(&fewer, DEFAULT_TABLE_SIZE), &fewer);
                let others_moved = before
                    .iter()
                    .zip(&after)
                    .filter(|(b, a)| **b != gone && b != a)
                    .count();
                let fraction = others_moved as f64 / DEFAULT_TABLE_SIZE as f64;
                assert!(
                    fraction <= 0.015,
                    "n={n}: {:.2} % of other slots moved",
                    fraction * 100.0
                );
            }
        }
    }

    #[test]
    fn adding_one_takes_about_a_fair_share() {
        for n in [4, 10, 40] {
            let list = members(n + 1);
            let before = owners(&build(&list[..n], DEFAULT_TABLE_SIZE), &list[..n]);
            let after = owners(&build(&list, DEFAULT_TABLE_SIZE), &list);
            let taken = after.iter().filter(|m| **m == list[n]).count() as f64;
            let fair = DEFAULT_TABLE_SIZE as f64 / (n + 1) as f64;
            assert!(
                (taken - fair).abs() / fair < 0.05,
                "n={n}: new member took {taken}, fair {fair:.0}"
            );
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64;
            // Slots that moved between old members: Maglev's small extra churn.
            let extra = (moved - taken) / DEFAULT_TABLE_SIZE as f64;
            assert!(
                extra <= 0.015,
                "n={n}: {moved} slots changed for {taken} taken"
            );
        }
    }

    #[test]
    fn weights_are_honoured_within_a_few_percent() {
        let mut list = members(4);
        for (member, weight) in list.iter_mut().zip([1, 2, 3, 4]) {
            member.weight = weight;
        }
        let table = build(&list, DEFAULT_TABLE_SIZE);
        let total: u32 = list.iter().map(|m| m.weight).sum();
        for (i, share) in shares(&table, list.len()).into_iter().enumerate() {
            let expected = DEFAULT_TABLE_SIZE as f64 * f64::from(list[i].weight) / f64::from(total);
            assert!(
                (share as f64 - expected).abs() / expected < 0.03,
                "weight {}: {share} vs {expected:.0}",
                list[i].weight
            );
        }
        // Weight 0 takes nothing.
        list[0].weight = 0;
        let table = build(&list, DEFAULT_TABLE_SIZE);
        assert_eq!(shares(&table, list.len())[0], 0);
    }

    #[test]
    fn same_members_in_any_order_give_the_same_table() {
        let list = members(20);
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(
            owners(&build(&list, DEFAULT_TABLE_SIZE), &list),
            owners(&build(&reversed, DEFAULT_TABLE_SIZE), &reversed)
        );
    }

    #[test]
    fn sizes_must_be_prime() {
        assert!(is_prime(DEFAULT_TABLE_SIZE) && is_prime(65_537) && is_prime(251));
        assert!(!is_prime(65_536) && !is_prime(1) && !is_prime(0));
        assert!(build(&[], DEFAULT_TABLE_SIZE).is_empty());
    }
}
