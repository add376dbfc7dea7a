//! The real agent (`failover run --config FILE`) as a child process on the
//! edge host of a namespace lab (see `failover_tests::agent_lab`): an
//! active-passive TCP service, VIP 203.0.113.10:80 → primary (tier 0) and
//! standby (tier 1) on :8080, probed every 100 ms with a 50 ms timeout,
//! fall 3, rise 2. Clients ask "which backend answers" with short TCP
//! connections through the VIP.
//!
//! Each test builds its own lab (unique namespaces, pin directory, pid file
//! and log), so they run in parallel; failure messages carry the agent's log.
//!
//! The checks every failover test shares in `switch`; the tests by
//! concern: `faults`, `flapping`, `failback`, `restart`, `first_reply`,
//! `flood_guard`, `dual_stack`, `passive` (ejection on the data path's evidence),
//! `second_opinion` (traffic as evidence of health), `slow_start`.

mod dual_stack;
mod failback;
mod faults;
mod first_reply;
mod flapping;
mod flood_guard;
mod passive;
mod restart;
mod second_opinion;
mod slow_start;
mod switch;
