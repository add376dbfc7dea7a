//! Reading the agent's Prometheus exposition in tests.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use crate::agent_lab::AgentLab;

/// `GET /metrics` on 127.0.0.1:`port` inside the lab's lb namespace: the
/// exposition text.
pub fn scrape(lab: &AgentLab, port: u16) -> String {
    let response = lab.lb.run(|| http_get(port, "/metrics"));
    let response = response.unwrap_or_else(|e| panic!("scrape /metrics: {e}\n{}", lab.diag()));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// One HTTP/1.0 GET (so no chunked body) of `path` on 127.0.0.1:`port`,
/// in the calling thread's namespace: the whole response.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The value of the series `name` whose labels include `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let rest = series.strip_prefix(name);
            matches!(rest, Some(r) if r.is_empty() || r.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {value:?}: {e}"))
        })
}

/// [`metric`], which must exist.
pub fn must(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}
