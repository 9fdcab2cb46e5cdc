//! The model in Graphviz's `dot` language, for people who keep diagrams in docs: the same
//! boxes (a bridge per segment, namespaces and routers hanging from their bridges, the host
//! and the world, published ports), the policy as coloured edges. Graphviz lays it out.

use std::fmt::Write as _;

use super::model::{Kind, Model, Node, Tone};

fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A multi-line, left-justified label: each line escaped, ended by `\l`.
fn label(n: &Node) -> String {
    let mut s = String::from("\"");
    for l in std::iter::once(n.name.as_str()).chain(n.lines.iter().map(|l| l.text.as_str())) {
        let e = q(l);
        s.push_str(&e[1..e.len() - 1]);
        s.push_str("\\l");
    }
    s.push('"');
    s
}

fn colours(k: Kind) -> (&'static str, &'static str) {
    match k {
        Kind::World => ("#eceff1", "#607d8b"),
        Kind::Host => ("#e8f5e9", "#2e7d32"),
        Kind::Bridge => ("#e3f2fd", "#1565c0"),
        Kind::Namespace => ("#ffffff", "#455a64"),
        Kind::Router => ("#fff8e1", "#ef6c00"),
        Kind::Published => ("#f3e5f5", "#6a1b9a"),
        Kind::Endpoint => ("#fafafa", "#90a4ae"),
    }
}

fn node(s: &mut String, id: &str, n: &Node) {
    let (fill, stroke) = colours(n.kind);
    let (stroke, width) = if n.drifted {
        ("#c62828", 2.5)
    } else {
        (stroke, 1.2)
    };
    let bad = n.lines.iter().any(|l| l.tone == Tone::Bad);
    let _ = writeln!(
        s,
        "  {} [label={}, fillcolor=\"{fill}\", color=\"{stroke}\", penwidth={width}{}];",
        q(id),
        label(n),
        if bad { ", fontcolor=\"#c62828\"" } else { "" }
    );
}

/// The node id a policy endpoint names: a namespace's, a bridge's, the host, the world, or
/// a node of its own for a CIDR.
fn endpoint(m: &Model, name: &str, extra: &mut Vec<String>) -> String {
    if m.members.iter().any(|x| x.node.name == name) {
        format!("ns:{name}")
    } else if m.segments.iter().any(|x| x.node.name == name) {
        format!("bridge:{name}")
    } else if name == "host" || name == "world" {
        name.to_string()
    } else {
        if !extra.iter().any(|e| e == name) {
            extra.push(name.to_string());
        }
        format!("net:{name}")
    }
}

/// The whole graph.
pub(super) fn render(m: &Model) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph nsfw {{");
    let _ = writeln!(
        s,
        "  graph [rankdir=TB, fontname=\"monospace\", labelloc=t, label={}];",
        q(&m.title)
    );
    s.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10];\n",
    );
    s.push_str("  edge [fontname=\"monospace\", fontsize=9, color=\"#78909c\"];\n");
    node(&mut s, "world", &m.world);
    node(&mut s, "host", &m.host);
    let nat = m.uplink.join("\n");
    let _ = writeln!(
        s,
        "  \"host\" -> \"world\" [dir=none, color=\"#2e7d32\", style=dashed, label={}];",
        q(&nat)
    );
    for seg in &m.segments {
        let id = format!("bridge:{}", seg.node.name);
        node(&mut s, &id, &seg.node);
        if seg.attached {
            let _ = writeln!(s, "  \"host\" -> {} [dir=none, color=\"#2e7d32\"];", q(&id));
        }
    }
    for mm in &m.members {
        let id = format!("ns:{}", mm.node.name);
        node(&mut s, &id, &mm.node);
        for &seg in &mm.segments {
            let b = format!("bridge:{}", m.segments[seg].node.name);
            let _ = writeln!(s, "  {} -> {} [dir=none];", q(&b), q(&id));
        }
    }
    for (i, p) in m.published.iter().enumerate() {
        let id = format!("published:{i}");
        node(&mut s, &id, p);
        let _ = writeln!(
            s,
            "  \"host\" -> {} [style=dashed, color=\"#6a1b9a\"];",
            q(&id)
        );
        if let Some(ns) = p
            .name
            .rsplit(" -> ")
            .next()
            .and_then(|t| t.split(':').next())
        {
            let _ = writeln!(
                s,
                "  {} -> {} [style=dashed, color=\"#6a1b9a\"];",
                q(&id),
                q(&format!("ns:{ns}"))
            );
        }
    }
    let mut extra = Vec::new();
    let mut edges = Vec::new();
    for e in &m.policy {
        let from = endpoint(m, &e.from, &mut extra);
        let to = endpoint(m, &e.to, &mut extra);
        let (c, style) = if e.allow {
            ("#2e7d32", "solid")
        } else {
            ("#c62828", "dashed")
        };
        edges.push(format!(
            "  {} -> {} [color=\"{c}\", fontcolor=\"{c}\", style={style}, constraint=false, label={}];",
            q(&from),
            q(&to),
            q(&e.label)
        ));
    }
    for n in extra {
        let _ = writeln!(
            s,
            "  {} [label={}, fillcolor=\"#fafafa\", color=\"#90a4ae\"];",
            q(&format!("net:{n}")),
            q(&n)
        );
    }
    for e in edges {
        let _ = writeln!(s, "{e}");
    }
    s.push_str("}\n");
    s
}
