//! The policy view, apart from the segments so that dozens of entries stay readable: the
//! notes (isolation, egress, host protection), then the `[[allow]]`/`[[deny]]` entries
//! grouped by where they come from: the source once at the left, an elbow edge to each
//! destination, the ports and verdict on the edge. Groups flow left to right and wrap.

use super::super::model::{Edge, Kind, Line, Model, Node, Tone};
use super::super::text::{CHAR, LINE, chars, fit, width};
use super::{CONTENT_X, MARGIN, MAX_WIDTH, Picture, PlacedEdge, Rect, Text, measure, place};

const ROW: f64 = 10.0;
const GROUP_GAP: f64 = 28.0;

fn pill(name: &str) -> Node {
    Node {
        kind: Kind::Endpoint,
        name: name.to_string(),
        lines: Vec::new(),
        drifted: false,
    }
}

/// Entries grouped by source, in the order sources first appear.
fn groups(edges: &[Edge]) -> Vec<(String, Vec<&Edge>)> {
    let mut out: Vec<(String, Vec<&Edge>)> = Vec::new();
    for e in edges {
        match out.iter_mut().find(|(f, _)| *f == e.from) {
            Some((_, v)) => v.push(e),
            None => out.push((e.from.clone(), vec![e])),
        }
    }
    out
}

/// Places the view from `y`; returns the bottom.
pub(super) fn view(m: &Model, p: &mut Picture, mut y: f64) -> f64 {
    let heading = if m.policy_drifted {
        "policy (drifted: nsfw apply puts it back)"
    } else {
        "policy"
    };
    p.texts.push(Text {
        x: CONTENT_X,
        y: y + 4.0,
        text: heading.into(),
        class: if m.policy_drifted { "bad" } else { "section" },
    });
    y += 4.0;
    for Line { text, tone } in &m.notes {
        y += LINE;
        p.texts.push(Text {
            x: CONTENT_X,
            y,
            text: fit(text, ((MAX_WIDTH - CONTENT_X - MARGIN) / CHAR) as usize).0,
            class: if *tone == Tone::Bad { "bad" } else { "note" },
        });
    }
    if m.policy.is_empty() {
        return y + 8.0;
    }
    let top = y + 16.0;
    let (mut x, mut y, mut row_h) = (CONTENT_X, top, 0.0f64);
    for (from, edges) in groups(&m.policy) {
        let src = pill(&from);
        let (fw, ph) = measure(&src, 0);
        let labels: Vec<String> = edges.iter().map(|e| fit(&e.label, 40).0).collect();
        let arrow = labels
            .iter()
            .map(|l| width(chars(l)) + 36.0)
            .fold(90.0, f64::max);
        let dests: Vec<(f64, f64)> = edges.iter().map(|e| measure(&pill(&e.to), 0)).collect();
        let tw = dests.iter().map(|d| d.0).fold(0.0, f64::max);
        let gw = fw + arrow + tw;
        let gh = edges.len() as f64 * (ph + ROW) - ROW;
        if x > CONTENT_X && x + gw > MAX_WIDTH - MARGIN {
            x = CONTENT_X;
            y += row_h + GROUP_GAP;
            row_h = 0.0;
        }
        let from_r = Rect {
            x,
            y: y + (gh - ph) / 2.0,
            w: fw,
            h: ph,
        };
        p.boxes.push(place(&src, from_r));
        for (i, (e, label)) in edges.iter().zip(labels).enumerate() {
            let to_r = Rect {
                x: x + fw + arrow,
                y: y + i as f64 * (ph + ROW),
                w: dests[i].0,
                h: ph,
            };
            p.boxes.push(place(&pill(&e.to), to_r));
            let elbow = from_r.right() + 12.0;
            p.edges.push(PlacedEdge {
                from: e.from.clone(),
                to: e.to.clone(),
                allow: e.allow,
                wire: vec![
                    (from_r.right(), from_r.cy()),
                    (elbow, from_r.cy()),
                    (elbow, to_r.cy()),
                    (to_r.x - 2.0, to_r.cy()),
                ],
                label: Text {
                    x: elbow + 8.0,
                    y: to_r.cy() - 4.0,
                    text: label,
                    class: if e.allow { "allow" } else { "deny" },
                },
            });
        }
        x += gw + GROUP_GAP;
        row_h = row_h.max(gh);
    }
    y + row_h + 8.0
}
