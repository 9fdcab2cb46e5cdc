//! Elements of an interval set made disjoint. The kernel refuses an element that overlaps
//! one already in an interval set (EEXIST: the rbtree of one-component sets and the pipapo
//! of concatenations alike), so a file whose entries overlap — `[host] routes` aggregating a
//! router's subnet, an allow to 203.0.0.0/8 beside one to 203.0.113.0/24 — would have its
//! whole batch rejected. For a set without data only the union of its elements matters, so
//! overlapping elements are cut into disjoint boxes covering the same keys, as `nft`'s
//! auto-merge does for one component.
//!
//! Each element is a box: per key component a closed range (a single value is a range of
//! one). Ranges of numbers (addresses, ports, protocols, marks) can be cut anywhere; any
//! other component (an interface name) is compared as a point, so two boxes overlap there
//! only when equal, and cutting never has to split it.

use std::cmp::Ordering;

use super::ir::Element;
use super::types::Value;

/// One coordinate: a number, or a value compared as a point.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Coord {
    Num(u128),
    Point(Value),
}

fn coord(v: &Value) -> Coord {
    match v {
        Value::Ipv4(a) => Coord::Num(u128::from(u32::from(*a))),
        Value::Ipv6(a) => Coord::Num(u128::from(*a)),
        Value::Port(p)
        | Value::EtherType(p)
        | Value::ArpHrd(p)
        | Value::U16(p)
        | Value::Bits16(p) => Coord::Num(u128::from(*p)),
        Value::Proto(p)
        | Value::NfProto(p)
        | Value::IcmpType(p)
        | Value::Icmpv6Type(p)
        | Value::PktType(p)
        | Value::CtDir(p) => Coord::Num(u128::from(*p)),
        Value::Mark(m) | Value::Ifindex(m) | Value::Bits24(m) => Coord::Num(u128::from(*m)),
        other => Coord::Point(other.clone()),
    }
}

/// The value of `template`'s type at number `n` (which came from a value of that type, or
/// lies between two of them).
fn value(template: &Value, n: u128) -> Value {
    // Every number here lies between two values of the template's type, so it fits.
    let t = |x: u128| u32::try_from(x).unwrap_or(u32::MAX);
    let s = |x: u128| u16::try_from(x).unwrap_or(u16::MAX);
    let b = |x: u128| u8::try_from(x).unwrap_or(u8::MAX);
    match template {
        Value::Ipv4(_) => Value::Ipv4(t(n).into()),
        Value::Ipv6(_) => Value::Ipv6(n.into()),
        Value::Port(_) => Value::Port(s(n)),
        Value::EtherType(_) => Value::EtherType(s(n)),
        Value::ArpHrd(_) => Value::ArpHrd(s(n)),
        Value::U16(_) => Value::U16(s(n)),
        Value::Bits16(_) => Value::Bits16(s(n)),
        Value::Bits24(_) => Value::Bits24(t(n) & 0x00ff_ffff),
        Value::Proto(_) => Value::Proto(b(n)),
        Value::NfProto(_) => Value::NfProto(b(n)),
        Value::IcmpType(_) => Value::IcmpType(b(n)),
        Value::Icmpv6Type(_) => Value::Icmpv6Type(b(n)),
        Value::PktType(_) => Value::PktType(b(n)),
        Value::CtDir(_) => Value::CtDir(b(n)),
        Value::Mark(_) => Value::Mark(t(n)),
        Value::Ifindex(_) => Value::Ifindex(t(n)),
        other => other.clone(),
    }
}

#[derive(Clone, Debug)]
struct Cube {
    lo: Vec<Coord>,
    hi: Vec<Coord>,
}

impl Cube {
    fn of(e: &Element) -> Cube {
        let lo: Vec<Coord> = e.key.iter().map(coord).collect();
        let hi = match &e.key_end {
            Some(end) => end.iter().map(coord).collect(),
            None => lo.clone(),
        };
        Cube { lo, hi }
    }

    /// The logarithm of how many keys the box holds (a point component counts one).
    fn log_volume(&self) -> f64 {
        self.lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| match (l, h) {
                (Coord::Num(l), Coord::Num(h)) => ((h - l) as f64 + 1.0).ln(),
                _ => 0.0,
            })
            .sum()
    }

    fn overlaps(&self, o: &Cube) -> bool {
        (0..self.lo.len()).all(|d| self.lo[d] <= o.hi[d] && o.lo[d] <= self.hi[d])
    }

    /// `self` without `o`: at most two pieces per component, disjoint from `o` and from
    /// each other.
    fn minus(&self, o: &Cube) -> Vec<Cube> {
        if !self.overlaps(o) {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        let mut rest = self.clone();
        for d in 0..rest.lo.len() {
            if let (Coord::Num(lo), Coord::Num(olo)) = (&rest.lo[d], &o.lo[d])
                && lo < olo
            {
                let mut below = rest.clone();
                below.hi[d] = Coord::Num(olo - 1);
                out.push(below);
                rest.lo[d] = Coord::Num(*olo);
            }
            if let (Coord::Num(hi), Coord::Num(ohi)) = (&rest.hi[d], &o.hi[d])
                && hi > ohi
            {
                let mut above = rest.clone();
                above.lo[d] = Coord::Num(ohi + 1);
                out.push(above);
                rest.hi[d] = Coord::Num(*ohi);
            }
        }
        // What remains lies inside `o`.
        out
    }

    fn element(&self, template: &Element) -> Element {
        let at = |cs: &[Coord]| -> Vec<Value> {
            cs.iter()
                .zip(&template.key)
                .map(|(c, t)| match c {
                    Coord::Num(n) => value(t, *n),
                    Coord::Point(v) => v.clone(),
                })
                .collect()
        };
        let key = at(&self.lo);
        let end = at(&self.hi);
        Element {
            key_end: (end != key || template.key_end.is_some()).then_some(end),
            key,
            ..template.clone()
        }
    }
}

/// `elems` of an interval set without data, cut so that no two overlap, then with runs of
/// neighbouring boxes of a concatenation joined (see [`merge_runs`]); unchanged (and in
/// their order) when none overlap or touch, which costs a few sorts.
pub fn disjoint(elems: Vec<Element>) -> Vec<Element> {
    merge_runs(cut_apart(elems))
}

/// The keys of `elems` (of a set without data) as single keys, returned without a key end,
/// and disjoint boxes holding more than one key, together holding the same keys. The kernel
/// keeps a concatenation with intervals in a pipapo set, whose cost of inserting an element
/// grows with the elements the batch already inserted (100,000 single keys: ~5 s of kernel
/// time); single keys belong in a hash set, which inserts each at a constant cost, and only the
/// boxes need the interval set. Single keys neighbouring each other still join into a box
/// ([`merge_runs`]); the rest are never held against the boxes (a single key inside a box is
/// harmless in another set), which keeps the cutting to the few boxes.
pub fn split_points(elems: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    let (mut points, mut boxes) = partition(elems);
    points.sort();
    points.dedup();
    let (points, joined) = partition(merge_runs(points));
    boxes.extend(joined);
    let points = points
        .into_iter()
        .map(|e| Element { key_end: None, ..e })
        .collect();
    (points, disjoint(boxes))
}

/// (single keys, boxes).
fn partition(elems: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    elems
        .into_iter()
        .partition(|e| e.key_end.as_ref().is_none_or(|end| *end == e.key))
}

/// Boxes of a concatenation that are equal in every component but one, and there follow
/// each other without a gap, joined into one box holding the same keys. The kernel keeps a
/// concatenation with intervals in a pipapo set, whose insertion costs grow with the rules it
/// already holds, so 100,000 `[[allow]]` entries took 14 s of kernel time in one batch; a run
/// of neighbouring ports or addresses is one element instead (`nft` offers no auto-merge for
/// concatenations). A joined box never expands into more pipapo rules than its parts did.
/// One sorted pass per component, from the last: n log n.
fn merge_runs(elems: Vec<Element>) -> Vec<Element> {
    let dims = elems.first().map_or(0, |e| e.key.len());
    if dims < 2 {
        return elems;
    }
    let before = elems.len();
    // Each cube names its element by index: cloning 10,000 elements to carry them through
    // the passes was most of this function's time.
    let mut items: Vec<(Cube, usize)> = elems.iter().map(Cube::of).zip(0..).collect();
    for d in (0..dims).rev() {
        items = merge_along(items, &elems, d);
    }
    if items.len() == before {
        return elems;
    }
    items
        .into_iter()
        .map(|(c, i)| c.element(&elems[i]))
        .collect()
}

/// One pass of [`merge_runs`] along component `d`: sorted by every other component (and
/// what else an element carries), then by its start along `d`, so a run is consecutive.
fn merge_along(mut items: Vec<(Cube, usize)>, elems: &[Element], d: usize) -> Vec<(Cube, usize)> {
    let others = |a: &Cube, b: &Cube| {
        (0..a.lo.len())
            .filter(|&k| k != d)
            .map(|k| a.lo[k].cmp(&b.lo[k]).then_with(|| a.hi[k].cmp(&b.hi[k])))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    let extra = |a: usize, b: usize| {
        let (a, b) = (&elems[a], &elems[b]);
        a.comment
            .cmp(&b.comment)
            .then_with(|| a.timeout.cmp(&b.timeout))
    };
    items.sort_by(|(a, ea), (b, eb)| {
        others(a, b)
            .then_with(|| extra(*ea, *eb))
            .then_with(|| a.lo[d].cmp(&b.lo[d]))
    });
    let mut out: Vec<(Cube, usize)> = Vec::with_capacity(items.len());
    for (c, e) in items {
        if let Some((last, le)) = out.last_mut()
            && others(last, &c).is_eq()
            && extra(*le, e).is_eq()
            && let (Coord::Num(h), Coord::Num(l)) = (&last.hi[d], &c.lo[d])
            && h.checked_add(1) == Some(*l)
        {
            last.hi[d] = c.hi[d].clone();
            continue;
        }
        out.push((c, e));
    }
    out
}

/// `elems` cut so that no two overlap; unchanged (and in their order) when none do.
fn cut_apart(elems: Vec<Element>) -> Vec<Element> {
    let cubes: Vec<Cube> = elems.iter().map(Cube::of).collect();
    let groups = overlapping_groups(&cubes);
    if groups.iter().all(|g| g.len() == 1) {
        return elems;
    }
    let mut out = Vec::with_capacity(elems.len());
    for g in groups {
        if let [only] = g[..] {
            out.push(elems[only].clone());
            continue;
        }
        // Each element less the elements before it (their union is what earlier pieces
        // cover): subtracting the few originals, not the many pieces, keeps the work near
        // pieces × originals. The widest first, so that what they contain vanishes at once.
        let mut g = g;
        g.sort_by(|a, b| cubes[*b].log_volume().total_cmp(&cubes[*a].log_volume()));
        for (n, &i) in g.iter().enumerate() {
            let mut pieces = vec![cubes[i].clone()];
            for &k in &g[..n] {
                if pieces.is_empty() {
                    break;
                }
                if !cubes[i].overlaps(&cubes[k]) {
                    continue;
                }
                pieces = pieces.iter().flat_map(|p| p.minus(&cubes[k])).collect();
            }
            out.extend(pieces.iter().map(|p| p.element(&elems[i])));
        }
    }
    out
}

/// The component whose starts differ the most: sweeping along it keeps few elements open at
/// once (10,000 policy entries share a handful of sources but differ in their destinations).
fn sweep_axis(cubes: &[Cube]) -> usize {
    let dims = cubes.first().map_or(0, |c| c.lo.len());
    (0..dims)
        .max_by_key(|&d| {
            let mut starts: Vec<&Coord> = cubes.iter().filter_map(|c| c.lo.get(d)).collect();
            starts.sort_unstable();
            starts.dedup();
            starts.len()
        })
        .unwrap_or(0)
}

/// The elements in groups that overlap (transitively), each group in the elements' order,
/// groups in the order of their first element. A sweep along one component: sorted by their
/// start there, each element is held against those still open (whose end is not before its
/// start).
fn overlapping_groups(cubes: &[Cube]) -> Vec<Vec<usize>> {
    let n = cubes.len();
    let ax = sweep_axis(cubes);
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| cubes[*a].lo.get(ax).cmp(&cubes[*b].lo.get(ax)));
    let mut active: Vec<usize> = Vec::new();
    for &i in &order {
        let Some(lo) = cubes[i].lo.get(ax) else {
            continue;
        };
        active.retain(|&j| cubes[j].hi.get(ax).map(|h| h.cmp(lo)) != Some(Ordering::Less));
        for &j in &active {
            if cubes[i].overlaps(&cubes[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a] = b;
            }
        }
        active.push(i);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        match index.get(&r) {
            Some(&g) => groups[g].push(i),
            None => {
                index.insert(r, groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn net(a: [u8; 4], b: [u8; 4]) -> (Value, Value) {
        (
            Value::Ipv4(Ipv4Addr::from(a)),
            Value::Ipv4(Ipv4Addr::from(b)),
        )
    }

    fn el(ifname: &str, (lo, hi): (Value, Value)) -> Element {
        Element {
            key: vec![Value::Ifname(ifname.into()), lo],
            key_end: Some(vec![Value::Ifname(ifname.into()), hi]),
            ..Default::default()
        }
    }

    /// Every key of a small box, for comparing unions.
    fn covers(es: &[Element], key: &[Value]) -> bool {
        es.iter()
            .any(|e| Cube::of(e).overlaps(&Cube::of(&Element::key(key.to_vec()))))
    }

    #[test]
    fn nested_networks_keep_the_larger_and_the_union() {
        let es = vec![
            el("br0", net([10, 10, 0, 0], [10, 10, 0, 255])),
            el("br0", net([10, 20, 0, 0], [10, 20, 255, 255])),
            el("br0", net([10, 20, 0, 0], [10, 20, 0, 255])),
            el("br1", net([10, 20, 0, 0], [10, 20, 0, 255])),
        ];
        let out = disjoint(es.clone());
        assert_eq!(out.len(), 3, "{out:?}");
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                assert!(!Cube::of(a).overlaps(&Cube::of(b)), "{a:?} {b:?}");
            }
        }
        for probe in [[10, 20, 0, 7], [10, 20, 9, 9], [10, 10, 0, 1]] {
            let k = [
                Value::Ifname("br0".into()),
                Value::Ipv4(Ipv4Addr::from(probe)),
            ];
            assert_eq!(covers(&es, &k), covers(&out, &k), "{probe:?}");
        }
    }

    #[test]
    fn crossing_boxes_are_cut_without_losing_or_adding_keys() {
        // 10.0.0.0/8 ports 80-90 and 10.1.0.0/16 ports 85-100.
        let mk = |a: (Value, Value), p: (u16, u16)| Element {
            key: vec![a.0, Value::Port(p.0)],
            key_end: Some(vec![a.1, Value::Port(p.1)]),
            ..Default::default()
        };
        let es = vec![
            mk(net([10, 0, 0, 0], [10, 255, 255, 255]), (80, 90)),
            mk(net([10, 1, 0, 0], [10, 1, 255, 255]), (85, 100)),
        ];
        let out = disjoint(es.clone());
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                assert!(!Cube::of(a).overlaps(&Cube::of(b)), "{a:?} {b:?}");
            }
        }
        for addr in [[10, 0, 0, 1], [10, 1, 2, 3], [10, 2, 0, 0], [11, 0, 0, 0]] {
            for port in [79, 80, 84, 85, 90, 91, 100, 101] {
                let k = [Value::Ipv4(Ipv4Addr::from(addr)), Value::Port(port)];
                assert_eq!(covers(&es, &k), covers(&out, &k), "{addr:?}:{port}");
            }
        }
    }

    /// Nested networks, each with ports crossing its neighbours' (a hostile tester's file
    /// took 100 s before pieces were cut against the originals): the pieces stay disjoint,
    /// cover the same keys, and stay few.
    #[test]
    fn nested_and_crossing_boxes_stay_few_and_exact() {
        let mut es = Vec::new();
        for i in 0..24u32 {
            for j in 0..5u32 {
                let lo = u16::try_from(1000 + i * 10 + j * 300).expect("port");
                let src = u32::from(Ipv4Addr::new(10, 0, 0, 0));
                let span = (1u32 << (24 - i)) - 1;
                es.push(Element {
                    key: vec![Value::Ipv4(src.into()), Value::Port(lo)],
                    key_end: Some(vec![
                        Value::Ipv4((src + span).into()),
                        Value::Port(lo + 400),
                    ]),
                    ..Default::default()
                });
            }
        }
        let out = disjoint(es.clone());
        assert!(out.len() < 5000, "{} pieces", out.len());
        let cubes: Vec<Cube> = out.iter().map(Cube::of).collect();
        for (i, a) in cubes.iter().enumerate() {
            for b in &cubes[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} {b:?}");
            }
        }
        for addr in [
            [10, 0, 0, 0],
            [10, 0, 1, 0],
            [10, 3, 0, 0],
            [10, 200, 0, 0],
            [11, 0, 0, 0],
        ] {
            for port in (900..3000).step_by(37) {
                let k = [Value::Ipv4(Ipv4Addr::from(addr)), Value::Port(port)];
                assert_eq!(covers(&es, &k), covers(&out, &k), "{addr:?}:{port}");
            }
        }
    }

    #[test]
    fn disjoint_elements_are_left_as_they_are() {
        let es: Vec<Element> = (0..100u8)
            .map(|i| el("br0", net([10, i, 0, 0], [10, i, 0, 255])))
            .collect();
        assert_eq!(disjoint(es.clone()), es);
    }

    fn tuple(src: u8, dst: u8, port: u16) -> Element {
        Element::key(vec![
            Value::Ipv4(Ipv4Addr::new(10, 0, 0, src)),
            Value::Ipv4(Ipv4Addr::new(203, 0, 113, dst)),
            Value::Port(port),
        ])
    }

    /// Neighbouring ports, then neighbouring addresses, join into one box; a gap, another
    /// comment or a second source that does not match the rest stays apart; the keys held
    /// are the same.
    #[test]
    fn runs_of_neighbours_join_into_boxes_holding_the_same_keys() {
        let mut es = Vec::new();
        for dst in 1..=20 {
            for port in 80..=90 {
                es.push(tuple(1, dst, port));
            }
        }
        es.push(tuple(1, 21, 92));
        es.push(tuple(2, 1, 80));
        es.push(Element {
            comment: Some("other".into()),
            ..tuple(2, 2, 80)
        });
        es.reverse();
        let out = disjoint(es.clone());
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.contains(&Element {
            key: tuple(1, 1, 80).key,
            key_end: Some(tuple(1, 20, 90).key),
            ..Default::default()
        }));
        for src in 0..=3 {
            for dst in 0..=22 {
                for port in 78..=93 {
                    let k = tuple(src, dst, port).key;
                    assert_eq!(covers(&es, &k), covers(&out, &k), "{src} {dst} {port}");
                }
            }
        }
    }

    /// Single keys go to the hash set's side without a key end; a joined run and a range stay
    /// boxes.
    #[test]
    fn single_keys_split_from_boxes() {
        let mut es = vec![tuple(1, 1, 80), tuple(1, 1, 81), tuple(3, 9, 22)];
        es.push(Element {
            key_end: Some(tuple(2, 9, 100).key),
            ..tuple(2, 1, 100)
        });
        let (points, boxes) = split_points(es);
        assert_eq!(points, vec![Element::key(tuple(3, 9, 22).key)]);
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        assert!(boxes.iter().all(|b| b.key_end.is_some()));
    }

    /// A full grid of 10,000 tuples, in the order a file would list them, is one box.
    #[test]
    fn a_full_grid_of_tuples_is_one_box() {
        let es: Vec<Element> = (0..10_000u32)
            .map(|i| {
                let (src, rest) = (i % 10, i / 10);
                tuple(
                    u8::try_from(src).expect("src"),
                    u8::try_from(rest % 250).expect("dst"),
                    u16::try_from(1000 + rest / 250).expect("port"),
                )
            })
            .collect();
        let out = disjoint(es);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
