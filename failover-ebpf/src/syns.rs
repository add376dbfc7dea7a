//! The SYN memory (`FO_SYNS`): the backend each SYN was sent to, for the
//! first ACK to follow even if the table changed in between (or the entry
//! was evicted), and what redispatch and the evidence need of it: whether
//! the backend answered (SYN-ACK) or refused (a RST answering it exactly),
//! whether it was redispatched, whether a first ACK recorded its flow. A
//! direct-mapped array, keyed by the flow hash: one store per SYN, no
//! insert; a slot is checked by its hash before it is believed.

use failover_common::{
    Backend, SYN_LIFETIME_STAMPS, SYN_SLOTS, SynSeen, usable_for_established, usable_for_new,
};

use crate::{conntrack::backend, maps::SYNS};

/// `FO_SYNS`'s clock: about seconds, wrapping.
#[inline(always)]
fn syn_stamp(now: u64) -> u16 {
    (now >> 30) as u16 & SynSeen::TIME
}

/// Remembers the backend a SYN (of flow hash `hash`) was sent to, for its
/// first ACK; `redispatched`: sent there instead of to a backend that
/// refused it.
#[inline(always)]
pub fn remember_syn(
    hash: u32,
    backend_id: u32,
    backend_generation: u32,
    seq: u32,
    now: u64,
    redispatched: bool,
) {
    if let Some(slot) = SYNS.get_ptr_mut(hash & (SYN_SLOTS - 1)) {
        // SAFETY: a live array slot; racing writers each store a whole
        // record a reader checks by its hash.
        unsafe {
            // A repeated SYN of a handshake the backend answered keeps
            // that: its RST to a SYN in the window is no evidence. One
            // redispatched stays so: it is not redispatched again.
            let kept = if (*slot).flow_hash == hash && recent((*slot).stamp, now) {
                (*slot).stamp & (SynSeen::ANSWERED | SynSeen::REDISPATCHED | SynSeen::REFUSED)
            } else {
                0
            };
            let redispatched = if redispatched {
                SynSeen::REDISPATCHED
            } else {
                0
            };
            *slot = SynSeen {
                flow_hash: hash,
                backend_generation,
                seq,
                backend_id: backend_id as u16,
                stamp: syn_stamp(now) | kept | redispatched,
            };
        }
    }
}

/// No backend, in [`RepeatedSyn`].
pub const NO_BACKEND: u32 = u32::MAX;

/// What a SYN repeating the remembered one (the same sequence number)
/// means for redispatch. Plain ids, [`NO_BACKEND`] for none: values the
/// verifier sees initialized on every path.
#[derive(Clone, Copy)]
pub struct RepeatedSyn {
    /// Its backend never answered it: send it to another than this.
    pub refused: u32,
    /// It was redispatched to this backend already: it goes there again.
    pub redispatched_to: u32,
}

impl RepeatedSyn {
    pub const NONE: Self = Self {
        refused: NO_BACKEND,
        redispatched_to: NO_BACKEND,
    };

    /// Whether redispatch acts on the SYN.
    pub fn any(&self) -> bool {
        self.refused != NO_BACKEND || self.redispatched_to != NO_BACKEND
    }
}

/// A SYN of flow hash `hash` with sequence number `seq`: what redispatch
/// makes of it ([`RepeatedSyn::NONE`] for a first SYN).
#[inline(always)]
pub fn repeated_syn(hash: u32, seq: u32, now: u64) -> RepeatedSyn {
    let Some(seen) = remembered_syn(hash, now) else {
        return RepeatedSyn::NONE;
    };
    if seen.seq != seq || recorded(&seen) {
        return RepeatedSyn::NONE;
    }
    let id = u32::from(seen.backend_id);
    if seen.stamp & SynSeen::REDISPATCHED != 0 {
        let follows = backend(id).is_some_and(|backend| {
            backend.generation == seen.backend_generation && usable_for_new(backend.state)
        });
        return RepeatedSyn {
            refused: NO_BACKEND,
            redispatched_to: if follows { id } else { NO_BACKEND },
        };
    }
    if seen.stamp & SynSeen::ANSWERED != 0 {
        return RepeatedSyn::NONE;
    }
    RepeatedSyn {
        refused: id,
        redispatched_to: NO_BACKEND,
    }
}

/// Marks the SYN of flow hash `hash` refused (before its backend's RST is
/// rebuilt into it): a later RST to it is not rebuilt again by this
/// program, whichever program the rebuilt SYN goes through.
#[inline(always)]
pub fn mark_refused(hash: u32) {
    mark(hash, SynSeen::REFUSED);
}

/// Sets `flag` in the stamp of the SYN of flow hash `hash`, if its slot
/// still holds that SYN.
#[inline(always)]
fn mark(hash: u32, flag: u16) {
    if let Some(slot) = SYNS.get_ptr_mut(hash & (SYN_SLOTS - 1)) {
        // SAFETY: a live array slot; a racing writer stores a whole record.
        unsafe {
            if (*slot).flow_hash == hash {
                (*slot).stamp |= flag;
            }
        }
    }
}

/// Whether a stamp is within the SYN memory's lifetime.
#[inline(always)]
fn recent(stamp: u16, now: u64) -> bool {
    syn_stamp(now).wrapping_sub(stamp) & SynSeen::TIME <= SYN_LIFETIME_STAMPS
}

/// Notes that the backend answered the SYN of flow hash `hash` (a SYN-ACK).
#[inline(always)]
pub fn syn_acked(hash: u32) {
    mark(hash, SynSeen::ANSWERED);
}

/// Notes that the flow of the SYN of flow hash `hash` is recorded.
#[inline(always)]
pub fn syn_recorded(hash: u32) {
    mark(hash, SynSeen::RECORDED);
}

/// The SYN of flow hash `hash`, if it is remembered and recent.
#[inline(always)]
fn remembered_syn(hash: u32, now: u64) -> Option<SynSeen> {
    let seen = *SYNS.get(hash & (SYN_SLOTS - 1))?;
    (seen.flow_hash == hash && seen.backend_generation != 0 && recent(seen.stamp, now))
        .then_some(seen)
}

/// The backend the flow's SYN was sent to, if it is remembered, still has
/// that owner and may keep an established flow.
#[inline(always)]
pub fn syn_backend(hash: u32, now: u64) -> Option<(u32, Backend)> {
    keeping_backend(&remembered_syn(hash, now)?)
}

/// The SYN's backend, if it still has that owner and may keep a flow.
#[inline(always)]
fn keeping_backend(seen: &SynSeen) -> Option<(u32, Backend)> {
    let id = u32::from(seen.backend_id);
    let backend = backend(id)?;
    (backend.generation == seen.backend_generation && usable_for_established(backend.state))
        .then_some((id, backend))
}

/// Whether a SYN of flow hash `hash` came after the flow was last
/// recorded, to a backend that may keep it: a new connection's.
#[inline(always)]
pub fn new_connection_syn(hash: u32, now: u64) -> bool {
    remembered_syn(hash, now)
        .is_some_and(|seen| !recorded(&seen) && keeping_backend(&seen).is_some())
}

/// Whether a first ACK recorded the flow of the remembered SYN.
#[inline(always)]
fn recorded(seen: &SynSeen) -> bool {
    seen.stamp & SynSeen::RECORDED != 0
}

/// Whether a RST acknowledging `ack` from `backend_id` answers the SYN of
/// flow hash `hash`: remembered, recent, unrecorded, never answered with a
/// SYN-ACK, sent to this owner of the id, and acknowledged exactly. If so,
/// whether redispatch is done with that SYN (redispatched once, or
/// already rebuilt from a RST).
#[inline(always)]
pub fn syn_answered(hash: u32, backend_id: u32, ack: u32, now: u64) -> Option<bool> {
    let seen = remembered_syn(hash, now)?;
    (!recorded(&seen)
        && seen.stamp & SynSeen::ANSWERED == 0
        && u32::from(seen.backend_id) == backend_id
        && seen.seq.wrapping_add(1) == ack
        && backend(backend_id).is_some_and(|b| b.generation == seen.backend_generation))
    .then_some(seen.stamp & (SynSeen::REDISPATCHED | SynSeen::REFUSED) != 0)
}
