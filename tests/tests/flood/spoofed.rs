//! Floods of spoofed new flows through the program that forwards real
//! connections: a SYN flood records nothing, and an ACK flood records at
//! most the flood guard's rate, so established flows keep their entries
//! even where the table would now decide otherwise (a drained backend).
//!
//! The flood is run by BPF_PROG_TEST_RUN of the lab's own program (the
//! benchmark's wrapper gives every repetition a new source address and
//! port), the connections are real sockets over veth: both meet the same
//! flow table.

use std::{io::Write as _, net::Ipv4Addr};

use aya::{
    Ebpf,
    maps::{Array, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use failover::BackendState;
use failover_common::{Settings, stats::reason};
use failover_tests::{
    lab::xdp_md,
    packet::{Frame, TCP_ACK, TCP_SYN},
    servers::ask,
};

use crate::lab::{Lab, TCP_PORT, VIP};

const FRAME_LEN: usize = 64;
/// Spoofed sources: 198.18.0.x, ports from a per-CPU count.
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);

/// Runs `count` frames like `flags` from a new spoofed tuple each through
/// the lab's forwarding program.
fn flood(lab: &Lab, harness: &mut Ebpf, flags: u8, count: u32) {
    let frame = Frame::tcp((SPOOFED, 1), (VIP, TCP_PORT), flags)
        .macs([0x02, 0, 0, 0, 0xf1, 0x01], [0x02, 0, 0, 0, 0xf1, 0x02])
        .with_payload(&[0x5a; FRAME_LEN - 54])
        .build();
    assert_eq!(frame.len(), FRAME_LEN);
    let mut words = [0u64; FRAME_LEN / 8];
    for (word, chunk) in words.iter_mut().zip(frame.chunks_exact(8)) {
        *word = u64::from_ne_bytes(chunk.try_into().unwrap());
    }
    let mut template: Array<_, [u64; FRAME_LEN / 8]> =
        Array::try_from(harness.map_mut("BENCH_TEMPLATE").expect("template map")).unwrap();
    template.set(0, words, 0).expect("template");
    let wrapper: &Xdp = harness
        .program("bench_restore_new_flow")
        .unwrap()
        .try_into()
        .unwrap();
    let ctx = xdp_md(FRAME_LEN as u32, lab.client_side_ifindex());
    // In chunks, to stay well inside the kernel's test-run limits.
    let mut left = count;
    while left > 0 {
        let repeat = left.min(100_000);
        let result = lab.in_lb(|| {
            wrapper
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat,
                    ..TestRunOptions::new()
                })
                .expect("flood")
        });
        assert_eq!(result.return_value, 4, "the flood is forwarded (redirect)");
        left -= repeat;
    }
}

fn harness(lab: &Lab) -> Ebpf {
    let mut harness =
        Ebpf::load(failover_tests::bench::harness_object()).expect("load the bench harness");
    let wrapper: &mut Xdp = harness
        .program_mut("bench_restore_new_flow")
        .unwrap()
        .try_into()
        .unwrap();
    wrapper.load().expect("load the wrapper");
    let mut target =
        ProgramArray::try_from(harness.map_mut("BENCH_TARGET").expect("target map")).unwrap();
    let forwarder = lab.dp.program().expect("the lab's program");
    target
        .set(0, forwarder.fd().expect("fd"), 0)
        .expect("target = the lab's program");
    harness
}

#[test]
fn floods_of_new_flows_evict_no_established_flow() {
    let _serial = crate::one_at_a_time();
    let mut lab = Lab::new();
    // Long connections; then their backends are drained: the table sends
    // new flows elsewhere, so only their entries keep them where they are.
    let mut long: Vec<_> = (0..12).map(|_| lab.connect()).collect();
    let names: Vec<String> = long
        .iter_mut()
        .map(|stream| ask(stream).expect("first answer"))
        .collect();
    let drained = &names[0];
    let drained_id = Lab::backend_id(&lab.tcp, drained);
    lab.dp
        .set_backend_state(drained_id, BackendState::Draining)
        .unwrap();
    let check_long = |lab: &Lab, long: &mut [std::net::TcpStream], when: &str| {
        for (stream, name) in long.iter_mut().zip(&names) {
            let answer = ask(stream)
                .unwrap_or_else(|e| panic!("{when}: a long connection broke: {e}\n{}", lab.diag()));
            assert_eq!(
                &answer,
                name,
                "{when}: a long connection moved\n{}",
                lab.diag()
            );
        }
    };
    check_long(&lab, &mut long, "before the floods");
    let entries = lab.dp.flows().count();
    let repicks = lab.reason(reason::EVENT_REPICK);
    let mut harness = harness(&lab);

    // 600,000 SYNs of new tuples, more than twice the table's 262,144
    // entries: none is recorded. Legitimate clients connect meanwhile,
    // every one of them successfully (short_requests asserts it).
    let legitimate = std::thread::scope(|scope| {
        let clients = scope.spawn(|| lab.short_requests(200).len());
        flood(&lab, &mut harness, TCP_SYN, 600_000);
        clients.join().expect("legitimate clients")
    });
    assert_eq!(legitimate, 200);
    let legitimate_recorded = 200;
    assert_eq!(
        lab.dp.flows().count(),
        entries + legitimate_recorded,
        "a SYN flood recorded flows (only the legitimate ones may be)\n{}",
        lab.diag()
    );
    check_long(&lab, &mut long, "after the SYN flood");

    // 300,000 spoofed first ACKs with the guard at 20,000 a second per
    // CPU: at most that many a second are recorded, far from filling it.
    lab.dp
        .set_flow_settings(&Settings {
            max_new_flows_per_cpu: 20_000,
            ..Settings::default()
        })
        .unwrap();
    let counted = |lab: &Lab| {
        [
            reason::EVENT_FLOOD_GUARD_SKIP,
            reason::EVENT_FLOW_RECORDED,
            reason::FWD_ESTABLISHED,
        ]
        .map(|r| lab.reason(r))
    };
    let before = counted(&lab);
    let started = std::time::Instant::now();
    flood(&lab, &mut harness, TCP_ACK, 300_000);
    let seconds = started.elapsed().as_secs() + 1;
    let after = counted(&lab);
    let [skipped, recorded, followed] = [0, 1, 2].map(|i| after[i] - before[i]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(
        recorded <= 20_000 * (seconds + 1) * cpus,
        "{recorded} flows recorded in about {seconds} s\n{}",
        lab.diag()
    );
    assert_eq!(
        lab.dp.flows().count() - entries - legitimate_recorded,
        recorded,
        "each recorded flow one entry\n{}",
        lab.diag()
    );
    // Every ACK was recorded, refused by the guard (counted), or met an
    // entry a repeated tuple had recorded (the wrapper's per-CPU count
    // repeats tuples when the test run changes CPU).
    assert_eq!(
        skipped + recorded + followed,
        300_000,
        "every flood packet accounted for\n{}",
        lab.diag()
    );
    assert!(lab.reason(reason::EVENT_FLOOD_GUARD_SECOND) >= 1);
    check_long(&lab, &mut long, "after the ACK flood");
    assert_eq!(
        lab.reason(reason::EVENT_REPICK),
        repicks,
        "established flows were re-picked\n{}",
        lab.diag()
    );
    // New connections still work, and avoid the drained backend.
    for (_, name) in lab.short_requests(20) {
        assert_ne!(&name, drained, "a new flow went to the drained backend");
    }
    for stream in &mut long {
        let _ = stream.flush();
    }
}

/// The standby after a failback: the primary is back and takes new flows,
/// the flows that went to the standby meanwhile stay there by their
/// entries (`dead_flows` `keep` and drains leave flows the same way: the
/// data path sees a backend that may keep flows but takes no new ones).
#[test]
fn a_syn_flood_moves_no_flow_kept_on_the_standby_after_failback() {
    let _serial = crate::one_at_a_time();
    let mut lab = Lab::new();
    lab.make_tcp_active_passive();
    let primary = crate::lab::BACKENDS[0].name;
    let standby = crate::lab::BACKENDS[1].name;
    let primary_id = Lab::backend_id(&lab.tcp, primary);
    lab.dp
        .set_backend_state(primary_id, BackendState::Down)
        .unwrap();
    let mut long: Vec<_> = (0..6).map(|_| lab.connect()).collect();
    for stream in &mut long {
        assert_eq!(ask(stream).expect("answer"), standby, "failed over");
    }
    // Failback: new flows to the primary again.
    lab.dp
        .set_backend_state(primary_id, BackendState::Up)
        .unwrap();
    for (_, name) in lab.short_requests(10) {
        assert_eq!(name, primary, "new flows back on the primary");
    }
    let entries = lab.dp.flows().count();
    let mut harness = harness(&lab);
    flood(&lab, &mut harness, TCP_SYN, 600_000);
    assert_eq!(
        lab.dp.flows().count(),
        entries,
        "the SYN flood recorded flows (the kernel's LRU would still spare the kept \
         ones, seen more than once, but not for long)\n{}",
        lab.diag()
    );
    for stream in &mut long {
        let answer = ask(stream).unwrap_or_else(|e| {
            panic!(
                "a flow kept on the standby broke in the flood: {e}\n{}",
                lab.diag()
            )
        });
        assert_eq!(
            answer,
            standby,
            "a flow kept on the standby moved\n{}",
            lab.diag()
        );
    }
}
