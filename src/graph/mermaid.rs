//! The model as a Mermaid flowchart, for docs that render Mermaid (GitHub, GitLab, mkdocs):
//! node ids are generated (`n0`, `n1`, ...; a name is never an id, so no name can break the
//! syntax), every label is a quoted string with `"`, `<`, `>`, `&` and `#` written as
//! Mermaid's entity codes, lines joined by `<br/>`; styles by `classDef`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::{Kind, Model, Node};

/// A label as a quoted Mermaid string.
pub(super) fn quoted(lines: &[&str]) -> String {
    let mut s = String::from("\"");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push_str("<br/>");
        }
        for c in l.chars() {
            match c {
                '"' | '<' | '>' | '&' | '#' | '`' => {
                    let _ = write!(s, "#{};", c as u32);
                }
                c if c.is_control() => s.push(' '),
                c => s.push(c),
            }
        }
    }
    s.push('"');
    s
}

fn shape(k: Kind, label: &str) -> String {
    match k {
        Kind::World => format!("(({label}))"),
        Kind::Published | Kind::Endpoint => format!("([{label}])"),
        Kind::Router => format!("{{{{{label}}}}}"),
        _ => format!("[{label}]"),
    }
}

struct Ids {
    by_name: BTreeMap<String, String>,
    next: usize,
}

impl Ids {
    fn id(&mut self, key: &str) -> String {
        if let Some(i) = self.by_name.get(key) {
            return i.clone();
        }
        let i = format!("n{}", self.next);
        self.next += 1;
        self.by_name.insert(key.to_string(), i.clone());
        i
    }
}

fn node(s: &mut String, ids: &mut Ids, key: &str, n: &Node) -> String {
    let id = ids.id(key);
    let mut lines = vec![n.name.as_str()];
    lines.extend(n.lines.iter().map(|l| l.text.as_str()));
    let _ = writeln!(s, "  {id}{}", shape(n.kind, &quoted(&lines)));
    let class = if n.drifted { "drifted" } else { n.kind.class() };
    let _ = writeln!(s, "  class {id} {class}");
    id
}

fn endpoint(m: &Model, ids: &mut Ids, s: &mut String, name: &str) -> String {
    let key = if m.members.iter().any(|x| x.node.name == name) {
        format!("ns:{name}")
    } else if m.segments.iter().any(|x| x.node.name == name) {
        format!("bridge:{name}")
    } else if name == "host" || name == "world" {
        name.to_string()
    } else {
        let key = format!("net:{name}");
        if !ids.by_name.contains_key(&key) {
            let id = ids.id(&key);
            let _ = writeln!(s, "  {id}([{}])", quoted(&[name]));
            let _ = writeln!(s, "  class {id} endpoint");
        }
        key
    };
    ids.id(&key)
}

/// The whole flowchart.
pub(super) fn render(m: &Model) -> String {
    let mut s = String::from("flowchart TB\n");
    let mut ids = Ids {
        by_name: BTreeMap::new(),
        next: 0,
    };
    let world = node(&mut s, &mut ids, "world", &m.world);
    let host = node(&mut s, &mut ids, "host", &m.host);
    let nat: Vec<&str> = m.uplink.iter().map(String::as_str).collect();
    if nat.is_empty() {
        let _ = writeln!(s, "  {host} --- {world}");
    } else {
        let _ = writeln!(s, "  {host} ---|{}| {world}", quoted(&nat));
    }
    for seg in &m.segments {
        let b = node(
            &mut s,
            &mut ids,
            &format!("bridge:{}", seg.node.name),
            &seg.node,
        );
        if seg.attached {
            let _ = writeln!(s, "  {host} --- {b}");
        }
    }
    for mm in &m.members {
        let id = node(&mut s, &mut ids, &format!("ns:{}", mm.node.name), &mm.node);
        for &seg in &mm.segments {
            let b = ids.id(&format!("bridge:{}", m.segments[seg].node.name));
            let _ = writeln!(s, "  {b} --- {id}");
        }
    }
    for (i, p) in m.published.iter().enumerate() {
        let id = node(&mut s, &mut ids, &format!("published:{i}"), p);
        let _ = writeln!(s, "  {host} -.- {id}");
        if let Some(ns) = p
            .name
            .rsplit(" -> ")
            .next()
            .and_then(|t| t.split(':').next())
        {
            let target = ids.id(&format!("ns:{ns}"));
            let _ = writeln!(s, "  {id} -.-> {target}");
        }
    }
    for e in &m.policy {
        let from = endpoint(m, &mut ids, &mut s, &e.from);
        let to = endpoint(m, &mut ids, &mut s, &e.to);
        let arrow = if e.allow { "-->" } else { "-.->" };
        let _ = writeln!(s, "  {from} {arrow}|{}| {to}", quoted(&[&e.label]));
    }
    for (class, style) in [
        ("world", "fill:#eceff1,stroke:#607d8b"),
        ("host", "fill:#e8f5e9,stroke:#2e7d32"),
        ("bridge", "fill:#e3f2fd,stroke:#1565c0"),
        ("namespace", "fill:#ffffff,stroke:#455a64"),
        ("router", "fill:#fff8e1,stroke:#ef6c00"),
        ("published", "fill:#f3e5f5,stroke:#6a1b9a"),
        ("endpoint", "fill:#fafafa,stroke:#90a4ae"),
        (
            "drifted",
            "fill:#ffebee,stroke:#c62828,stroke-width:3px,color:#c62828",
        ),
    ] {
        let _ = writeln!(s, "  classDef {class} {style}");
    }
    s
}
