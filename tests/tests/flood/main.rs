//! Floods of spoofed new flows through the data path that forwards real
//! connections, in the forwarding lab (`failover_tests::forwarding_lab`):
//!
//! - `spoofed`: SYN and first-ACK floods run by BPF_PROG_TEST_RUN of the
//!   lab's own program, each packet a new tuple: exact accounting;
//! - `live`: ten seconds of SYNs from unique spoofed sources at the
//!   generator's full rate, as real frames over the client's veth, while
//!   long connections kept off the table's choice idle and legitimate
//!   clients connect;
//! - `starved`: the same flood into the agent's lab, on the agent's core,
//!   with 15 ms probes: no backend ejected, no new flow moved.
//!
//! A flood takes a core; the tests of this target run one at a time, so
//! none starves another's sockets.

mod live;
mod spoofed;
mod starved;

use std::sync::{Mutex, MutexGuard};

use failover_tests::forwarding_lab as lab;

/// Held by each test for its whole run.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static FLOODS: Mutex<()> = Mutex::new(());
    FLOODS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
