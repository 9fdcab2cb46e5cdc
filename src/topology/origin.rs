//! Where each entry of the file is: `[[allow]] #3 at lab.toml:42`. The entries a verdict can be
//! blamed on (allow, deny, publish, isolate, egress, host protection, a namespace) get a
//! [`Entry`], a short stable tag that nftables can carry back (a rule's or an element's comment,
//! an nflog prefix), and the line the file holds them at, so `why` and `drops` name the line
//! of the file behind what the kernel did.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One entry of the file that can decide a packet's fate. Indexes are 0-based, as the keys
/// (`allow[2]`); people see them 1-based (`[[allow]] #3`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Entry {
    Allow(usize),
    Deny(usize),
    /// The `index`th string of `namespaces.NS.publish`.
    Publish {
        ns: String,
        index: usize,
    },
    /// `isolate = true` of a bridge.
    Isolate(String),
    /// `egress = "deny"` or `egress_via` of a bridge.
    Egress(String),
    /// `[host] protect = true`.
    Protect,
    /// `[namespaces.NS]` itself (its anti-spoofing, its gateway).
    Namespace(String),
}

// `why` and `drops` (issue 24) use these; until both land, some go unused.
#[allow(dead_code)]
impl Entry {
    /// The tag nft rules and log prefixes carry: `allow#3`, `deny#1`, `publish:web#1`,
    /// `isolate:br0`, `egress:br0`, `protect`, `ns:web`. At most 24 bytes for names of at most
    /// 15 (an interface name's length): it fits a log prefix with room to spare.
    pub(crate) fn tag(&self) -> String {
        match self {
            Entry::Allow(i) => format!("allow#{}", i + 1),
            Entry::Deny(i) => format!("deny#{}", i + 1),
            Entry::Publish { ns, index } => format!("publish:{ns}#{}", index + 1),
            Entry::Isolate(b) => format!("isolate:{b}"),
            Entry::Egress(b) => format!("egress:{b}"),
            Entry::Protect => "protect".to_string(),
            Entry::Namespace(n) => format!("ns:{n}"),
        }
    }

    /// The entry a tag names (the inverse of [`Entry::tag`]).
    pub(crate) fn from_tag(tag: &str) -> Option<Entry> {
        let nth = |s: &str| s.parse::<usize>().ok().filter(|n| *n > 0).map(|n| n - 1);
        if tag == "protect" {
            return Some(Entry::Protect);
        }
        if let Some(n) = tag.strip_prefix("allow#") {
            return nth(n).map(Entry::Allow);
        }
        if let Some(n) = tag.strip_prefix("deny#") {
            return nth(n).map(Entry::Deny);
        }
        if let Some(rest) = tag.strip_prefix("publish:") {
            let (ns, n) = rest.rsplit_once('#')?;
            return Some(Entry::Publish {
                ns: ns.to_string(),
                index: nth(n)?,
            });
        }
        let named = |p: &str| {
            tag.strip_prefix(p)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        named("isolate:")
            .map(Entry::Isolate)
            .or_else(|| named("egress:").map(Entry::Egress))
            .or_else(|| named("ns:").map(Entry::Namespace))
    }

    /// The entry of a policy rule's key (`allow[2]`, `deny[0]`).
    pub(crate) fn of_key(key: &str) -> Option<Entry> {
        let (verb, rest) = key.split_once('[')?;
        let i = rest.strip_suffix(']')?.parse().ok()?;
        match verb {
            "allow" => Some(Entry::Allow(i)),
            "deny" => Some(Entry::Deny(i)),
            _ => None,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Allow(i) => write!(f, "[[allow]] #{}", i + 1),
            Entry::Deny(i) => write!(f, "[[deny]] #{}", i + 1),
            Entry::Publish { ns, index } => write!(f, "namespaces.{ns}.publish #{}", index + 1),
            Entry::Isolate(b) => write!(f, "bridges.{b}.isolate"),
            Entry::Egress(b) => write!(f, "bridges.{b}.egress"),
            Entry::Protect => write!(f, "[host] protect"),
            Entry::Namespace(n) => write!(f, "[namespaces.{n}]"),
        }
    }
}

/// The line of every entry of one file, worked out the first time one is asked for: only
/// `why` and `drops` ask, and with 10,000 `[[allow]]` entries ordering them and counting lines
/// was a twentieth of every run's time.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origins {
    /// The file as messages name it.
    file: String,
    /// Each entry with the byte offset it starts at, in no order.
    at: Vec<(usize, Entry)>,
    text: Arc<str>,
    lines: OnceLock<BTreeMap<Entry, usize>>,
}

/// The same file's entries at the same places (whether their lines were worked out yet or not).
impl PartialEq for Origins {
    fn eq(&self, other: &Origins) -> bool {
        (&self.file, &self.at, &self.text) == (&other.file, &other.at, &other.text)
    }
}

impl Eq for Origins {}

#[allow(dead_code)]
impl Origins {
    /// The lines of the entries of `text` (already known to be valid TOML).
    #[cfg(test)]
    pub(super) fn locate(text: &str, file: &str) -> Origins {
        match DeTable::parse(text) {
            Ok(root) => Origins::of(root.get_ref(), text, file),
            Err(_) => Origins::of(&DeTable::new(), text, file),
        }
    }

    /// Where the entries of `root`, the parsed `text`, start.
    pub(super) fn of(root: &DeTable<'_>, text: &str, file: &str) -> Origins {
        let mut at: Vec<(usize, Entry)> = Vec::new();
        walk(root, &mut |e, offset| at.push((offset, e)));
        Origins {
            file: file.to_string(),
            at,
            text: Arc::from(text),
            lines: OnceLock::new(),
        }
    }

    /// The line `entry` is at (1-based), if the file has it.
    pub(crate) fn line(&self, entry: &Entry) -> Option<usize> {
        self.lines
            .get_or_init(|| lines(&self.at, &self.text))
            .get(entry)
            .copied()
    }

    /// `[[allow]] #3 at lab.toml:42` (without the line when the file does not hold the entry).
    pub(crate) fn at(&self, entry: &Entry) -> String {
        match self.line(entry) {
            Some(l) => format!("{entry} at {}:{l}", self.file),
            None => format!("{entry} in {}", self.file),
        }
    }
}

/// The line of each entry of `at` in `text`. The offsets are turned into lines in one pass
/// over the text, in order: a file of 10,000 namespaces has as many entries, and counting
/// from the start for each would be quadratic.
fn lines(at: &[(usize, Entry)], text: &str) -> BTreeMap<Entry, usize> {
    let mut at: Vec<&(usize, Entry)> = at.iter().collect();
    at.sort_unstable();
    let mut lines = BTreeMap::new();
    let (mut line, mut pos) = (1, 0);
    let bytes = text.as_bytes();
    for (offset, e) in at {
        let end = (*offset).min(bytes.len());
        line += bytes[pos..end.max(pos)]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        pos = end.max(pos);
        lines.entry(e.clone()).or_insert(line);
    }
    lines
}

/// Calls `found` with each entry and the byte offset it starts at.
fn walk(root: &DeTable<'_>, found: &mut dyn FnMut(Entry, usize)) {
    for (verb, make) in [
        ("allow", Entry::Allow as fn(usize) -> Entry),
        ("deny", Entry::Deny),
    ] {
        let Some(items) = root.get(verb).and_then(|v| v.get_ref().as_array()) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            found(make(i), start(item));
        }
    }
    if let Some(host) = root.get("host").and_then(|v| v.get_ref().as_table())
        && let Some(v) = host.get("protect")
    {
        found(
            Entry::Protect,
            key_start(host, "protect").unwrap_or(v.span().start),
        );
    }
    if let Some(bridges) = root.get("bridges").and_then(|v| v.get_ref().as_table()) {
        for (name, b) in bridges {
            let Some(t) = b.get_ref().as_table() else {
                continue;
            };
            let name = name.get_ref().to_string();
            if let Some(at) = key_start(t, "isolate") {
                found(Entry::Isolate(name.clone()), at);
            }
            if let Some(at) = key_start(t, "egress").or_else(|| key_start(t, "egress_via")) {
                found(Entry::Egress(name), at);
            }
        }
    }
    if let Some(nss) = root.get("namespaces").and_then(|v| v.get_ref().as_table()) {
        for (name, n) in nss {
            let ns = name.get_ref().to_string();
            found(Entry::Namespace(ns.clone()), name.span().start);
            let publish = n.get_ref().as_table().and_then(|t| t.get("publish"));
            let Some(items) = publish.and_then(|p| p.get_ref().as_array()) else {
                continue;
            };
            for (index, item) in items.iter().enumerate() {
                let ns = ns.clone();
                found(Entry::Publish { ns, index }, item.span().start);
            }
        }
    }
}

/// Where a table of an array starts: its first key (an `[[allow]]` header has no span of its
/// own in the parsed tree; its first key is on the next line at the latest).
fn start(item: &Spanned<DeValue<'_>>) -> usize {
    match item.get_ref().as_table() {
        Some(t) => t
            .keys()
            .map(|k| k.span().start)
            .min()
            .unwrap_or(item.span().start),
        None => item.span().start,
    }
}

fn key_start(t: &DeTable<'_>, key: &str) -> Option<usize> {
    t.get_key_value(key).map(|(k, _)| k.span().start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"name = "lab"

[host]
protect = true

[bridges.br0]
address = "198.51.100.1/24"
isolate = true
egress = "deny"

[namespaces.web]
bridge = "br0"
address = "198.51.100.10/24"
publish = ["tcp/8080:80",
  "udp/53"]

[[allow]]
from = "web"
to = "world"

[[deny]]
from = "web"
to = "host"

[[allow]]
from = "world"
to = "web"
ports = ["tcp/80"]
"#;

    #[test]
    fn every_entry_has_its_line() {
        let o = Origins::locate(FILE, "lab.toml");
        assert_eq!(o.line(&Entry::Protect), Some(4));
        assert_eq!(o.line(&Entry::Isolate("br0".into())), Some(8));
        assert_eq!(o.line(&Entry::Egress("br0".into())), Some(9));
        assert_eq!(o.line(&Entry::Namespace("web".into())), Some(11));
        let publish = |index| Entry::Publish {
            ns: "web".into(),
            index,
        };
        assert_eq!(o.line(&publish(0)), Some(14));
        assert_eq!(o.line(&publish(1)), Some(15));
        assert_eq!(o.line(&Entry::Allow(0)), Some(18));
        assert_eq!(o.line(&Entry::Deny(0)), Some(22));
        assert_eq!(o.line(&Entry::Allow(1)), Some(26));
        assert_eq!(o.at(&Entry::Allow(1)), "[[allow]] #2 at lab.toml:26");
        assert_eq!(o.at(&Entry::Deny(5)), "[[deny]] #6 in lab.toml");
    }

    #[test]
    fn tags_read_back() {
        for e in [
            Entry::Allow(2),
            Entry::Deny(0),
            Entry::Publish {
                ns: "a#b".into(),
                index: 4,
            },
            Entry::Isolate("br0".into()),
            Entry::Egress("br-x".into()),
            Entry::Protect,
            Entry::Namespace("web".into()),
        ] {
            assert_eq!(Entry::from_tag(&e.tag()), Some(e));
        }
        assert_eq!(Entry::Allow(2).tag(), "allow#3");
        for bad in [
            "allow#0",
            "allow#",
            "deny#x",
            "isolate:",
            "publish:web",
            "x",
        ] {
            assert_eq!(Entry::from_tag(bad), None, "{bad}");
        }
        assert_eq!(Entry::of_key("allow[2]"), Some(Entry::Allow(2)));
        assert_eq!(Entry::of_key("deny[0]"), Some(Entry::Deny(0)));
        assert_eq!(Entry::of_key("verify[0]"), None);
    }
}
