//! Next hop of a rewritten packet, from the kernel's routing and neighbour
//! tables (`bpf_fib_lookup`): no MAC address is ever configured by hand.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use failover_common::stats::reason;

use crate::family::Family;

/// What to do with a packet whose new addresses are known.
pub enum NextHop {
    /// Send it out of `ifindex` with these MACs.
    Forward {
        ifindex: u32,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    },
    /// The neighbour is unresolved: hand the rewritten packet to the stack,
    /// which resolves it and forwards (and decrements the TTL itself) out of
    /// `ifindex`.
    ResolveInStack { ifindex: u32 },
    /// The packet is longer than the next hop's MTU. (The lookup stops
    /// before it names the egress interface: there is none to learn.)
    TooBig { mtu: u16 },
    /// Leave the packet untouched and give it to the stack, for this reason.
    PassUntouched(u32),
    /// Drop, for this reason.
    Drop(u32),
}

impl NextHop {
    /// The interface the packet leaves by; 0 when it is not forwarded.
    #[inline(always)]
    pub fn egress_ifindex(&self) -> u32 {
        match *self {
            NextHop::Forward { ifindex, .. } | NextHop::ResolveInStack { ifindex } => ifindex,
            NextHop::TooBig { .. } | NextHop::PassUntouched(_) | NextHop::Drop(_) => 0,
        }
    }
}

/// Addresses and ports of the packet as it will leave (all network order).
pub struct Lookup<F: Family> {
    pub ingress_ifindex: u32,
    pub proto: u8,
    pub tos: u8,
    /// The whole datagram's length, host order, for the MTU check.
    pub tot_len: u16,
    pub src: F::Addr,
    pub dst: F::Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The route lookup's parameters, per CPU: off the stack, which the IPv6
/// program's addresses fill. Not pinned: nothing outlives a lookup.
#[map(name = "FO_FIB_PARAMS")]
static FIB_PARAMS: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn next_hop<F: Family>(ctx: &XdpContext, lookup: &Lookup<F>) -> NextHop {
    let Some(params) = FIB_PARAMS.get_ptr_mut(0) else {
        return NextHop::Drop(reason::DROP_FIB_ERROR);
    };
    // SAFETY: this CPU's slot; all-zero is a valid value of this plain C
    // struct.
    let params = unsafe {
        *params = zeroed();
        &mut *params
    };
    params.l4_protocol = lookup.proto;
    params.sport = lookup.src_port;
    params.dport = lookup.dst_port;
    params.__bindgen_anon_1.tot_len = lookup.tot_len;
    params.ifindex = lookup.ingress_ifindex;
    F::fib_addresses(params, lookup.src, lookup.dst, lookup.tos);

    // SAFETY: params is a valid, fully initialised struct of the size passed.
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.ctx.cast(),
            &raw mut *params,
            size_of::<FibParams>() as i32,
            0,
        )
    };
    if ret < 0 {
        return NextHop::Drop(reason::DROP_FIB_ERROR);
    }
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => NextHop::Forward {
            ifindex: params.ifindex,
            src_mac: params.smac,
            dst_mac: params.dmac,
        },
        // The kernel names the egress before it looks for the neighbour.
        BPF_FIB_LKUP_RET_NO_NEIGH => NextHop::ResolveInStack {
            ifindex: params.ifindex,
        },
        BPF_FIB_LKUP_RET_NOT_FWDED | BPF_FIB_LKUP_RET_FWD_DISABLED => {
            NextHop::PassUntouched(reason::PASS_NOT_FORWARDED)
        }
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            NextHop::Drop(reason::DROP_NO_ROUTE)
        }
        // SAFETY: the kernel writes the MTU over the total length here.
        BPF_FIB_LKUP_RET_FRAG_NEEDED => NextHop::TooBig {
            mtu: unsafe { params.__bindgen_anon_1.mtu_result },
        },
        _ => NextHop::Drop(reason::DROP_FIB_ERROR),
    }
}
