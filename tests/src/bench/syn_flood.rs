//! A SYN flood of unique spoofed sources through the namespace lab at the
//! generator's full rate, while legitimate clients make short connections:
//! how much of the flood our data path absorbs (rewrites and forwards to a
//! backend, whose door counts and drops it) and what the legitimate
//! connections see, against the same clients without a flood in the same
//! run (rounds interleave the two).
//!
//! The forwarding lab of the tests (client, edge host, two backends, TCP
//! :80 on both); the flood goes out of the client's veth, on one core.

use std::{net::SocketAddr, thread, time::Duration};

use failover_common::stats::reason;

use super::{
    Row, Section, Spread,
    requests::{self, Round},
};
use crate::{
    flood::{Flood, Sent},
    forwarding_lab::{Lab, TCP_PORT, VIP},
};

/// One round with the flood.
struct Flooded {
    clients: Round,
    sent: Sent,
    /// Flood SYNs that reached a backend's door.
    reached: u64,
}

pub fn run(quick: bool) -> Section {
    let (rounds, length) = if quick {
        (1, Duration::from_secs(2))
    } else {
        (3, Duration::from_secs(4))
    };
    let mut flood = Flood::syns((VIP, TCP_PORT));
    let lab = Lab::with_backend_door(flood.door());
    // Short connections by the hundred thousand: reuse TIME_WAIT ports.
    lab.client().sysctl("net/ipv4/tcp_tw_reuse", "1");
    lab.client()
        .sysctl("net/ipv4/ip_local_port_range", "1024 65000");
    let target = SocketAddr::from((VIP, TCP_PORT));
    let (mut calm, mut flooded, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        calm.push(requests::load(lab.client(), target, length));
        let recorded_before = lab.reason(reason::EVENT_FLOW_RECORDED);
        let door_before = flood.at_the_door();
        let (sent, clients) = thread::scope(|scope| {
            let clients = scope.spawn(|| requests::load(lab.client(), target, length));
            let sent = flood.run(lab.client(), lab.client_ifindex(), length);
            (sent, clients.join().expect("the legitimate clients"))
        });
        let reached = flood.at_the_door() - door_before;
        let recorded = lab.reason(reason::EVENT_FLOW_RECORDED) - recorded_before;
        // Each legitimate connection records at most its one flow.
        if recorded > (clients.requests + clients.errors) as u64 {
            failures.push(format!(
                "the flood recorded flows: {recorded} for {} legitimate connections",
                clients.requests + clients.errors
            ));
        }
        if reached == 0 {
            failures.push(format!(
                "none of {} flood SYNs reached a backend",
                sent.frames
            ));
        }
        flooded.push(Flooded {
            clients,
            sent,
            reached,
        });
    }
    render(&calm, &flooded, length, failures)
}

fn success_percent(rounds: &[&Round]) -> f64 {
    let made: usize = rounds.iter().map(|r| r.requests + r.errors).sum();
    let ok: usize = rounds.iter().map(|r| r.requests).sum();
    100.0 * ok as f64 / made.max(1) as f64
}

fn render(calm: &[Round], flooded: &[Flooded], length: Duration, failures: Vec<String>) -> Section {
    let rate = |rounds: &[&Round]| {
        Spread::of(
            &rounds
                .iter()
                .map(|r| r.requests as f64 / r.seconds)
                .collect::<Vec<_>>(),
        )
    };
    let latency = |rounds: &[&Round]| {
        Spread::of(
            &rounds
                .iter()
                .flat_map(|r| r.latencies_us.iter().copied())
                .collect::<Vec<_>>(),
        )
    };
    let calm: Vec<&Round> = calm.iter().collect();
    let during: Vec<&Round> = flooded.iter().map(|f| &f.clients).collect();
    let offered = Spread::of(
        &flooded
            .iter()
            .map(|f| f.sent.rate() / 1e6)
            .collect::<Vec<_>>(),
    );
    let absorbed = Spread::of(
        &flooded
            .iter()
            .map(|f| f.reached as f64 / f.sent.seconds / 1e6)
            .collect::<Vec<_>>(),
    );
    let mut md = format!(
        "TCP SYNs from unique spoofed sources (198.18.0.0/16, a new address and port for \
         every frame) at the live-frames generator's full rate, sent out of the client's \
         veth into the edge host (one core), {} round(s) of {} s; meanwhile the request \
         benchmark's clients make short connections through the VIP, and the same clients \
         run without the flood in the same rounds. Absorbed: flood SYNs our program \
         rewrote and forwarded that reached a backend (counted and dropped at its door, so \
         the backends' kernels, on the same two cores, spend nothing on them); the rest were \
         lost on the way (full veth rings).\n\n\
         | flood offered, Mpps | absorbed, Mpps | × offered |\n|---:|---:|---:|\n\
         | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.2} |\n\n\
         | legitimate clients | connections/s median | min–max | success | p50 µs | p99 µs |\n\
         |---|---:|---:|---:|---:|---:|\n",
        flooded.len(),
        length.as_secs(),
        offered.median,
        offered.min,
        offered.max,
        absorbed.median,
        absorbed.min,
        absorbed.max,
        absorbed.median / offered.median,
    );
    for (name, rounds) in [("no flood", &calm), ("during the flood", &during)] {
        let (r, l) = (rate(rounds), latency(rounds));
        let made: usize = rounds.iter().map(|r| r.requests + r.errors).sum();
        md += &format!(
            "| {name} | {:.0} | {:.0}–{:.0} | {:.2} % of {made} | {:.0} | {:.0} |\n",
            r.median,
            r.min,
            r.max,
            success_percent(rounds),
            l.median,
            l.p99
        );
    }
    let json = serde_json::json!({
        "offered_mpps": offered.median,
        "absorbed_mpps": absorbed.median,
        "legitimate_success_percent": success_percent(&during),
        "legitimate_per_second": rate(&during).median,
        "calm_per_second": rate(&calm).median,
        "calm_success_percent": success_percent(&calm),
    });
    let summary = vec![
        Row::compared(
            "SYN flood through the lab: absorbed (forwarded to a backend), Mpps",
            absorbed.median,
            offered.median,
            "offered by the generator",
            2,
        ),
        Row {
            measure: "SYN flood through the lab: legitimate connections that succeeded".into(),
            ours: format!("{:.2} %", success_percent(&during)),
            reference: format!("{:.2} % (no flood)", success_percent(&calm)),
            ratio: "–".into(),
        },
        Row::compared(
            "SYN flood through the lab: legitimate connections/s",
            rate(&during).median,
            rate(&calm).median,
            "no flood",
            0,
        ),
    ];
    Section {
        title: "SYN flood through the namespace lab",
        markdown: md,
        json,
        summary,
        failures,
    }
}
