//! A full flow table evicts its least recently used entry on each new
//! flow. An evicted flow's next packet has no entry: within about 10 s of
//! its SYN it follows the SYN's remembered backend (if that backend may keep
//! flows); later the table picks it again — it stays where it was when the
//! table still names its backend, and moves (and is reset) when its backend
//! only kept it (drained). These tests count both and pin the documented
//! behaviour down.

use std::{net::TcpStream, time::Duration};

use failover::BackendState;
use failover_common::stats::reason;
use failover_tests::servers::ask;

use failover_common::PROTO_TCP;

use crate::{
    checks::flow_key,
    lab::{CLIENT, Lab, TCP_PORT, VIP},
};

const MAX_FLOWS: u32 = 1_024;

/// Idle long connections, the backend of each, and the backend drained
/// after they were made (only their entries keep its flows there).
fn long_connections(lab: &mut Lab) -> (Vec<TcpStream>, Vec<String>, String) {
    let mut long: Vec<_> = (0..8).map(|_| lab.connect()).collect();
    let names: Vec<String> = long.iter_mut().map(|s| ask(s).expect("answer")).collect();
    let drained = names[0].clone();
    lab.dp
        .set_backend_state(Lab::backend_id(&lab.tcp, &drained), BackendState::Draining)
        .unwrap();
    (long, names, drained)
}

/// Twice the table's size in new flows — UDP, each from its own source
/// port, so no SYN touches the SYN memory the long flows' SYNs left, and
/// each seen twice: the kernel's LRU evicts entries seen once before
/// entries seen again, and the long flows were seen several times. Returns
/// how many of the recorded flows are no longer in the table (evicted:
/// nothing expires this fast).
fn overflow(lab: &Lab, long: usize, round: u16) -> u64 {
    let recorded_before = lab.reason(reason::EVENT_FLOW_RECORDED);
    let first = 20_000 + round * 2 * MAX_FLOWS as u16;
    let ports: Vec<u16> = (first..first + 2 * MAX_FLOWS as u16).collect();
    // From every CPU in turn: the kernel's LRU keeps a CPU's newest entries
    // on that CPU's own list until the CPU inserts again, so an overflow
    // from one CPU alone never evicts a flow another CPU recorded.
    let cpus = online_cpus();
    for (cpu, share) in ports.chunks(ports.len().div_ceil(cpus)).enumerate() {
        on_cpu(cpu, || {
            for &port in share {
                lab.udp_queries_from(port, 2)
                    .unwrap_or_else(|e| panic!("udp queries from :{port}: {e}\n{}", lab.diag()));
            }
        });
    }
    let recorded = lab.reason(reason::EVENT_FLOW_RECORDED) - recorded_before;
    let entries = lab.dp.flows().count();
    assert!(entries <= u64::from(MAX_FLOWS), "{entries} entries");
    let evicted = recorded + long as u64 - entries;
    eprintln!("{recorded} flows recorded, {entries} in the table: {evicted} evicted");
    assert!(evicted >= u64::from(MAX_FLOWS), "{}", lab.diag());
    evicted
}

/// CPUs this test may run on.
fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` with this thread (and the threads it starts, which inherit
/// it) on `cpu` alone, then restores the thread's CPUs.
fn on_cpu(cpu: usize, f: impl FnOnce()) {
    // SAFETY: cpu_set_t values for this thread's affinity, read and set.
    unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        let size = size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(0, size, &mut saved), 0);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size, &one),
            0,
            "pin to cpu {cpu}"
        );
        f();
        assert_eq!(libc::sched_setaffinity(0, size, &saved), 0);
    }
}

/// Whether each long connection's entry is gone from the table.
fn evicted(lab: &Lab, long: &[TcpStream]) -> Vec<bool> {
    long.iter()
        .map(|stream| {
            let port = stream.local_addr().unwrap().port();
            let key = flow_key((CLIENT, port), (VIP, TCP_PORT), PROTO_TCP);
            lab.dp.flows().get(&key).unwrap().is_none()
        })
        .collect()
}

/// Rounds of overflow at most: the kernel's LRU is approximate (per-CPU
/// free lists, a second chance for referenced entries), and on a loaded
/// 2-core machine four rounds once spared an idle flow.
const ROUNDS: u16 = 8;

/// Overflows the table until the long connection `which` is evicted (a
/// round may spare it), at most [`ROUNDS`] rounds.
fn overflow_until_evicted(lab: &Lab, long: &[TcpStream], which: usize) -> Vec<bool> {
    for round in 0..ROUNDS {
        overflow(lab, long.len(), round);
        let gone = evicted(lab, long);
        if gone[which] {
            return gone;
        }
    }
    panic!(
        "{ROUNDS} overflows of the table never evicted an idle long flow\n{}",
        lab.diag()
    );
}

#[test]
fn an_evicted_flow_follows_its_syns_backend_while_that_is_remembered() {
    let mut lab = Lab::with_max_flows(MAX_FLOWS);
    assert_eq!(lab.dp.flows().capacity(), MAX_FLOWS);
    let (mut long, names, _) = long_connections(&mut lab);
    let gone = overflow_until_evicted(&lab, &long, 0);
    let followed = lab.reason(reason::EVENT_SYN_FOLLOWED);
    for (stream, name) in long.iter_mut().zip(&names) {
        let answer = ask(stream).expect("an evicted flow within its SYN's memory survives");
        assert_eq!(&answer, name, "and stays on its backend, drained or not");
    }
    assert_eq!(
        lab.reason(reason::EVENT_SYN_FOLLOWED) - followed,
        gone.iter().filter(|g| **g).count() as u64,
        "each evicted one came back through the SYN memory ({gone:?})\n{}",
        lab.diag()
    );
}

#[test]
fn later_an_evicted_flow_is_picked_by_the_table_and_a_kept_one_moves() {
    let mut lab = Lab::with_max_flows(MAX_FLOWS);
    let (mut long, names, drained) = long_connections(&mut lab);
    // Past the SYN memory (about 10 s, in units of about a second).
    std::thread::sleep(Duration::from_secs(12));
    // names[0] is on the drained backend: wait for its eviction.
    let gone = overflow_until_evicted(&lab, &long, 0);
    let followed = lab.reason(reason::EVENT_SYN_FOLLOWED);
    for ((stream, name), gone) in long.iter_mut().zip(&names).zip(&gone) {
        let answer = ask(stream);
        if *gone && *name == drained {
            assert!(
                answer.is_err(),
                "an evicted flow only its entry kept on a drained backend is picked elsewhere \
                 and reset: {answer:?}"
            );
        } else {
            assert_eq!(
                answer.as_deref().ok(),
                Some(name.as_str()),
                "a flow still in the table, or one the table still names, stays on its backend"
            );
        }
    }
    assert_eq!(
        lab.reason(reason::EVENT_SYN_FOLLOWED),
        followed,
        "{}",
        lab.diag()
    );
}
