use std::{collections::BTreeMap, net::Ipv4Addr};

use super::*;
use crate::{
    decide::select::{self, Mode},
    model::BackendSpec,
};

/// Who takes new flows once the policy's states are published (backend
/// ids are the indices): the one decision the agent reports and writes.
fn active(policy: &ServicePolicy) -> Vec<usize> {
    let states = policy.states(Instant::now());
    let backends: BTreeMap<u32, BackendSpec> = states
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let spec = BackendSpec::new(Ipv4Addr::new(198, 51, 100, i as u8 + 1))
                .tier(policy.tier(i))
                .state(*state);
            (i as u32, spec)
        })
        .collect();
    let mode = if policy.is_n_plus_one() {
        Mode::NPlusOne
    } else {
        Mode::Tiers
    };
    let mut ids = select::new_flows_to(&backends, mode);
    ids.sort_unstable();
    ids.into_iter().map(|id| id as usize).collect()
}

const PRIMARY: usize = 0;
const STANDBY: usize = 1;

fn active_passive(failback: Failback) -> ServicePolicy {
    ServicePolicy::new(failback, [(0, BackendState::Up), (1, BackendState::Up)])
}

fn to(backend: usize, state: BackendState) -> Change {
    Change { backend, state }
}

#[test]
fn failover_stops_serving_the_failed_primary() {
    let mut policy = active_passive(Failback::Manual);
    assert_eq!(policy.active_tier(), Some(0));
    assert_eq!(
        policy.on_health(PRIMARY, false, Instant::now()),
        vec![to(PRIMARY, BackendState::Down)]
    );
    assert_eq!(active(&policy), vec![STANDBY]);
}

#[test]
fn auto_failback_waits_for_the_delay() {
    let delay = Duration::from_secs(10);
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Auto { delay });
    policy.on_health(PRIMARY, false, t0);
    assert!(
        policy.on_health(PRIMARY, true, t0).is_empty(),
        "held, not serving yet"
    );
    assert_eq!(policy.next_deadline(), Some(t0 + delay));
    assert!(policy.on_tick(t0 + delay / 2).is_empty());
    assert_eq!(
        policy.on_tick(t0 + delay),
        vec![to(PRIMARY, BackendState::Up)]
    );
    assert_eq!(active(&policy), vec![PRIMARY]);
    // The standby stays up: its established flows stay on it.
    assert_eq!(policy.desired(STANDBY, t0 + delay), BackendState::Up);
}

#[test]
fn failing_again_during_the_hold_cancels_the_failback() {
    let delay = Duration::from_secs(10);
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Auto { delay });
    policy.on_health(PRIMARY, false, t0);
    policy.on_health(PRIMARY, true, t0);
    policy.on_health(PRIMARY, false, t0 + Duration::from_secs(1));
    assert!(policy.on_tick(t0 + delay * 2).is_empty());
    assert!(!policy.serving(PRIMARY));
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    policy.on_health(PRIMARY, false, t0);
    assert!(policy.on_health(PRIMARY, true, t0).is_empty());
    assert_eq!(policy.hold(PRIMARY), Some(Hold::Operator));
    assert!(policy.on_tick(t0 + Duration::from_secs(3600)).is_empty());
    assert_eq!(policy.failback_now(t0), vec![to(PRIMARY, BackendState::Up)]);
}

#[test]
fn losing_the_standby_while_the_primary_is_held_serves_the_primary_at_once() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    policy.on_health(PRIMARY, false, t0);
    policy.on_health(PRIMARY, true, t0);
    let changes = policy.on_health(STANDBY, false, t0);
    assert_eq!(
        changes,
        vec![
            to(PRIMARY, BackendState::Up),
            to(STANDBY, BackendState::Down)
        ]
    );
}

#[test]
fn recovery_in_the_serving_tier_or_with_nothing_serving_is_immediate() {
    let t0 = Instant::now();
    let mut policy = ServicePolicy::new(
        Failback::Manual,
        [(0, BackendState::Up), (0, BackendState::Up)],
    );
    policy.on_health(1, false, t0);
    assert_eq!(policy.on_health(1, true, t0), vec![to(1, BackendState::Up)]);

    let mut policy = active_passive(Failback::Manual);
    policy.on_health(PRIMARY, false, t0);
    policy.on_health(STANDBY, false, t0);
    assert_eq!(
        policy.on_health(PRIMARY, true, t0),
        vec![to(PRIMARY, BackendState::Up)]
    );
}

#[test]
fn switchover_serves_the_target_alone_and_leaves_no_one_drained() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    let changes = policy.switchover(STANDBY, t0).unwrap();
    assert_eq!(changes, vec![to(PRIMARY, BackendState::Draining)]);
    assert_eq!(active(&policy), vec![STANDBY]);
    assert!(policy.standing_by(PRIMARY, t0));
    assert_eq!(policy.admin(PRIMARY), Admin::Normal);
    // And back: the primary takes new flows, the standby is a plain
    // standby again (up, its established flows stay).
    let changes = policy.switchover(PRIMARY, t0).unwrap();
    assert_eq!(changes, vec![to(PRIMARY, BackendState::Up)]);
    assert_eq!(policy.desired(STANDBY, t0), BackendState::Up);
    assert_eq!(policy.admin(STANDBY), Admin::Normal);
    // So the next failure of the primary is an ordinary failover.
    policy.on_health(PRIMARY, false, t0);
    assert_eq!(active(&policy), vec![STANDBY]);
    policy.on_health(STANDBY, false, t0);
    assert_eq!(
        policy.switchover(STANDBY, t0),
        Err(Refused::TargetUnhealthy)
    );
}

#[test]
fn the_target_failing_ends_the_switchover() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    policy.switchover(STANDBY, t0).unwrap();
    let changes = policy.on_health(STANDBY, false, t0);
    assert_eq!(
        changes,
        vec![
            to(PRIMARY, BackendState::Up),
            to(STANDBY, BackendState::Down)
        ]
    );
    assert_eq!(policy.switched_to(), None);
    // Its recovery is a plain recovery in a worse tier: no new flows.
    policy.on_health(STANDBY, true, t0);
    assert_eq!(active(&policy), vec![PRIMARY]);
}

#[test]
fn switchover_within_an_active_active_tier_and_release() {
    let t0 = Instant::now();
    let members = [
        (0, BackendState::Up),
        (0, BackendState::Up),
        (0, BackendState::Up),
        (1, BackendState::Up),
    ];
    let mut policy = ServicePolicy::new(Failback::Manual, members);
    policy.switchover(1, t0).unwrap();
    assert_eq!(active(&policy), vec![1]);
    assert_eq!(
        policy.desired(3, t0),
        BackendState::Up,
        "a worse tier is not drained"
    );
    assert_eq!(
        policy.release_switchover(t0),
        vec![to(0, BackendState::Up), to(2, BackendState::Up)]
    );
    assert_eq!(active(&policy), vec![0, 1, 2]);
    // Draining the target ends the switchover too.
    policy.switchover(3, t0).unwrap();
    assert_eq!(active(&policy), vec![3]);
    policy.drain(3, None, t0).unwrap();
    assert_eq!(active(&policy), vec![0, 1, 2]);
    assert_eq!(policy.switched_to(), None);
}

#[test]
fn drain_with_deadline_ends_in_down_and_the_last_backend_cannot_be_drained() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    let deadline = Duration::from_secs(30);
    assert_eq!(
        policy.drain(PRIMARY, Some(deadline), t0).unwrap(),
        vec![to(PRIMARY, BackendState::Draining)]
    );
    assert_eq!(policy.next_deadline(), Some(t0 + deadline));
    assert_eq!(
        policy.on_tick(t0 + deadline),
        vec![to(PRIMARY, BackendState::Down)]
    );
    assert!(
        policy.drain(STANDBY, None, t0).is_err(),
        "nothing would take new flows"
    );
    assert!(policy.maintenance(STANDBY, t0).is_err());
    assert_eq!(
        policy.restore(PRIMARY, t0),
        vec![to(PRIMARY, BackendState::Up)]
    );
}

#[test]
fn n_plus_one_holds_a_recovering_member_while_its_spare_serves() {
    let t0 = Instant::now();
    let delay = Duration::from_secs(5);
    let members = [
        (0, BackendState::Up),
        (0, BackendState::Up),
        (1, BackendState::Up),
    ];
    let mut policy = ServicePolicy::new(Failback::Auto { delay }, members).n_plus_one(true);
    assert_eq!(active(&policy), vec![0, 1], "the spare takes nothing");
    assert_eq!(
        policy.on_health(0, false, t0),
        vec![to(0, BackendState::Down)]
    );
    assert_eq!(active(&policy), vec![1, 2], "the spare stands in");
    assert!(
        policy.on_health(0, true, t0).is_empty(),
        "held: the spare stands in"
    );
    assert_eq!(active(&policy), vec![1, 2]);
    assert_eq!(policy.on_tick(t0 + delay), vec![to(0, BackendState::Up)]);
    assert_eq!(active(&policy), vec![0, 1]);
    // Without N+1 the member rejoins its tier at once.
    let mut tiers = ServicePolicy::new(Failback::Auto { delay }, members);
    tiers.on_health(0, false, t0);
    assert_eq!(tiers.on_health(0, true, t0), vec![to(0, BackendState::Up)]);
}

#[test]
fn dead_flow_policy_keep_drains_instead_of_cutting() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual).dead_flows(DeadFlows::Keep);
    assert_eq!(
        policy.on_health(PRIMARY, false, t0),
        vec![to(PRIMARY, BackendState::Draining)]
    );
    assert_eq!(active(&policy), vec![STANDBY]);
}

fn three_in_tier_0_and_a_standby(policy: QuorumPolicy) -> ServicePolicy {
    let members = [
        (0, BackendState::Up),
        (0, BackendState::Up),
        (0, BackendState::Up),
        (1, BackendState::Up),
    ];
    ServicePolicy::new(Failback::Manual, members).quorum(Some((Quorum::Count(2), policy)))
}

#[test]
fn below_quorum_the_next_tier_takes_over() {
    let t0 = Instant::now();
    let mut policy = three_in_tier_0_and_a_standby(QuorumPolicy::NextTier);
    assert_eq!(
        policy.on_health(0, false, t0),
        vec![to(0, BackendState::Down)]
    );
    assert_eq!(active(&policy), vec![1, 2], "two healthy: quorum met");
    let changes = policy.on_health(1, false, t0);
    assert_eq!(
        changes,
        vec![to(1, BackendState::Down), to(2, BackendState::Draining)]
    );
    assert_eq!(active(&policy), vec![3]);
    // Quorum back: the tier serves again.
    let changes = policy.on_health(1, true, t0);
    assert!(changes.contains(&to(2, BackendState::Up)), "{changes:?}");
}

#[test]
fn below_quorum_fail_open_uses_every_member_and_fail_closed_none() {
    let t0 = Instant::now();
    let mut open = three_in_tier_0_and_a_standby(QuorumPolicy::FailOpen);
    open.on_health(0, false, t0);
    let changes = open.on_health(1, false, t0);
    assert_eq!(
        changes,
        vec![to(0, BackendState::Up)],
        "0 and 1 stay up although unhealthy"
    );
    assert_eq!(active(&open), vec![0, 1, 2]);

    let mut closed = three_in_tier_0_and_a_standby(QuorumPolicy::FailClosed);
    closed.on_health(0, false, t0);
    closed.on_health(1, false, t0);
    assert!(active(&closed).is_empty());
    assert_eq!(closed.desired(3, t0), BackendState::Draining);
    assert_eq!(Quorum::Percent(50).needed(3), 2);
}

#[test]
fn maintenance_takes_all_traffic_away_and_health_is_ignored_meanwhile() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    assert_eq!(
        policy.maintenance(PRIMARY, t0).unwrap(),
        vec![to(PRIMARY, BackendState::Down)]
    );
    assert!(policy.on_health(PRIMARY, false, t0).is_empty());
    assert!(policy.on_health(PRIMARY, true, t0).is_empty());
    assert_eq!(
        policy.restore(PRIMARY, t0),
        vec![to(PRIMARY, BackendState::Up)]
    );
}

#[test]
fn a_suppressed_backend_keeps_its_flows_but_takes_no_new_ones_until_reused() {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(12);
    let mut policy = active_passive(Failback::Auto {
        delay: Duration::ZERO,
    });
    assert_eq!(
        policy.suppress(PRIMARY, until, t0),
        vec![to(PRIMARY, BackendState::Draining)]
    );
    assert_eq!(active(&policy), vec![STANDBY]);
    assert_eq!(policy.next_deadline(), Some(until));
    assert!(policy.on_tick(until - Duration::from_millis(1)).is_empty());
    assert_eq!(policy.on_tick(until), vec![to(PRIMARY, BackendState::Up)]);
    assert_eq!(policy.suppressed_until(PRIMARY), None);
    assert_eq!(active(&policy), vec![PRIMARY]);
}

#[test]
fn suppression_never_leaves_a_service_without_a_backend() {
    let t0 = Instant::now();
    let mut policy = active_passive(Failback::Manual);
    policy.on_health(STANDBY, false, t0);
    // The primary flaps but is the only healthy backend: it keeps serving.
    assert!(
        policy
            .suppress(PRIMARY, t0 + Duration::from_secs(30), t0)
            .is_empty()
    );
    assert_eq!(active(&policy), vec![PRIMARY]);
    // Once the standby is back, the suppression applies.
    policy.on_health(STANDBY, true, t0);
    assert_eq!(active(&policy), vec![STANDBY]);
}

#[test]
fn a_suppressed_healthy_member_does_not_trip_the_quorum() {
    let t0 = Instant::now();
    let mut policy = ServicePolicy::new(
        Failback::Manual,
        [
            (0, BackendState::Up),
            (0, BackendState::Up),
            (1, BackendState::Up),
        ],
    )
    .quorum(Some((Quorum::Count(2), QuorumPolicy::FailClosed)));
    policy.suppress(0, t0 + Duration::from_secs(30), t0);
    // Two healthy members: quorum holds; the suppressed one takes nothing.
    assert_eq!(active(&policy), vec![1]);
}
