//! The agent's log in words: which tracing lines a newcomer should see, and
//! what they say.

/// One line of the agent's log (tracing's default format).
struct LogLine<'a> {
    level: &'a str,
    message: &'a str,
    fields: Vec<(&'a str, String)>,
}

/// A tracing line split into level, message and fields:
/// `2026-11-22T03:29:32.123Z  WARN failover::agent: new flows switched service=web from=a`.
fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let mut words = line.split_whitespace();
    let _timestamp = words.next()?;
    let level = words.next()?;
    let target_end = line.find(": ")?;
    let rest = &line[target_end + 2..];
    // The message ends where the first `key=` field begins.
    let mut message_end = rest.len();
    let mut offset = 0;
    for word in rest.split(' ') {
        if let Some(eq) = word.find('=')
            && eq > 0
            && word[..eq]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            message_end = offset;
            break;
        }
        offset += word.len() + 1;
    }
    let message = rest[..message_end.min(rest.len())].trim();
    let fields = parse_fields(&rest[message_end.min(rest.len())..]);
    Some(LogLine {
        level,
        message,
        fields,
    })
}

/// `a=1 b="x y" c=Some(2ms)` → pairs, quotes removed.
fn parse_fields(text: &str) -> Vec<(&str, String)> {
    let mut fields = Vec::new();
    let mut rest = text.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        fields.push((key, value));
        rest = next.trim_start();
    }
    fields
}

/// The agent log lines a newcomer should see, in words; `None` for the rest.
pub(super) fn describe_agent_line(line: &str) -> Option<String> {
    let LogLine {
        level,
        message,
        fields,
    } = parse_log_line(line)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(
                |(_, v)| match v.strip_prefix("Some(").and_then(|v| v.strip_suffix(')')) {
                    Some(inner) => inner.to_owned(),
                    None => v.clone(),
                },
            )
            .unwrap_or_default()
    };
    match message {
        "backend unhealthy" if field("evidence").starts_with("data path: ") => Some(format!(
            "{} ({}) is UNHEALTHY on the data path's evidence: {}",
            field("backend"),
            field("address"),
            field("evidence").trim_start_matches("data path: ")
        )),
        "backend unhealthy" => Some(format!(
            "{} ({}) is UNHEALTHY: {}",
            field("backend"),
            field("address"),
            summarize_evidence(&field("evidence"), false)
        )),
        "backend healthy" => Some(format!(
            "{} ({}) is healthy: {}",
            field("backend"),
            field("address"),
            summarize_evidence(&field("evidence"), true)
        )),
        "healthy again; failback held for the failback delay" => Some(format!(
            "{} is healthy again, but new flows stay where they are for {} (failback delay)",
            field("backend"),
            short_duration(&field("failback_in"))
        )),
        "new flows switched" => {
            let gap = field("first_failure_to_map_update");
            let gap = if gap.is_empty() || gap == "None" {
                String::new()
            } else {
                format!(
                    ", {} after the failure was first seen",
                    short_duration(&gap)
                )
            };
            Some(format!(
                "new flows switched: {} -> {} ({}{gap})",
                field("from"),
                field("to"),
                field("cause")
            ))
        }
        "agent running" => Some(format!(
            "running: {} service, {} probes",
            field("services"),
            field("probes")
        )),
        "XDP attached (pinned link)" => Some(format!(
            "XDP attached to {} ({})",
            field("interface"),
            field("mode").to_lowercase()
        )),
        _ if level == "WARN" || level == "ERROR" => Some(format!(
            "{level}: {message} {}",
            fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        _ => None,
    }
}

/// The agent's evidence (`ok 1.2ms, fail 0.3ms (connect: refused), ...`,
/// oldest first) in a few words: how many results in a row flipped it, and
/// the last error.
fn summarize_evidence(evidence: &str, healthy: bool) -> String {
    // Entries start with "ok " or "fail "; errors may contain ", ".
    let mut entries: Vec<&str> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(pos) = evidence[i..].find(", ") {
        let at = i + pos;
        let next = &evidence[at + 2..];
        if next.starts_with("ok ") || next.starts_with("fail ") {
            entries.push(&evidence[start..at]);
            start = at + 2;
        }
        i = at + 2;
    }
    if start < evidence.len() {
        entries.push(&evidence[start..]);
    }
    let kind = if healthy { "ok " } else { "fail " };
    let streak = entries
        .iter()
        .rev()
        .take_while(|e| e.starts_with(kind))
        .count();
    if healthy {
        return format!("{streak} successful probes in a row");
    }
    let error = entries
        .last()
        .and_then(|e| e.split_once(" ("))
        .map(|(_, err)| err.strip_suffix(')').unwrap_or(err))
        .map(|err| match err.rfind(" (os error ") {
            Some(cut) => &err[..cut],
            None => err,
        })
        .unwrap_or("");
    if error.is_empty() {
        format!("{streak} failed probes in a row")
    } else {
        format!("{streak} failed probes in a row ({error})")
    }
}

/// `192.507979ms` → `192.5ms`; anything else unchanged.
fn short_duration(text: &str) -> String {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    match text[..split].parse::<f64>() {
        Ok(value) if split > 0 => format!("{value:.1}{}", &text[split..])
            .replace(".0s", "s")
            .replace(".0ms", "ms"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines_are_described() {
        let line = r#"2026-11-22T03:29:32.123456Z  WARN failover::agent: new flows switched service=web from=primary to=standby cause="backend failed" first_failure_to_map_update=Some(212.3ms)"#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "new flows switched: primary -> standby (backend failed, 212.3ms after the failure was first seen)"
        );
        let line = r#"2026-11-22T03:29:32.123456Z  WARN failover::agent: backend unhealthy service="web" backend=primary address=198.51.100.2 evidence="ok 3ms, fail 1ms (connect: refused, really (os error 111)), fail 2ms (connect: refused, really (os error 111))""#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "primary (198.51.100.2) is UNHEALTHY: 2 failed probes in a row (connect: refused, really)"
        );
        let line = r#"2026-11-22T03:29:32.123456Z  WARN failover::agent::flip: backend unhealthy service=web backend=primary address=198.51.100.2 evidence="data path: 3 RSTs answering 3 SYNs within 1s (threshold 3)""#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "primary (198.51.100.2) is UNHEALTHY on the data path's evidence: 3 RSTs answering 3 SYNs within 1s (threshold 3)"
        );
        let line = r#"2026-11-22T03:29:32.123456Z  INFO failover::agent: backend healthy service="web" backend=primary address=198.51.100.2 evidence="fail 1ms (x), ok 2ms, ok 3ms""#;
        assert_eq!(
            describe_agent_line(line).unwrap(),
            "primary (198.51.100.2) is healthy: 2 successful probes in a row"
        );
        assert_eq!(short_duration("1.999999s"), "2s");
        assert_eq!(short_duration("188.925806ms"), "188.9ms");
        assert_eq!(short_duration("None"), "None");
        let line = "2026-11-22T03:29:32.123456Z  INFO failover::agent: service added id=1";
        assert_eq!(describe_agent_line(line), None);
    }
}
