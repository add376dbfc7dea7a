//! What the data path gets for a service: the selection (fallback for stale
//! slots, and new-flow hashing without a table) and the Maglev table, for
//! each redundancy mode.
//!
//! - `Tiers`: new flows go to the up backends of the most preferred tier that
//!   has any (active-passive is one backend per tier; active-active is several
//!   in tier 0). The table is Maglev over them, each weighted by its slow
//!   start's ramp; while the whole tier is ramping up (a failback), the
//!   next tier that has up backends keeps the rest of the weight.
//! - `NPlusOne`: the most preferred configured tier holds the N active
//!   members; up backends of later tiers are spares. The table is Maglev over
//!   all N members, so each owns fixed slots; a member that is not up hands
//!   exactly its slots to one spare of its own, and the other members' slots
//!   do not move. Members left without a spare have their slots spread by a
//!   second Maglev table over whoever serves.

use std::collections::BTreeMap;

use failover_common::MAX_SELECTION;

use crate::{
    decide::maglev::{self, Member},
    model::{BackendSpec, BackendState, RAMP_FULL},
};

/// The selection new flows are hashed over: the ids of the up backends in
/// the most preferred tier that has any, in id order. Empty when no backend
/// is up. Returns (active tier, ids).
pub fn selection<'a>(backends: impl IntoIterator<Item = (u32, &'a BackendSpec)>) -> (u8, Vec<u32>) {
    let mut up: Vec<(u8, u32)> = backends
        .into_iter()
        .filter(|(_, spec)| spec.state == BackendState::Up)
        .map(|(id, spec)| (spec.tier, id))
        .collect();
    up.sort_unstable();
    let Some(&(active_tier, _)) = up.first() else {
        return (0, Vec::new());
    };
    let ids: Vec<u32> = up
        .into_iter()
        .take_while(|(tier, _)| *tier == active_tier)
        .map(|(_, id)| id)
        .take(MAX_SELECTION)
        .collect();
    (active_tier, ids)
}

/// Who takes new flows among `backends` (id → spec with its state): the
/// selection [`plan`] publishes. Every report of who takes new flows (logs,
/// events, status, metrics, dry runs) comes from here, never from a copy.
pub fn new_flows_to(backends: &BTreeMap<u32, BackendSpec>, mode: Mode) -> Vec<u32> {
    plan(backends, mode, 0).selection
}

/// Where a SYN goes when every backend of `selection` refused it
/// (`redispatch`): who would take new flows if they were all down — the
/// next tier's backends, or N+1's spares. At most `MAX_SPARES`.
pub fn spares(backends: &BTreeMap<u32, BackendSpec>, mode: Mode, selection: &[u32]) -> Vec<u32> {
    let mut without = backends.clone();
    for id in selection {
        if let Some(backend) = without.get_mut(id) {
            backend.state = BackendState::Down;
        }
    }
    let mut ids = plan(&without, mode, 0).selection;
    ids.truncate(failover_common::MAX_SPARES);
    ids
}

/// How a service survives failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Tiers,
    NPlusOne,
}

/// The service value's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub active_tier: u8,
    pub selection: Vec<u32>,
    /// Backend id per slot; `None` without a table or without any backend.
    pub table: Option<Vec<u32>>,
}

/// A backend's Maglev member: its weight in thousandths, times
/// `per_mille` of it (a uniform factor leaves every table as it was).
fn member(spec: &BackendSpec, per_mille: u16) -> Member {
    Member {
        address: spec.addr,
        port: spec.port.unwrap_or(0),
        weight: spec.weight * u32::from(per_mille.min(RAMP_FULL)),
    }
}

/// The one table builder: Maglev over `(id, per mille of its weight)`,
/// as backend ids per slot.
fn maglev_weighted(
    backends: &BTreeMap<u32, BackendSpec>,
    weighted: &[(u32, u16)],
    size: u32,
) -> Vec<u32> {
    let members: Vec<Member> = weighted
        .iter()
        .map(|(id, per_mille)| member(&backends[id], *per_mille))
        .collect();
    maglev::build(&members, size)
        .into_iter()
        .map(|i| weighted[i as usize].0)
        .collect()
}

/// Maglev over `ids`, each at its slow start's ramp.
fn maglev_over(backends: &BTreeMap<u32, BackendSpec>, ids: &[u32], size: u32) -> Vec<u32> {
    let weighted: Vec<(u32, u16)> = ids.iter().map(|id| (*id, backends[id].ramp)).collect();
    maglev_weighted(backends, &weighted, size)
}

/// Maglev over `ids` at their full weights: N+1's members own fixed slots,
/// which a ramp would move (slow start does not apply there).
fn maglev_fixed(backends: &BTreeMap<u32, BackendSpec>, ids: &[u32], size: u32) -> Vec<u32> {
    let weighted: Vec<(u32, u16)> = ids.iter().map(|id| (*id, RAMP_FULL)).collect();
    maglev_weighted(backends, &weighted, size)
}

/// While every backend of the active tier ramps up (slow start after a
/// failback), the next tier with up backends keeps the share they do not
/// take yet: the ids to add and the per-mille of their weight.
fn ramp_blend(backends: &BTreeMap<u32, BackendSpec>, active: &[u32]) -> Option<(Vec<u32>, u16)> {
    let ramp = active.iter().map(|id| backends[id].ramp).max()?;
    if ramp >= RAMP_FULL {
        return None;
    }
    let tier = backends[active.first()?].tier;
    let (_, next) = selection(
        backends
            .iter()
            .filter(|(_, spec)| spec.tier > tier)
            .map(|(id, spec)| (*id, spec)),
    );
    (!next.is_empty()).then_some((next, RAMP_FULL - ramp))
}

/// Maglev over `ids` at their ramps and, blended in, `rest` at
/// `rest_ramp` of its weight.
fn maglev_blended(
    backends: &BTreeMap<u32, BackendSpec>,
    ids: &[u32],
    rest: &[u32],
    rest_ramp: u16,
    size: u32,
) -> Vec<u32> {
    let weighted: Vec<(u32, u16)> = ids
        .iter()
        .map(|id| (*id, backends[id].ramp))
        .chain(rest.iter().map(|id| (*id, rest_ramp)))
        .collect();
    maglev_weighted(backends, &weighted, size)
}

pub fn plan(backends: &BTreeMap<u32, BackendSpec>, mode: Mode, table_size: u32) -> Plan {
    match mode {
        Mode::Tiers => {
            let (active_tier, mut ids) = selection(backends.iter().map(|(id, spec)| (*id, spec)));
            if table_size != 0
                && let Some((rest, rest_ramp)) = ramp_blend(backends, &ids)
            {
                let table = maglev_blended(backends, &ids, &rest, rest_ramp, table_size);
                ids.extend(rest);
                ids.truncate(MAX_SELECTION);
                return Plan {
                    active_tier,
                    selection: ids,
                    table: Some(table),
                };
            }
            // One backend needs no table: the selection picks it alike, and a
            // failover to a single standby then writes one service value
            // instead of a whole table.
            let table =
                (table_size != 0 && ids.len() > 1).then(|| maglev_over(backends, &ids, table_size));
            Plan {
                active_tier,
                selection: ids,
                table,
            }
        }
        Mode::NPlusOne => n_plus_one(backends, table_size),
    }
}

fn n_plus_one(backends: &BTreeMap<u32, BackendSpec>, table_size: u32) -> Plan {
    let Some(best) = backends.values().map(|b| b.tier).min() else {
        return Plan {
            active_tier: 0,
            selection: Vec::new(),
            table: None,
        };
    };
    let up = |id: &u32| backends[id].state == BackendState::Up;
    let members: Vec<u32> = backends
        .iter()
        .filter(|(_, b)| b.tier == best)
        .map(|(id, _)| *id)
        .collect();
    let mut spares: Vec<u32> = backends
        .iter()
        .filter(|(_, b)| b.tier > best)
        .map(|(id, _)| *id)
        .filter(up)
        .collect();
    spares.sort_by_key(|id| (backends[id].tier, *id));
    // Each member that is down gets the next free spare, in member order.
    let mut stand_in = BTreeMap::new();
    let mut free = spares.into_iter();
    for id in members.iter().filter(|id| !up(id)) {
        match free.next() {
            Some(spare) => stand_in.insert(*id, spare),
            None => break,
        };
    }
    let mut serving: Vec<u32> = members.iter().copied().filter(up).collect();
    serving.extend(stand_in.values().copied());
    serving.truncate(MAX_SELECTION);
    let active_tier = if members.iter().any(up) {
        best
    } else {
        serving.first().map_or(best, |id| backends[id].tier)
    };
    if serving.is_empty() || table_size == 0 {
        let table = None;
        return Plan {
            active_tier,
            selection: serving,
            table,
        };
    }
    let base = maglev_fixed(backends, &members, table_size);
    let needs_fallback = members
        .iter()
        .any(|id| !up(id) && !stand_in.contains_key(id));
    let fallback = needs_fallback.then(|| maglev_fixed(backends, &serving, table_size));
    let table = base
        .iter()
        .enumerate()
        .map(|(slot, owner)| {
            if up(owner) {
                *owner
            } else if let Some(spare) = stand_in.get(owner) {
                *spare
            } else {
                fallback.as_ref().expect("built when needed")[slot]
            }
        })
        .collect();
    Plan {
        active_tier,
        selection: serving,
        table: Some(table),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SIZE: u32 = 4099;

    fn backends(tiers: &[u8]) -> BTreeMap<u32, BackendSpec> {
        tiers
            .iter()
            .enumerate()
            .map(|(i, tier)| {
                (
                    i as u32,
                    BackendSpec::new(Ipv4Addr::new(198, 51, 100, i as u8 + 1)).tier(*tier),
                )
            })
            .collect()
    }

    fn down(mut b: BTreeMap<u32, BackendSpec>, id: u32) -> BTreeMap<u32, BackendSpec> {
        b.get_mut(&id).unwrap().state = BackendState::Down;
        b
    }

    #[test]
    fn a_spare_takes_exactly_the_failed_members_slots() {
        let all = backends(&[0, 0, 0, 1]);
        let healthy = plan(&all, Mode::NPlusOne, SIZE);
        assert_eq!(healthy.selection, vec![0, 1, 2]);
        let before = healthy.table.unwrap();
        assert!(
            !before.contains(&3),
            "the spare serves nothing while all members are up"
        );

        let failed = plan(&down(all.clone(), 1), Mode::NPlusOne, SIZE);
        assert_eq!(failed.selection, vec![0, 2, 3]);
        let after = failed.table.unwrap();
        for (slot, (b, a)) in before.iter().zip(&after).enumerate() {
            let expected = if *b == 1 { 3 } else { *b };
            assert_eq!(*a, expected, "slot {slot}");
        }
        // Recovery: the original table comes back exactly.
        assert_eq!(plan(&all, Mode::NPlusOne, SIZE).table.unwrap(), before);
    }

    #[test]
    fn without_a_spare_the_failed_members_slots_spread_over_who_serves() {
        let all = backends(&[0, 0, 0, 1]);
        let two_down = down(down(all, 0), 1);
        let plan = plan(&two_down, Mode::NPlusOne, SIZE);
        let table = plan.table.unwrap();
        assert!(table.iter().all(|id| [2, 3].contains(id)));
        assert!(table.contains(&2) && table.contains(&3));
    }

    #[test]
    fn tiers_mode_moves_a_failed_backends_slots_to_the_survivors_of_its_tier() {
        let all = backends(&[0, 0, 0, 1]);
        let before = plan(&all, Mode::Tiers, SIZE).table.unwrap();
        let failed = plan(&down(all, 0), Mode::Tiers, SIZE);
        assert_eq!(failed.selection, vec![1, 2]);
        let after = failed.table.unwrap();
        assert!(after.iter().all(|id| [1, 2].contains(id)));
        // Maglev: the failed backend's slots move, and hardly any other.
        let kept: Vec<(&u32, &u32)> = before
            .iter()
            .zip(&after)
            .filter(|(b, _)| **b != 0)
            .collect();
        let moved = kept.iter().filter(|(b, a)| b != a).count();
        assert!(
            moved * 100 <= kept.len() * 2,
            "{moved} of {} other slots moved",
            kept.len()
        );
    }

    #[test]
    fn a_single_backend_needs_no_table() {
        // Active-passive: the standby alone takes new flows through the
        // selection, and a failover writes no table.
        let all = backends(&[0, 1]);
        let failed = plan(&down(all.clone(), 0), Mode::Tiers, SIZE);
        assert_eq!(failed.selection, vec![1]);
        assert!(failed.table.is_none());
        assert!(plan(&all, Mode::Tiers, SIZE).table.is_none());
    }

    #[test]
    fn nothing_up_means_no_table() {
        let all = down(down(backends(&[0, 1]), 0), 1);
        for mode in [Mode::Tiers, Mode::NPlusOne] {
            let plan = plan(&all, mode, SIZE);
            assert!(plan.selection.is_empty() && plan.table.is_none());
        }
    }

    fn spec(last: u8, tier: u8, state: BackendState) -> BackendSpec {
        BackendSpec::new(Ipv4Addr::new(198, 51, 100, last))
            .tier(tier)
            .state(state)
    }

    /// Share of the table's slots per backend id.
    fn shares(table: &[u32]) -> BTreeMap<u32, f64> {
        let mut counts = BTreeMap::new();
        for id in table {
            *counts.entry(*id).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .map(|(id, n)| (id, n as f64 / table.len() as f64))
            .collect()
    }

    #[test]
    fn a_failing_back_primary_ramps_its_share_and_the_standby_keeps_the_rest() {
        for ramp in [100u16, 250, 500, 900] {
            let mut primary = spec(1, 0, BackendState::Up);
            primary.ramp = ramp;
            let all: BTreeMap<u32, BackendSpec> =
                [(0, primary), (1, spec(2, 1, BackendState::Up))].into();
            let plan = plan(&all, Mode::Tiers, SIZE);
            assert_eq!(plan.active_tier, 0);
            assert_eq!(plan.selection, vec![0, 1]);
            let share = shares(&plan.table.unwrap())[&0];
            let want = f64::from(ramp) / f64::from(RAMP_FULL);
            assert!((share - want).abs() < 0.01, "ramp {ramp}: {share}");
        }
        // At full weight: the primary alone, no table.
        let all: BTreeMap<u32, BackendSpec> = [
            (0, spec(1, 0, BackendState::Up)),
            (1, spec(2, 1, BackendState::Up)),
        ]
        .into();
        let plan = plan(&all, Mode::Tiers, SIZE);
        assert_eq!((plan.selection, plan.table), (vec![0], None));
    }

    #[test]
    fn a_returning_member_of_a_tier_ramps_its_weight_among_the_others() {
        let mut returning = spec(3, 0, BackendState::Up);
        returning.ramp = 200;
        let all: BTreeMap<u32, BackendSpec> = [
            (0, spec(1, 0, BackendState::Up)),
            (1, spec(2, 0, BackendState::Up)),
            (2, returning),
            (3, spec(4, 1, BackendState::Up)),
        ]
        .into();
        let plan = plan(&all, Mode::Tiers, SIZE);
        assert_eq!(
            plan.selection,
            vec![0, 1, 2],
            "the next tier is not blended in"
        );
        let share = shares(&plan.table.unwrap())[&2];
        // 0.2 / (1 + 1 + 0.2)
        assert!((share - 0.2 / 2.2).abs() < 0.01, "{share}");
    }

    #[test]
    fn selection_uses_most_preferred_tier_with_an_up_backend() {
        let specs = [
            spec(1, 0, BackendState::Down),
            spec(2, 1, BackendState::Up),
            spec(3, 1, BackendState::Up),
            spec(4, 2, BackendState::Up),
        ];
        let (tier, ids) = selection(specs.iter().enumerate().map(|(i, s)| (i as u32 + 10, s)));
        assert_eq!(tier, 1);
        assert_eq!(ids, vec![11, 12]);
    }

    #[test]
    fn draining_and_down_backends_take_no_new_flows() {
        let specs = [
            spec(1, 0, BackendState::Draining),
            spec(2, 0, BackendState::Up),
        ];
        let (_, ids) = selection(specs.iter().enumerate().map(|(i, s)| (i as u32, s)));
        assert_eq!(ids, vec![1]);
    }

    #[test]
    fn empty_selection_when_nothing_is_up() {
        let specs = [spec(1, 0, BackendState::Down)];
        assert_eq!(selection(specs.iter().map(|s| (0, s))), (0, Vec::new()));
    }
}
