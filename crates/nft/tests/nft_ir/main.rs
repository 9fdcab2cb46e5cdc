//! The nftables IR against the real kernel and nft 1.0.6, one case per expression and
//! statement: encoded by nsfw, loaded, read back and decoded it equals the original; `nft
//! list` prints exactly nsfw's rendering; and nsfw's rendering loaded with `nft -f` decodes to
//! the original too. Every test runs in its own sandbox; the library talks to the sandbox's
//! network namespace from a thread that entered it.
//!
//! Cases by concern: `matches` (header, meta, conntrack and route matches; statements and
//! verdicts), `sets` (named and anonymous sets, maps, verdict maps), `translation` (dnat from
//! maps, addresses and ports, masquerade, redirect; the ip, ip6 and bridge families),
//! `changes` (foreign rules, restored rulesets, element-only changes, every op), `release`
//! (a socket closed without waiting for the kernel's release).

mod changes;
mod common;
mod matches;
mod release;
mod sets;
mod translation;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::Sandbox;
use nft::batch::{Op as BatchOp, encode};
use nft::diff::{canonical_set, normal_rule};
use nft::dump::Dumped;
use nft::socket::NftSocket;
use nft::*;

/// Runs `f` on a thread inside the sandbox's network namespace.
pub fn in_sandbox<T: Send + 'static>(sb: &Sandbox, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/proc/{}/ns/net", sb.pid());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("sandbox thread")
}

pub fn apply(sb: &Sandbox, ops: Vec<BatchOp>) {
    in_sandbox(sb, move || {
        let enc = encode(&ops).expect("encode");
        NftSocket::open().expect("socket").send(&enc).expect("send");
    })
}

pub fn read(sb: &Sandbox, family: Family, name: &str) -> Dumped {
    let name = name.to_string();
    in_sandbox(sb, move || {
        NftSocket::open()
            .expect("socket")
            .table(family, &name)
            .expect("dump")
            .expect("the table is there")
    })
}

/// The table read back, with its sets' elements decoded.
pub fn decoded(d: &Dumped) -> Table {
    d.decoded().expect("the elements decode")
}

/// `nft list` text without element expiry times (they change as time passes): `80 expires
/// 59m59s992ms,` becomes `80,`.
pub fn normalise(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| {
            let mut out: Vec<String> = Vec::new();
            let mut words = l.split(' ');
            while let Some(w) = words.next() {
                if w == "expires" {
                    let t = words.next().unwrap_or("");
                    if t.ends_with(',')
                        && let Some(last) = out.last_mut()
                    {
                        last.push(',');
                    }
                } else {
                    out.push(w.to_string());
                }
            }
            out.join(" ")
        })
        .collect()
}

/// The decoded table equals the original: same sets (elements as sets), chains and rules.
pub fn assert_same(case: &str, want: &Table, got: &Table) {
    assert_eq!(want.family, got.family, "{case}");
    assert_eq!(want.dormant, got.dormant, "{case}: flags");
    assert_eq!(want.comment, got.comment, "{case}: comment");
    let names = |t: &Table| t.sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(want), names(got), "{case}: sets");
    for (w, g) in want.sets.iter().zip(&got.sets) {
        assert_eq!(canonical_set(w), canonical_set(g), "{case}: set {}", w.name);
    }
    let cnames = |t: &Table| t.chains.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(cnames(want), cnames(got), "{case}: chains");
    for (w, g) in want.chains.iter().zip(&got.chains) {
        assert_eq!(w.base, g.base, "{case}: chain {}", w.name);
        assert_eq!(w.comment, g.comment, "{case}: chain {}", w.name);
        assert_eq!(
            w.rules.len(),
            g.rules.len(),
            "{case}: chain {} rules",
            w.name
        );
        for (wr, gr) in w.rules.iter().zip(&g.rules) {
            assert_eq!(
                normal_rule(wr),
                normal_rule(gr),
                "{case}: `{wr}` read back as `{gr}`"
            );
        }
    }
}

/// The three checks of one table of cases.
pub fn check(case: &str, t: &Table) {
    let Some(sb) = Sandbox::or_skip() else { return };
    let label = t.label();
    let rendered = t.to_string();
    // nsfw → kernel → nsfw
    apply(&sb, vec![BatchOp::ReplaceTable(t.clone())]);
    assert_same(case, t, &decoded(&read(&sb, t.family, &t.name)));
    // nft prints what nsfw renders
    let listed = sb.ok(&format!("nft list table {label}"));
    let (l, r) = (normalise(&listed), normalise(&rendered));
    for (i, (a, b)) in l.iter().zip(&r).enumerate() {
        assert_eq!(
            a, b,
            "{case}: line {i} of nft list differs from nsfw's rendering\n{listed}"
        );
    }
    assert_eq!(
        l.len(),
        r.len(),
        "{case}: nft list:\n{listed}\nnsfw:\n{rendered}"
    );
    // nsfw's rendering → nft -f → nsfw
    let f = sb.file("t.nft", &rendered);
    sb.ok(&format!("nft delete table {label} && nft -f {f}"));
    assert_same(
        &format!("{case} (loaded by nft -f)"),
        t,
        &decoded(&read(&sb, t.family, &t.name)),
    );
}

// Short constructors for the cases.
pub fn ip(s: &str) -> Value {
    Value::Ipv4(s.parse::<Ipv4Addr>().expect("ipv4"))
}
pub fn ip6(s: &str) -> Value {
    Value::Ipv6(s.parse::<Ipv6Addr>().expect("ipv6"))
}
pub fn pl(f: Field) -> Expr {
    Expr::Payload(f)
}
pub fn meta(k: MetaKey) -> Expr {
    Expr::Meta(k)
}
pub fn m(left: Expr, op: Op, right: Rhs) -> Stmt {
    Stmt::Match(Match { left, op, right })
}
pub const EQ: Op = Op::Eq;
pub const NEQ: Op = Op::Neq;
pub fn v(x: Value) -> Rhs {
    Rhs::Value(x)
}
pub fn accept() -> Stmt {
    Stmt::Verdict(Verdict::Accept)
}
pub fn drop_() -> Stmt {
    Stmt::Verdict(Verdict::Drop)
}
pub fn r(stmts: Vec<Stmt>) -> Rule {
    Rule::new(stmts)
}
pub fn range(a: Value, b: Value) -> Element {
    Element {
        key: vec![a],
        key_end: Some(vec![b]),
        ..Default::default()
    }
}
pub fn anon(keys: Vec<Value>) -> SetRef {
    SetRef::Anon(keys.into_iter().map(|k| Element::key(vec![k])).collect())
}
pub fn base(ty: ChainType, hook: Hook, priority: i32) -> Option<Base> {
    Some(Base {
        ty,
        hook,
        priority,
        policy: Policy::Accept,
    })
}
pub fn named(n: &str) -> SetRef {
    SetRef::Named(n.into())
}
pub fn set(name: &str, key: Vec<Datatype>, els: Vec<Element>) -> Set {
    Set {
        name: name.into(),
        key,
        elements: els,
        ..Default::default()
    }
}
