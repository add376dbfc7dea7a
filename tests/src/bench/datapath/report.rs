//! The data-path section's report: every case against the floors, and the
//! bars against the reference programs and our own established packet.

use super::{
    super::{Row, Section},
    Measured, Settings, Wrapper,
    cases::{ESTABLISHED, ESTABLISHED6, NOT_FOR_A_SERVICE, SYN_FILLING, SYN6},
};

/// A bar: our case over its reference, and the ratio it should stay under.
struct Bar {
    ours: &'static str,
    reference: &'static str,
    limit: f64,
}

/// The bars (ratios in one run; never asserted, reported); the
/// IPv6 cases are compared with their IPv4 twins.
const BARS: [Bar; 8] = [
    Bar {
        ours: ESTABLISHED,
        reference: "reference: minimal NAT",
        limit: 1.5,
    },
    Bar {
        ours: "tcp backend reply",
        reference: "reference: minimal NAT",
        limit: 1.5,
    },
    Bar {
        ours: NOT_FOR_A_SERVICE,
        reference: "reference: minimal pass",
        limit: 1.2,
    },
    Bar {
        ours: "tcp syn, new tuple: no Maglev table (table filling)",
        reference: ESTABLISHED,
        limit: 1.5,
    },
    Bar {
        ours: "tcp syn, new tuple: no Maglev table (table full)",
        reference: ESTABLISHED,
        limit: 1.5,
    },
    Bar {
        ours: ESTABLISHED6,
        reference: ESTABLISHED,
        limit: 1.3,
    },
    Bar {
        ours: "ipv6 tcp backend reply",
        reference: "tcp backend reply",
        limit: 1.3,
    },
    Bar {
        ours: SYN6,
        reference: SYN_FILLING,
        limit: 1.3,
    },
];

pub(super) fn section(results: &[Measured], settings: &Settings, failures: Vec<String>) -> Section {
    let median_of = |name: &str| {
        results
            .iter()
            .find(|m| m.name.starts_with(name))
            .map_or(f64::NAN, |m| m.spread().median)
    };
    let floor_of = |m: &Measured| median_of(m.wrapper.floor());
    let restore_floor = median_of(Wrapper::Restore.floor());
    let empty = median_of("floor: empty program");
    let macswap = median_of("floor: mac swap");
    let mut md = format!(
        "Each case restores its frame before every repetition and tail-calls the program; \
         its verdict and output bytes are checked first. New-flow cases also give every \
         repetition a 5-tuple never seen before, so each one inserts a conntrack entry; \
         they are compared with the floor of that wrapper. {} rounds x {} repetitions, \
         kernel-reported ns/packet.\n\n",
        settings.rounds, settings.repeat
    );
    md += "| case | median | min–max | × its wrapper floor | net of that floor | × empty program | × MAC swap + XDP_TX |\n\
           |---|---:|---:|---:|---:|---:|---:|\n";
    let mut cases_json = Vec::new();
    let mut summary = Vec::new();
    for m in results {
        let s = m.spread();
        let floor = floor_of(m);
        md += &format!(
            "| {} | {:.1} | {:.1}–{:.1} | {:.2} | {:.1} | {:.2} | {:.2} |\n",
            m.name,
            s.median,
            s.min,
            s.max,
            s.median / floor,
            s.median - floor,
            s.median / empty,
            s.median / macswap,
        );
        cases_json.push(serde_json::json!({
            "case": m.name, "median_ns": s.median, "min_ns": s.min, "max_ns": s.max,
            "wrapper_floor_ns": floor, "ratio_to_wrapper_floor": s.median / floor,
            "ratio_to_empty": s.median / empty, "ratio_to_macswap": s.median / macswap,
            "samples_ns": m.samples,
        }));
        if !m.name.starts_with("floor") && !m.name.starts_with("reference") {
            summary.push(Row::compared(
                &format!("XDP {}, ns/packet", m.name),
                s.median,
                floor,
                "wrapper + empty program",
                0,
            ));
        }
    }
    md += &format!("\nEmpty program in the kernel repeat loop: {empty:.1} ns.\n");
    // New-flow and IPv6 cases run through a wrapper that does more (a new
    // tuple, a longer frame): its extra cost is taken out before comparing
    // with a plain case.
    let comparable = |m: &Measured| m.spread().median - floor_of(m) + restore_floor;
    let find = |name: &str| results.iter().find(|m| m.name.starts_with(name));
    md += "\n| bar | ours, ns | reference, ns | ratio | bar |\n|---|---:|---:|---:|---:|\n";
    let mut bars_json = Vec::new();
    for bar in &BARS {
        let (Some(ours), Some(reference)) = (find(bar.ours), find(bar.reference)) else {
            continue;
        };
        let (ours_ns, reference_ns) = (comparable(ours), comparable(reference));
        let ratio = ours_ns / reference_ns;
        let verdict = if ratio <= bar.limit { "met" } else { "missed" };
        md += &format!(
            "| {} / {} | {ours_ns:.1} | {reference_ns:.1} | {ratio:.2} | ≤ {:.1} ({verdict}) |\n",
            ours.name, reference.name, bar.limit
        );
        summary.push(Row {
            measure: format!("XDP {} over {}", ours.name, reference.name),
            ours: format!("{ours_ns:.0} ns"),
            reference: format!("{reference_ns:.0} ns (bar ≤ {:.1}x)", bar.limit),
            ratio: format!("{ratio:.2}x"),
        });
        bars_json.push(serde_json::json!({
            "ours": ours.name, "reference": reference.name, "ours_ns": ours_ns,
            "reference_ns": reference_ns, "ratio": ratio, "limit": bar.limit, "met": ratio <= bar.limit,
        }));
    }
    md += "\nNew-flow and IPv6 cases in the bars are taken net of their wrapper's extra \
           cost (its floor minus the plain IPv4 wrapper's).\n";
    Section {
        title: "XDP data path, ns/packet (BPF_PROG_TEST_RUN)",
        markdown: md,
        json: serde_json::json!({"rounds": settings.rounds, "repeat": settings.repeat, "cases": cases_json, "bars": bars_json}),
        summary,
        failures,
    }
}
