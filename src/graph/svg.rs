//! The picture as one standalone SVG file: no script, no external font, image or stylesheet,
//! so that a browser, an `<img>` in a Markdown viewer and an XML parser all read it alone.
//! Every box is a `<g class="node KIND" data-kind data-name>` holding its `<rect class="box">`
//! and its `<text class="label">`; every policy edge a `<g class="edge" data-from data-to>`
//! with its `<text class="label">`: what the tests look for in the DOM.

use std::fmt::Write as _;

use super::layout::{Picture, Placed, Text};
use super::model::{Kind, Model, Tone};
use super::text::{FONT, LINE, PAD, esc};

const STYLE: &str = r#"
text { font-family: "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; fill: #263238; }
.heading { font-size: 13px; font-weight: bold; }
.legend, .note { fill: #546e7a; }
.section { font-weight: bold; fill: #37474f; }
.nat { fill: #2e7d32; }
.lanelabel { fill: #ef6c00; font-size: 11px; }
.bad { fill: #c62828; }
.allow { fill: #2e7d32; }
.deny { fill: #c62828; }
.label { font-weight: bold; }
.d { fill: #607d8b; }
.c { fill: #1565c0; }
.box { stroke-width: 1.5; }
.host .box { fill: #e8f5e9; stroke: #2e7d32; }
.world .box { fill: #eceff1; stroke: #607d8b; }
.bridge .box { fill: #e3f2fd; stroke: #1565c0; }
.namespace .box { fill: #ffffff; stroke: #455a64; }
.router .box { fill: #fff8e1; stroke: #ef6c00; }
.published .box { fill: #f3e5f5; stroke: #6a1b9a; }
.endpoint .box { fill: #fafafa; stroke: #90a4ae; }
.drifted .box { fill: #ffebee; stroke: #c62828; stroke-width: 2.5; }
polyline { fill: none; }
.wire { stroke: #78909c; stroke-width: 1.5; }
.trunk { stroke: #2e7d32; stroke-width: 2; }
.uplink { stroke: #2e7d32; stroke-width: 2; stroke-dasharray: 6 3; }
.lane { stroke: #ef6c00; stroke-width: 1.5; }
.edge.allow polyline { stroke: #2e7d32; stroke-width: 1.5; }
.edge.deny polyline { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 5 3; }
"#;

fn points(ps: &[(f64, f64)]) -> String {
    ps.iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tone(t: Tone) -> &'static str {
    match t {
        Tone::Plain => "l",
        Tone::Dim => "d",
        Tone::Bad => "bad",
        Tone::Count => "c",
    }
}

fn rx(k: Kind) -> f64 {
    match k {
        Kind::World => 16.0,
        Kind::Published | Kind::Endpoint => 12.0,
        _ => 4.0,
    }
}

fn node(s: &mut String, b: &Placed) {
    let r = b.rect;
    let drift = if b.drifted { " drifted" } else { "" };
    let _ = write!(
        s,
        "<g class=\"node {}{drift}\" data-kind=\"{}\" data-name=\"{}\">",
        b.kind.class(),
        b.kind.class(),
        esc(&b.name)
    );
    let cut: Vec<&str> = b.lines.iter().filter_map(|l| l.2.as_deref()).collect();
    if b.title != b.name || !cut.is_empty() {
        let mut whole = vec![b.name.as_str()];
        whole.extend(cut);
        let _ = write!(s, "<title>{}</title>", esc(&whole.join("\n")));
    }
    let _ = write!(
        s,
        "<rect class=\"box\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{}\"/>",
        r.x,
        r.y,
        r.w,
        r.h,
        rx(b.kind)
    );
    let x = r.x + PAD;
    let base = r.y + PAD + FONT - 1.0;
    let _ = write!(
        s,
        "<text class=\"label\" x=\"{x:.1}\" y=\"{base:.1}\">{}</text>",
        esc(&b.title)
    );
    for (i, (text, t, _)) in b.lines.iter().enumerate() {
        let _ = write!(
            s,
            "<text class=\"line {}\" x=\"{x:.1}\" y=\"{:.1}\" xml:space=\"preserve\">{}</text>",
            tone(*t),
            base + LINE * (i + 1) as f64,
            esc(text)
        );
    }
    s.push_str("</g>\n");
}

fn text(s: &mut String, t: &Text) {
    let _ = writeln!(
        s,
        "<text class=\"{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        t.class,
        t.x,
        t.y,
        esc(&t.text)
    );
}

/// The SVG document of a laid-out model.
pub(super) fn render(m: &Model, p: &Picture) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
        w = p.width,
        h = p.height
    );
    let _ = writeln!(s, "<title>nsfw graph: {}</title>", esc(&m.title));
    s.push_str("<defs>\n");
    for (id, colour) in [("allow", "#2e7d32"), ("deny", "#c62828")] {
        let _ = writeln!(
            s,
            "<marker id=\"arrow-{id}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{colour}\"/></marker>"
        );
    }
    let _ = writeln!(s, "</defs>\n<style>{STYLE}</style>");
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        p.width, p.height
    );
    for w in &p.wires {
        let _ = writeln!(
            s,
            "<polyline class=\"{}\" points=\"{}\"/>",
            w.class,
            points(&w.points)
        );
    }
    for t in &p.texts {
        text(&mut s, t);
    }
    for b in &p.boxes {
        node(&mut s, b);
    }
    for e in &p.edges {
        let v = if e.allow { "allow" } else { "deny" };
        let _ = write!(
            s,
            "<g class=\"edge policy {v}\" data-from=\"{}\" data-to=\"{}\"><polyline points=\"{}\" marker-end=\"url(#arrow-{v})\"/>",
            esc(&e.from),
            esc(&e.to),
            points(&e.wire)
        );
        let _ = writeln!(
            s,
            "<text class=\"label {v}\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            e.label.x,
            e.label.y,
            esc(&e.label.text)
        );
    }
    s.push_str("</svg>\n");
    s
}
