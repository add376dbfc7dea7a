//! What the program does with a frame, and why.

use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};

/// A verdict and the one outcome reason that explains it.
pub struct Outcome {
    pub action: u32,
    pub reason: u32,
}

pub const fn pass(reason: u32) -> Outcome {
    Outcome {
        action: XDP_PASS,
        reason,
    }
}

pub const fn drop(reason: u32) -> Outcome {
    Outcome {
        action: XDP_DROP,
        reason,
    }
}
