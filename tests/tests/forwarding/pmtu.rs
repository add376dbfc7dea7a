//! Path MTU discovery through the balancer, both ways. Upload: the edge
//! host's links to the backends carry 1,280-byte packets, the backends' own
//! interfaces and the client's 1,500, so the client sends full 1,500-byte
//! segments (the backend announced an MSS of 1,460) that cannot go on. The
//! data path answers each with ICMP "fragmentation needed" from the VIP;
//! the client resends smaller and the upload completes. Dropping them
//! silently, as the data path did, stalls it until its timeout. Download:
//! the same with the edge host's link to the client, the backend's large
//! replies answered from the client's address. Over IPv6 the same, with
//! ICMPv6 Packet Too Big (every IPv6 packet is "don't fragment").

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Instant,
};

use failover_common::stats::reason;
use failover_tests::servers::ask;

use crate::lab::{BACKENDS, Lab};

const LINK_MTU: &str = "1280";
const UPLOAD: usize = 512 * 1024;

#[test]
fn a_large_upload_through_the_vip_completes_over_smaller_backend_links() {
    let lab = Lab::new();
    upload_over_smaller_backend_links(&lab, || lab.connect(), "ipv4");
}

#[test]
fn a_large_ipv6_upload_through_the_vip_completes_over_smaller_backend_links() {
    let lab = Lab::dual_stack();
    upload_over_smaller_backend_links(&lab, || lab.connect6(), "ipv6");
}

#[test]
fn a_large_download_through_the_vip_completes_over_a_smaller_client_link() {
    let lab = Lab::new();
    download_over_a_smaller_client_link(&lab, || lab.connect(), "ipv4");
}

#[test]
fn a_large_ipv6_download_through_the_vip_completes_over_a_smaller_client_link() {
    let lab = Lab::dual_stack();
    download_over_a_smaller_client_link(&lab, || lab.connect6(), "ipv6");
}

fn upload_over_smaller_backend_links(lab: &Lab, connect: impl Fn() -> TcpStream, family: &str) {
    for backend in &BACKENDS {
        lab.lb()
            .ip(&["link", "set", "dev", backend.lb_side, "mtu", LINK_MTU]);
    }
    let answered = lab.reason(reason::TX_FRAG_NEEDED);
    let mut stream = connect();
    let started = Instant::now();
    stream
        .write_all(&vec![b'x'; UPLOAD])
        .unwrap_or_else(|e| panic!("{family}: the upload stalled: {e}\n{}", lab.diag()));
    let answer = ask(&mut stream)
        .unwrap_or_else(|e| panic!("{family}: no answer after the upload: {e}\n{}", lab.diag()));
    let took = started.elapsed();
    assert!(
        BACKENDS.iter().any(|b| b.name == answer),
        "answered by {answer:?}"
    );
    let answers = lab.reason(reason::TX_FRAG_NEEDED) - answered;
    eprintln!("{family}: {UPLOAD} bytes uploaded in {took:?}; {answers} too-big answers");
    assert!(
        answers >= 1,
        "{family}: the upload went through without an answer: the MTU was not in the way\n{}",
        lab.diag()
    );
    assert_eq!(lab.reason(reason::DROP_FRAG_NEEDED), 0, "{}", lab.diag());
}

fn download_over_a_smaller_client_link(lab: &Lab, connect: impl Fn() -> TcpStream, family: &str) {
    lab.lb().ip(&["link", "set", "dev", "lbc", "mtu", LINK_MTU]);
    let answered = lab.reason(reason::TX_FRAG_NEEDED);
    let mut stream = connect();
    let started = Instant::now();
    stream
        .write_all(format!("big {UPLOAD}\n").as_bytes())
        .expect("ask for the download");
    let mut body = vec![0; UPLOAD];
    stream
        .read_exact(&mut body)
        .unwrap_or_else(|e| panic!("{family}: the download stalled: {e}\n{}", lab.diag()));
    assert!(body.iter().all(|&b| b == b'y'));
    let took = started.elapsed();
    let answers = lab.reason(reason::TX_FRAG_NEEDED) - answered;
    eprintln!("{family}: {UPLOAD} bytes downloaded in {took:?}; {answers} too-big answers");
    assert!(
        answers >= 1,
        "{family}: the download went through without an answer: the MTU was not in the way\n{}",
        lab.diag()
    );
    assert_eq!(lab.reason(reason::DROP_FRAG_NEEDED), 0, "{}", lab.diag());
}
