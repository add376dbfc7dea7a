//! Rendering: values as TOML writes them, tables separated by blank lines.

use std::{fmt::Write as _, net::IpAddr, path::Path, time::Duration};

/// A value as TOML writes it.
pub(super) trait Value {
    fn toml(&self) -> String;
}

impl<T: Value + ?Sized> Value for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

impl Value for str {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl Value for String {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl Value for Path {
    fn toml(&self) -> String {
        quote(&self.display().to_string())
    }
}

impl Value for IpAddr {
    fn toml(&self) -> String {
        quote(&self.to_string())
    }
}

macro_rules! number {
    ($($t:ty),*) => {
        $(impl Value for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        })*
    };
}
number!(u8, u16, u32, u64, bool);

/// A duration in the agent's notation, in the largest unit that keeps it
/// whole ("5s", "250ms", "100us").
impl Value for Duration {
    fn toml(&self) -> String {
        let nanos = self.as_nanos();
        let text = if nanos.is_multiple_of(1_000_000_000) {
            format!("{}s", self.as_secs())
        } else if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", self.as_millis())
        } else {
            format!("{}us", self.as_micros())
        };
        quote(&text)
    }
}

impl Value for Vec<String> {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(", "))
    }
}

/// A TOML basic string.
pub(super) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text being written: tables separated by a blank line.
#[derive(Default)]
pub(super) struct Toml {
    pub(super) text: String,
}

impl Toml {
    pub(super) fn table(&mut self, header: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text += header;
        self.text.push('\n');
    }

    pub(super) fn key(&mut self, key: &str, value: impl Value) {
        let _ = writeln!(self.text, "{key} = {}", value.toml());
    }

    pub(super) fn opt<T: Value>(&mut self, key: &str, value: Option<T>) {
        if let Some(value) = value {
            self.key(key, value);
        }
    }
}
