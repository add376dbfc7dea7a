//! What this agent knows of each peer: when it was last heard, how long
//! its rounds take, and whether it has delivered a whole round (every
//! datagram of one round, in order) since this agent started: until every
//! peer has, or its wait is over, this host does not announce its VIPs
//! (flows pinned on the peers would be reset here).

use std::time::{Duration, Instant};

use super::wire::Header;

#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The sender's start and the round being received.
    current: Option<(u32, u32)>,
    /// The index the next datagram of the round must have; `None`: a
    /// datagram of it was lost (the round does not count).
    next_index: Option<u16>,
    pub rounds_complete: u64,
    pub last_heard: Option<Instant>,
    pub flows_received_total: u64,
    pub datagrams_lost_total: u64,
    /// The peer's round period, as it last said.
    pub period: Option<Duration>,
}

/// The longest a starting agent waits for a peer it has heard from.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

impl Peer {
    /// Takes one datagram's header; true when it completed a round.
    pub fn datagram(&mut self, header: &Header, flows: usize, now: Instant) -> bool {
        self.last_heard = Some(now);
        self.period = Some(header.period);
        if header.is_hello() {
            return false;
        }
        self.flows_received_total += flows as u64;
        let this = (header.boot, header.round);
        if self.current != Some(this) {
            if self.next_index.is_some() && self.current.is_some() {
                // The last round ended without its last datagram.
                self.datagrams_lost_total += 1;
            }
            self.current = Some(this);
            self.next_index = Some(0);
        }
        if self.next_index == Some(header.index) {
            self.next_index = header.index.checked_add(1);
        } else {
            if self.next_index.is_some() {
                self.datagrams_lost_total += 1;
            }
            self.next_index = None;
        }
        if header.last && self.next_index.is_some() {
            self.rounds_complete += 1;
            self.next_index = None;
            self.current = None;
            return true;
        }
        if header.last {
            self.current = None;
        }
        false
    }

    /// Whether this agent, started `since_start` ago, waits no longer for
    /// the peer: it delivered a whole round; or it was never heard within
    /// `base` (down); or it was heard, and two of its rounds (as long as it
    /// says they take) and a second have passed, within [`MAX_WAIT`].
    pub fn done_waiting(&self, since_start: Duration, base: Duration) -> bool {
        if self.rounds_complete > 0 {
            return true;
        }
        match self.period {
            None => since_start >= base,
            Some(period) => {
                since_start >= base.max(period * 2 + Duration::from_secs(1)).min(MAX_WAIT)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(round: u32, index: u16, last: bool) -> Header {
        Header {
            boot: 1,
            round,
            index,
            last,
            period: Duration::from_millis(500),
        }
    }

    #[test]
    fn a_round_counts_only_when_every_datagram_arrived_in_order() {
        let now = Instant::now();
        let mut peer = Peer::default();
        assert!(!peer.datagram(&header(1, 0, false), 18, now));
        assert!(peer.datagram(&header(1, 1, true), 3, now));
        assert_eq!((peer.rounds_complete, peer.flows_received_total), (1, 21));
        // Round 2 loses its first datagram.
        assert!(!peer.datagram(&header(2, 1, true), 3, now));
        assert_eq!((peer.rounds_complete, peer.datagrams_lost_total), (1, 1));
        // Round 3 loses its last one; round 4 is whole.
        assert!(!peer.datagram(&header(3, 0, false), 18, now));
        assert!(peer.datagram(&header(4, 0, true), 0, now));
        assert_eq!((peer.rounds_complete, peer.datagrams_lost_total), (2, 2));
        // A hello is neither a round nor a loss.
        let hello = Header::hello(1, Duration::from_secs(3));
        assert!(!peer.datagram(&hello, 0, now));
        assert_eq!((peer.rounds_complete, peer.datagrams_lost_total), (2, 2));
        assert_eq!(peer.period, Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_starting_agent_waits_for_a_peer_as_long_as_its_rounds_take() {
        let base = Duration::from_millis(2_500);
        let never_heard = Peer::default();
        assert!(!never_heard.done_waiting(Duration::from_secs(2), base));
        assert!(never_heard.done_waiting(base, base), "down: waited enough");
        // A peer whose rounds take 5 s (a big table) is waited for 11 s.
        let mut slow = Peer::default();
        slow.datagram(&Header::hello(1, Duration::from_secs(5)), 0, Instant::now());
        assert!(!slow.done_waiting(Duration::from_secs(10), base));
        assert!(slow.done_waiting(Duration::from_secs(11), base));
        // At most MAX_WAIT, whatever it says.
        slow.datagram(
            &Header::hello(1, Duration::from_secs(600)),
            0,
            Instant::now(),
        );
        assert!(slow.done_waiting(MAX_WAIT, base));
        // A whole round ends the wait at once.
        slow.datagram(&header(1, 0, true), 0, Instant::now());
        assert!(slow.done_waiting(Duration::ZERO, base));
    }
}
