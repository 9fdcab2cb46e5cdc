//! One band per bridge: its box at the left, a spine down its right side, and its members in
//! rows of equal-width boxes, each row hanging from a bus line in the gap above it. The host's
//! trunk reaches each bridge the host has an address on from the left margin; a member on
//! several segments (a router) reaches the others through a lane at the right: down into the
//! gap under its row, right to its lane, along it to the other band, and onto that band's
//! first bus, which is extended to the lane.

use super::super::model::Model;
use super::super::text::{LINE, PAD};
use super::{COL_GAP, CONTENT_X, MARGIN, MAX_WIDTH, Picture, Rect, TRUNK_X, Wire, measure, place};

/// Space between rows of members: the bus sits `BUS` above a row; lanes leave in the rest.
const ROW_GAP: f64 = 36.0;
const BUS: f64 = 12.0;
/// Between the bottom of one band and the top of the next.
const BAND_GAP: f64 = 30.0;
const LANE_GAP: f64 = 14.0;

/// What the lanes need of a band once placed.
struct Band {
    /// The y of its first bus (or its bridge's title line when it has no members), and the
    /// x where a lane joining it stops.
    join: (f64, f64),
}

/// A member's link to a segment other than its home.
struct Extra {
    member: usize,
    segment: usize,
    /// Its rank among the member's extra links.
    nth: usize,
}

/// Places every band from `y`; returns the bottom.
pub(super) fn segments(m: &Model, p: &mut Picture, mut y: f64, host: Rect) -> f64 {
    let extras: Vec<Extra> = m
        .members
        .iter()
        .enumerate()
        .flat_map(|(i, mm)| {
            mm.segments
                .iter()
                .skip(1)
                .enumerate()
                .map(move |(nth, &s)| Extra {
                    member: i,
                    segment: s,
                    nth,
                })
        })
        .collect();
    let lanes_w = if extras.is_empty() {
        0.0
    } else {
        24.0 + LANE_GAP * extras.len() as f64
    };
    let right = MAX_WIDTH - MARGIN - lanes_w;
    let mut bands = Vec::new();
    let first_box = p.boxes.len();
    // Where each member's box went (members are drawn in their home band).
    let mut at: Vec<Option<Rect>> = vec![None; m.members.len()];
    let mut trunk_end = None;
    for seg in &m.segments {
        let (band, bottom, title_y) = band(m, seg, p, y, right, &mut at);
        if seg.attached {
            p.wires.push(Wire {
                points: vec![(TRUNK_X, title_y), (CONTENT_X, title_y)],
                class: "trunk",
            });
            trunk_end = Some(title_y);
        }
        bands.push(band);
        y = bottom + BAND_GAP;
    }
    if let Some(end) = trunk_end {
        p.wires.push(Wire {
            points: vec![(TRUNK_X, host.bottom()), (TRUNK_X, end)],
            class: "trunk",
        });
    }
    let grid_right = p.boxes[first_box..]
        .iter()
        .map(|b| b.rect.right())
        .fold(0.0, f64::max)
        .min(right);
    for (i, e) in extras.iter().enumerate() {
        let (Some(r), Some(b)) = (at[e.member], bands.get(e.segment)) else {
            continue;
        };
        let lane = grid_right + 24.0 + LANE_GAP * i as f64;
        let x0 = (r.cx() + 8.0 * e.nth as f64).min(r.right() - 4.0);
        let y1 = r.bottom() + 6.0 + 5.0 * (i % 3) as f64;
        p.wires.push(Wire {
            points: vec![
                (x0, r.bottom()),
                (x0, y1),
                (lane, y1),
                (lane, b.join.0),
                (b.join.1, b.join.0),
            ],
            class: "lane",
        });
        // Which member's interface this is, where it joins the other segment.
        if let Some(n) = m.members.get(e.member) {
            let seg = &m.segments[e.segment].node.name;
            p.texts.push(super::Text {
                x: b.join.1 + 6.0,
                y: b.join.0 - 4.0,
                text: format!("{} on {seg}", n.node.name),
                class: "lanelabel",
            });
        }
    }
    y
}

/// Places `members` in rows of equal-width boxes from `top`, each row under a bus; returns
/// each bus (its y, and the x of its last stub) and the bottom of the last row.
fn rows(
    m: &Model,
    members: &[usize],
    p: &mut Picture,
    mut top: f64,
    grid_x: f64,
    right: f64,
    at: &mut [Option<Rect>],
) -> (Vec<(f64, f64)>, f64) {
    let sizes: Vec<(f64, f64)> = members
        .iter()
        .map(|&i| measure(&m.members[i].node, 10))
        .collect();
    let w = sizes.iter().map(|s| s.0).fold(0.0, f64::max);
    let cols =
        (((right - grid_x + COL_GAP) / (w + COL_GAP)).floor() as usize).clamp(1, sizes.len());
    let mut buses = Vec::new();
    for (chunk, hs) in members.chunks(cols).zip(sizes.chunks(cols)) {
        let h = hs.iter().map(|s| s.1).fold(0.0, f64::max);
        let bus = top - BUS;
        let mut last_cx = grid_x;
        for (c, &i) in chunk.iter().enumerate() {
            let r = Rect {
                x: grid_x + c as f64 * (w + COL_GAP),
                y: top,
                w,
                h,
            };
            p.wires.push(Wire {
                points: vec![(r.cx(), bus), (r.cx(), r.y)],
                class: "wire",
            });
            last_cx = r.cx();
            at[i] = Some(r);
            p.boxes.push(place(&m.members[i].node, r));
        }
        buses.push((bus, last_cx));
        top += h + ROW_GAP;
    }
    (buses, top - ROW_GAP)
}

/// Places one band at `y`: its bridge, spine, rows and buses. Returns what lanes need, its
/// bottom, and the y of its bridge's title line (where the trunk joins).
fn band(
    m: &Model,
    seg: &super::super::model::Segment,
    p: &mut Picture,
    y: f64,
    right: f64,
    at: &mut [Option<Rect>],
) -> (Band, f64, f64) {
    let (bw, bh) = measure(&seg.node, 14);
    let bridge = Rect {
        x: CONTENT_X,
        y: y + BUS,
        w: bw,
        h: bh,
    };
    let title_y = bridge.y + PAD + LINE / 2.0;
    p.boxes.push(place(&seg.node, bridge));
    if seg.members.is_empty() {
        return (
            Band {
                join: (title_y, bridge.right()),
            },
            bridge.bottom(),
            title_y,
        );
    }
    let spine = bridge.right() + 16.0;
    let grid_x = spine + 16.0;
    let (buses, bottom) = rows(m, &seg.members, p, y + BUS + BUS, grid_x, right, at);
    let first_bus = buses[0].0;
    let last_bus = buses[buses.len() - 1].0;
    p.wires.push(Wire {
        points: vec![(bridge.right(), title_y), (spine, title_y)],
        class: "wire",
    });
    p.wires.push(Wire {
        points: vec![
            (spine, first_bus.min(title_y)),
            (spine, last_bus.max(title_y)),
        ],
        class: "wire",
    });
    for (bus, end) in &buses {
        p.wires.push(Wire {
            points: vec![(spine, *bus), (*end, *bus)],
            class: "wire",
        });
    }
    (
        Band {
            join: (first_bus, buses[0].1),
        },
        bottom.max(bridge.bottom()),
        title_y,
    )
}
