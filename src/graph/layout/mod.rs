//! Where everything goes: nsfw's own layered layout, in rows of bounded width. From the top:
//! the host and the world; the published ports; one band per bridge (its box at the left, a
//! spine down from it, its namespaces in rows that wrap, each row hanging from a bus); the
//! policy view. The host's trunk runs down the left margin to every bridge it has an address
//! on; a router's links to its other segments run in lanes at the right. Nothing is placed
//! where something else already is, so no two boxes overlap and every label fits its box by
//! construction (a monospace advance times the longest line); the tests check it in a browser.
//!
//! A general graph layout (Sugiyama, as `layout-rs` or graphviz do) would draw the same graph
//! as a tree of crossing edges a hundred namespaces wide: a network is segments with members,
//! and drawing it as such keeps it readable at any size.

mod bands;
mod policy;

use super::model::{Kind, Line, Model, Node, Tone};
use super::text::{CHAR, LINE, MAX_CHARS, PAD, chars, fit, width};

/// The widest the picture gets, in pixels: segments wrap into rows under it.
pub(crate) const MAX_WIDTH: f64 = 1400.0;
/// Outer margin.
pub(crate) const MARGIN: f64 = 16.0;
/// Where the host's trunk runs, and where bands' content starts (right of it).
const TRUNK_X: f64 = MARGIN + 10.0;
const CONTENT_X: f64 = MARGIN + 30.0;
/// Space between boxes side by side.
const COL_GAP: f64 = 16.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub(crate) fn right(&self) -> f64 {
        self.x + self.w
    }
    pub(crate) fn bottom(&self) -> f64 {
        self.y + self.h
    }
    pub(crate) fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    pub(crate) fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
    #[cfg(test)]
    pub(crate) fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
}

/// A box placed: what it is, its label and lines as they fit, and where.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placed {
    pub kind: Kind,
    pub name: String,
    pub title: String,
    /// Each line as shown, its tone, and the whole line when it had to be cut.
    pub lines: Vec<(String, Tone, Option<String>)>,
    pub drifted: bool,
    pub rect: Rect,
}

/// A wire: a polyline of a style (`class`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Wire {
    pub points: Vec<(f64, f64)>,
    pub class: &'static str,
}

/// Free text: a section heading, a link's label.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Text {
    pub x: f64,
    pub y: f64,
    pub text: String,
    pub class: &'static str,
}

/// A policy edge placed: its wire, its label, what it joins.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PlacedEdge {
    pub from: String,
    pub to: String,
    pub allow: bool,
    pub wire: Vec<(f64, f64)>,
    pub label: Text,
}

/// Everything placed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Picture {
    pub width: f64,
    pub height: f64,
    pub boxes: Vec<Placed>,
    pub wires: Vec<Wire>,
    pub texts: Vec<Text>,
    pub edges: Vec<PlacedEdge>,
}

impl Picture {
    fn right(&self) -> f64 {
        let b = self.boxes.iter().map(|b| b.rect.right());
        let t = self
            .texts
            .iter()
            .map(|t| t.x + width(chars(&t.text)))
            .chain(
                self.edges
                    .iter()
                    .map(|e| e.label.x + width(chars(&e.label.text))),
            );
        let w = self.wires.iter().flat_map(|w| w.points.iter().map(|p| p.0));
        b.chain(t).chain(w).fold(0.0, f64::max)
    }
}

/// The size a node's box needs (its longest line, capped), and its lines as they fit.
pub(crate) fn measure(n: &Node, min_chars: usize) -> (f64, f64) {
    let longest = std::iter::once(chars(&n.name))
        .chain(n.lines.iter().map(|l| chars(&l.text)))
        .max()
        .unwrap_or(0)
        .clamp(min_chars, MAX_CHARS);
    let w = width(longest) + 2.0 * PAD;
    let h = PAD * 1.5 + LINE * (1 + n.lines.len()) as f64;
    (w, h)
}

/// Places `n` at `rect`, cutting lines longer than the box holds.
pub(crate) fn place(n: &Node, rect: Rect) -> Placed {
    // (A little over the division: 43 advances must fit the box made for 43.)
    let max = (((rect.w - 2.0 * PAD) / CHAR + 0.01).floor() as usize).max(4);
    let cut = |l: &Line| {
        let (s, was) = fit(&l.text, max);
        (s, l.tone, was.then(|| l.text.clone()))
    };
    Placed {
        kind: n.kind,
        name: n.name.clone(),
        title: fit(&n.name, max).0,
        lines: n.lines.iter().map(cut).collect(),
        drifted: n.drifted,
        rect,
    }
}

/// Places boxes left to right from `x0`, wrapping under `max_right`; returns their rects and
/// the bottom of the last row.
pub(crate) fn flow(
    sizes: &[(f64, f64)],
    x0: f64,
    y0: f64,
    max_right: f64,
    gap: f64,
) -> (Vec<Rect>, f64) {
    let (mut x, mut y, mut row_h) = (x0, y0, 0.0f64);
    let mut out = Vec::with_capacity(sizes.len());
    for &(w, h) in sizes {
        if x > x0 && x + w > max_right {
            x = x0;
            y += row_h + gap;
            row_h = 0.0;
        }
        out.push(Rect { x, y, w, h });
        x += w + COL_GAP;
        row_h = row_h.max(h);
    }
    (out, y + row_h)
}

/// The whole picture of a model.
pub(crate) fn layout(m: &Model) -> Picture {
    let mut p = Picture::default();
    let mut y = MARGIN + 18.0;
    p.texts.push(Text {
        x: MARGIN,
        y,
        text: fit(&m.title, ((MAX_WIDTH - 2.0 * MARGIN) / CHAR) as usize).0,
        class: "heading",
    });
    y += LINE;
    p.texts.push(Text {
        x: MARGIN,
        y,
        text: "bridge = segment (its namespaces hang from it), amber = router, red = drifted from the file".into(),
        class: "legend",
    });
    for b in &m.banner {
        y += LINE;
        p.texts.push(Text {
            x: MARGIN,
            y,
            text: fit(&b.text, ((MAX_WIDTH - 2.0 * MARGIN) / CHAR) as usize).0,
            class: if b.tone == Tone::Bad { "bad" } else { "legend" },
        });
    }
    y += LINE;
    let host = top_row(m, &mut p, y);
    y = p.boxes.iter().map(|b| b.rect.bottom()).fold(y, f64::max) + 24.0;
    if !m.published.is_empty() {
        y = published(m, &mut p, y) + 24.0;
    }
    y = bands::segments(m, &mut p, y, host);
    if !m.policy.is_empty() || !m.notes.is_empty() {
        y = policy::view(m, &mut p, y + 8.0);
    }
    p.width = (p.right() + MARGIN).ceil();
    p.height = (y + MARGIN).ceil();
    p
}

/// The host at the left, the world at its right, the host's NAT between them. Returns the
/// host's box.
fn top_row(m: &Model, p: &mut Picture, y: f64) -> Rect {
    let (hw, hh) = measure(&m.host, 24);
    let host = Rect {
        x: MARGIN,
        y,
        w: hw,
        h: hh,
    };
    let labels: Vec<String> = m.uplink.iter().map(|l| fit(l, 44).0).collect();
    let gap = labels
        .iter()
        .map(|l| width(chars(l)) + 24.0)
        .fold(80.0, f64::max);
    let (ww, wh) = measure(&m.world, 12);
    let world = Rect {
        x: host.right() + gap,
        y,
        w: ww,
        h: wh,
    };
    let wy = y + PAD + LINE / 2.0;
    p.wires.push(Wire {
        points: vec![(host.right(), wy), (world.x, wy)],
        class: "uplink",
    });
    for (i, l) in labels.into_iter().enumerate() {
        p.texts.push(Text {
            x: host.right() + 12.0,
            y: wy + 14.0 + LINE * i as f64,
            text: l,
            class: "nat",
        });
    }
    p.boxes.push(place(&m.host, host));
    p.boxes.push(place(&m.world, world));
    host
}

/// The published ports, as boxes in rows; returns the bottom.
fn published(m: &Model, p: &mut Picture, y: f64) -> f64 {
    p.texts.push(Text {
        x: CONTENT_X,
        y: y + 4.0,
        text: "published on the host".into(),
        class: "section",
    });
    let sizes: Vec<(f64, f64)> = m.published.iter().map(|n| measure(n, 0)).collect();
    let (rects, bottom) = flow(&sizes, CONTENT_X, y + 14.0, MAX_WIDTH - MARGIN, 12.0);
    for (n, r) in m.published.iter().zip(rects) {
        p.boxes.push(place(n, r));
    }
    bottom
}

#[cfg(test)]
mod tests;
