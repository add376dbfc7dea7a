//! Ten seconds of TCP SYNs from unique spoofed sources at the generator's
//! full rate, as real frames over the client's veth into the edge host,
//! while
//!
//! - long connections sit on the standby after a failback (port 80,
//!   active-passive: the table names the primary again);
//! - long connections sit on a drained backend (port 81; a backend failing
//!   its checks under `dead_flows = "keep"` is written the same way: it
//!   keeps its flows and takes no new ones);
//!
//! each idle for seconds between requests, and legitimate clients make new
//! connections to both services. The backends' door drops the flood's SYNs
//! when they arrive (rewritten by our program), so the backends' kernels,
//! which share the lab's two cores, spend nothing on them.

use std::{
    collections::BTreeSet,
    net::TcpStream,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use failover::BackendState;
use failover_common::stats::reason;
use failover_tests::{
    flood::{Flood, SPOOFED},
    packet::{TCP_SYN, checksums_valid, parse},
    servers::ask,
};

use crate::lab::{BACKENDS, Lab, TCP_PORT, VIP};

const FLOOD: Duration = Duration::from_secs(10);
/// The service whose flows are kept on a drained backend.
const KEPT_PORT: u16 = 81;
const KEPT_BACKEND_PORT: u16 = 8081;
/// How long long connections idle between requests during the flood.
const IDLE: Duration = Duration::from_secs(3);
/// Legitimate client threads.
const CLIENTS: usize = 2;
/// Pause between two legitimate connections of one client thread.
const CLIENT_PAUSE: Duration = Duration::from_millis(20);

#[test]
fn generated_syns_are_valid_and_each_from_a_new_source() {
    let _serial = crate::one_at_a_time();
    failover_tests::require_root();
    let flood = Flood::syns((VIP, TCP_PORT));
    let mut tuples = BTreeSet::new();
    // Repetitions accumulate in the generator's per-CPU count: these reach
    // past 64,000 (the address changes) and far beyond.
    for n in [1, 1, 63_998, 1, 1, 70_000, 16_000_000] {
        let frame = flood.frame_after(n);
        assert!(checksums_valid(&frame), "bad checksums: {frame:02x?}");
        let parsed = parse(&frame).expect("an IPv4 TCP frame");
        assert_eq!(frame[47], TCP_SYN, "a SYN");
        assert_eq!((parsed.dst, parsed.dst_port), (VIP, TCP_PORT));
        assert_eq!(parsed.src.octets()[..2], SPOOFED.0.octets()[..2]);
        assert!(
            tuples.insert((parsed.src, parsed.src_port)),
            "a tuple repeated: {}:{}",
            parsed.src,
            parsed.src_port
        );
    }
}

/// Long connections and the backend each must keep answering from.
struct Kept {
    what: &'static str,
    streams: Vec<(TcpStream, String)>,
}

impl Kept {
    fn check(&mut self, lab: &Lab, when: &str) {
        for (stream, name) in &mut self.streams {
            let answer = ask(stream).unwrap_or_else(|e| {
                panic!("{when}: a flow {} broke: {e}\n{}", self.what, lab.diag())
            });
            assert_eq!(
                &answer,
                name,
                "{when}: a flow {} moved\n{}",
                self.what,
                lab.diag()
            );
        }
    }
}

/// Port 80 made active-passive; the primary fails, connections go to the
/// standby, the primary returns: they stay on the standby.
fn kept_on_the_standby_after_failback(lab: &mut Lab) -> Kept {
    lab.make_tcp_active_passive();
    let [primary, standby] = [BACKENDS[0].name, BACKENDS[1].name];
    let primary_id = Lab::backend_id(&lab.tcp, primary);
    lab.dp
        .set_backend_state(primary_id, BackendState::Down)
        .unwrap();
    let streams = (0..4)
        .map(|_| {
            let mut stream = lab.connect();
            assert_eq!(ask(&mut stream).expect("answer"), standby, "failed over");
            (stream, standby.to_owned())
        })
        .collect();
    lab.dp
        .set_backend_state(primary_id, BackendState::Up)
        .unwrap();
    for (_, name) in lab.short_requests(5) {
        assert_eq!(name, primary, "new flows back on the primary");
    }
    Kept {
        what: "kept on the standby after failback",
        streams,
    }
}

/// Port 81 on both backends; the backend of the first connection is
/// drained: its connections stay, new ones go to the other.
fn kept_on_a_drained_backend(lab: &mut Lab) -> Kept {
    let service = lab.add_tcp_service(KEPT_PORT, KEPT_BACKEND_PORT);
    let streams: Vec<(TcpStream, String)> = (0..8)
        .map(|_| {
            let mut stream = lab.connect_to(KEPT_PORT);
            let name = ask(&mut stream).expect("answer");
            (stream, name)
        })
        .collect();
    let drained = streams[0].1.clone();
    lab.dp
        .set_backend_state(Lab::backend_id(&service, &drained), BackendState::Draining)
        .unwrap();
    let streams: Vec<_> = streams
        .into_iter()
        .filter(|(_, name)| *name == drained)
        .collect();
    for _ in 0..5 {
        let (_, name) = lab.try_short_request(KEPT_PORT).expect("a new connection");
        assert_ne!(name, drained, "a new flow went to the drained backend");
    }
    Kept {
        what: "kept on a drained backend",
        streams,
    }
}

/// New connections to both services until `done`: (made, failed, why).
fn legitimate_clients(lab: &Lab, done: &AtomicBool) -> (usize, usize, BTreeSet<String>) {
    let (mut made, mut failed, mut why) = (0, 0, BTreeSet::new());
    for port in [TCP_PORT, KEPT_PORT].into_iter().cycle() {
        if done.load(Ordering::Relaxed) {
            break;
        }
        made += 1;
        if let Err(e) = lab.try_short_request(port) {
            failed += 1;
            why.insert(e.to_string());
        }
        thread::sleep(CLIENT_PAUSE);
    }
    (made, failed, why)
}

#[test]
fn ten_seconds_of_spoofed_syns_move_no_kept_flow_and_fail_no_new_connection() {
    let _serial = crate::one_at_a_time();
    let mut flood = Flood::syns((VIP, TCP_PORT));
    let mut lab = Lab::with_backend_door(flood.door());
    let mut kept = [
        kept_on_the_standby_after_failback(&mut lab),
        kept_on_a_drained_backend(&mut lab),
    ];
    for group in &mut kept {
        group.check(&lab, "before the flood");
    }
    let counted = |lab: &Lab| {
        [
            reason::FWD_NEW_FLOW,
            reason::EVENT_FLOW_RECORDED,
            reason::EVENT_FLOOD_GUARD_SKIP,
            reason::EVENT_REPICK,
        ]
        .map(|r| lab.reason(r))
    };
    let before = counted(&lab);
    let entries = lab.dp.flows().count();

    let done = AtomicBool::new(false);
    let (sent, (made, failed, why)) = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| legitimate_clients(&lab, &done)))
            .collect();
        let idle = scope.spawn(|| {
            let started = Instant::now();
            while started.elapsed() + IDLE < FLOOD {
                thread::sleep(IDLE);
                for group in &mut kept {
                    group.check(&lab, "during the flood");
                }
            }
        });
        let sent = flood.run(lab.client(), lab.client_ifindex(), FLOOD);
        done.store(true, Ordering::Relaxed);
        idle.join().expect("the long connections' checks");
        let mut tally = (0, 0, BTreeSet::new());
        for client in clients {
            let (made, failed, why) = client.join().expect("a legitimate client");
            tally.0 += made;
            tally.1 += failed;
            tally.2.extend(why);
        }
        (sent, tally)
    });
    for group in &mut kept {
        group.check(&lab, "after the flood");
    }
    let after = counted(&lab);
    let [new_flows, recorded, guard_skipped, repicks] = [0, 1, 2, 3].map(|i| after[i] - before[i]);
    let at_the_door = flood.at_the_door();
    eprintln!(
        "flood: {} SYNs offered in {:.1} s ({:.2} Mpps), {at_the_door} reached a backend \
         ({:.2} Mpps); legitimate: {made} connections, {failed} failed {why:?}",
        sent.frames,
        sent.seconds,
        sent.rate() / 1e6,
        at_the_door as f64 / sent.seconds / 1e6,
    );
    assert!(
        at_the_door > sent.frames / 10,
        "the flood did not go through: {at_the_door} of {} SYNs reached a backend\n{}",
        sent.frames,
        lab.diag()
    );
    assert!(
        new_flows >= at_the_door,
        "every SYN at a backend's door went through the new-flow path: {new_flows} < \
         {at_the_door}\n{}",
        lab.diag()
    );
    assert!(
        made >= 100,
        "only {made} legitimate connections in the flood"
    );
    assert!(
        failed * 100 <= made,
        "{failed} of {made} legitimate connections failed in the flood: {why:?}\n{}",
        lab.diag()
    );
    // The SYNs recorded nothing and never met the flood guard; each
    // legitimate connection recorded its one flow.
    assert_eq!(guard_skipped, 0, "the flood guard refused a flow");
    assert!(
        (made - failed..=made).contains(&(recorded as usize)),
        "{recorded} flows recorded for {made} connections ({failed} failed)\n{}",
        lab.diag()
    );
    assert_eq!(
        lab.dp.flows().count(),
        entries + recorded,
        "entries other than the legitimate connections' were recorded\n{}",
        lab.diag()
    );
    assert_eq!(repicks, 0, "kept flows were re-picked\n{}", lab.diag());
}
