//! Walking the TOML tree by hand: typed reads of keys that record an error (naming the file,
//! the dotted key and the value) and go on, so one run reports everything wrong with a file.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::Mac;
use super::names::{check_ifname, parse_mac};

/// The file being read and every error found in it so far.
pub(super) struct Ctx {
    pub file: String,
    pub errors: Vec<String>,
    /// What is worth saying about the file but not wrong.
    pub warnings: Vec<String>,
}

impl Ctx {
    pub(super) fn new(file: String) -> Ctx {
        Ctx {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn err(&mut self, key: &str, value: Option<&Value>, why: impl AsRef<str>) {
        let why = why.as_ref();
        match value {
            Some(v) => self
                .errors
                .push(format!("{}: {key} = {}: {why}", self.file, show(v))),
            None => self.errors.push(format!("{}: {key}: {why}", self.file)),
        }
    }

    /// Reports every key of `table` not in `known`.
    pub(super) fn unknown_keys(&mut self, table: &Table, prefix: &str, known: &[&str]) {
        for (k, v) in table {
            if !known.contains(&k.as_str()) {
                let key = join(prefix, k);
                self.err(
                    &key,
                    Some(v),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    pub(super) fn string(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        let v = table.get(key)?;
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(&join(prefix, key), Some(v), "must be a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, table: &Table, prefix: &str, key: &str) -> Option<bool> {
        let v = table.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.err(&join(prefix, key), Some(v), "must be true or false");
                None
            }
        }
    }

    pub(super) fn table<'a>(
        &mut self,
        table: &'a Table,
        prefix: &str,
        key: &str,
    ) -> Option<&'a Table> {
        let v = table.get(key)?;
        match v.as_table() {
            Some(t) => Some(t),
            None => {
                self.err(&join(prefix, key), Some(v), "must be a table");
                None
            }
        }
    }

    /// A string that must be one of `choices`.
    pub(super) fn choice(
        &mut self,
        table: &Table,
        prefix: &str,
        key: &str,
        choices: &[&str],
    ) -> Option<String> {
        let s = self.string(table, prefix, key)?;
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        let list: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
        self.err(
            &join(prefix, key),
            table.get(key),
            format!("must be one of {}", list.join(", ")),
        );
        None
    }

    /// A list of strings, each with the value it came from (for messages).
    pub(super) fn strings<'a>(
        &mut self,
        table: &'a Table,
        prefix: &str,
        key: &str,
    ) -> Vec<(String, &'a Value)> {
        let Some(v) = table.get(key) else {
            return Vec::new();
        };
        let Some(items) = v.as_array() else {
            self.err(&join(prefix, key), Some(v), "must be a list of strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) => out.push((s.to_string(), item)),
                None => self.err(&join(prefix, key), Some(item), "must be a string"),
            }
        }
        out
    }

    /// An MTU: 68 (IPv4's minimum) to 65535 (the largest a bridge or veth takes).
    pub(super) fn mtu(&mut self, table: &Table, prefix: &str) -> Option<u32> {
        let v = table.get("mtu")?;
        match v.as_integer() {
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(_) => {
                self.err(&join(prefix, "mtu"), Some(v), "MTU must be within 68-65535");
                None
            }
            None => {
                self.err(&join(prefix, "mtu"), Some(v), "must be an integer");
                None
            }
        }
    }

    pub(super) fn mac(&mut self, table: &Table, prefix: &str) -> Option<Mac> {
        self.mac_at(table, prefix, "mac")
    }

    /// The MAC at `key` (`mac`, `host_mac`).
    pub(super) fn mac_at(&mut self, table: &Table, prefix: &str, key: &str) -> Option<Mac> {
        let s = self.string(table, prefix, key)?;
        match parse_mac(&s) {
            Ok(m) => Some(m),
            Err(why) => {
                self.err(&join(prefix, key), table.get(key), why);
                None
            }
        }
    }

    pub(super) fn ifname(&mut self, table: &Table, prefix: &str, key: &str) -> Option<String> {
        let s = self.string(table, prefix, key)?;
        if let Err(why) = check_ifname(&s) {
            self.err(&join(prefix, key), table.get(key), why);
            return None;
        }
        Some(s)
    }
}

/// `prefix.key`, quoting a key that TOML would need quoted. One allocation: every entry of a
/// file makes several of these, and at 1,000 namespaces `format!` here was a sixth of parsing.
pub(super) fn join(prefix: &str, key: &str) -> String {
    let bare = key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    let mut s = String::with_capacity(prefix.len() + key.len() + 3);
    if !prefix.is_empty() {
        s.push_str(prefix);
        s.push('.');
    }
    if bare {
        s.push_str(key);
    } else {
        let _ = write!(s, "{key:?}");
    }
    s
}

fn show(v: &Value) -> String {
    match v {
        Value::Table(_) => "{...}".to_string(),
        other => other.to_string(),
    }
}

/// Line and column (1-based) of a byte offset, for TOML syntax errors.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
