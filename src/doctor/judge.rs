//! What another table's base chain does to a flow, read from the chain's rules in the IR: each
//! match is decided from what the flow says of the packet (yes, no, or maybe when it looks at
//! something the flow leaves open, a port or a mark), rules are walked in order (jumps and
//! gotos followed), and the result is whether the chain lets the flow through, or which rule
//! (or the policy) drops or rejects it — certainly, or only part of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::flows::{Addr, Flow, Iface};
use nft::{
    CtKey, Element, Expr, Field, Match, MetaKey, Op, Policy, Rhs, Rule, SetRef, Stmt, Table, Value,
    Verdict, ct_status,
};

/// Three-valued truth: does a match hold for the flow?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tri {
    No,
    Maybe,
    Yes,
}

impl Tri {
    fn not(self) -> Tri {
        match self {
            Tri::No => Tri::Yes,
            Tri::Yes => Tri::No,
            Tri::Maybe => Tri::Maybe,
        }
    }
    fn of(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }
    /// The best of several (a set holds when one element does).
    fn any(v: impl Iterator<Item = Tri>) -> Tri {
        let mut best = Tri::No;
        for t in v {
            if t == Tri::Yes {
                return Tri::Yes;
            }
            if t == Tri::Maybe {
                best = Tri::Maybe;
            }
        }
        best
    }
}

/// A match's truth, and whether it singled out the topology (one of its interfaces or
/// subnets) rather than something any traffic may have (a port, a mark).
#[derive(Clone, Copy, Debug)]
struct M {
    tri: Tri,
    ours: bool,
}

/// What drops or rejects a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Blocker {
    pub chain: String,
    /// The rule (in nft syntax, counters left out) and its handle; None: the policy.
    pub rule: Option<(String, u64)>,
    pub reject: bool,
    /// Its place in the chain (0-based), for iptables' rule numbers.
    pub position: usize,
}

/// What a base chain does to a flow.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    /// Dropped for certain, or unless an earlier rule that may accept it does.
    pub blocked: Option<(Blocker, bool)>,
    /// Rules that drop part of it (they single out the topology and look at more).
    pub partly: Vec<Blocker>,
}

fn in_net(a: IpAddr, n: &IpNetwork) -> bool {
    n.contains(a)
}

/// Whether range [lo, hi] (inclusive) covers, misses or cuts network `n`.
fn range_vs(lo: IpAddr, hi: IpAddr, n: &IpNetwork) -> Tri {
    let (first, last) = (n.network(), n.broadcast());
    let key = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    if first.is_ipv4() != lo.is_ipv4() {
        return Tri::No;
    }
    let (lo, hi, first, last) = (key(lo), key(hi), key(first), key(last));
    if lo <= first && last <= hi {
        Tri::Yes
    } else if hi < first || last < lo {
        Tri::No
    } else {
        Tri::Maybe
    }
}

fn addr_of(v: &Value) -> Option<IpAddr> {
    match v {
        Value::Ipv4(a) => Some(IpAddr::V4(*a)),
        Value::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// An address match against one side of the flow.
fn addr_match(a: &Addr, f: &Flow, rhs: &Rhs, sets: &Table) -> M {
    let one = |lo: IpAddr, hi: IpAddr| -> M {
        match a {
            Addr::In(n) => M {
                tri: range_vs(lo, hi, n),
                ours: true,
            },
            Addr::World => {
                // Everything: certainly; only inside the topology's subnets: no.
                let unspecified = if lo.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                let all = IpNetwork::new(unspecified, 0)
                    .map(|n| range_vs(lo, hi, &n) == Tri::Yes)
                    .unwrap_or(false);
                let inside = f.ours.iter().any(|n| in_net(lo, n) && in_net(hi, n));
                M {
                    tri: if all {
                        Tri::Yes
                    } else if inside {
                        Tri::No
                    } else {
                        Tri::Maybe
                    },
                    ours: false,
                }
            }
            Addr::Unknown => M {
                tri: Tri::Maybe,
                ours: false,
            },
        }
    };
    let prefix = |v: &Value, plen: u32| -> Option<(IpAddr, IpAddr)> {
        let n = IpNetwork::new(addr_of(v)?, plen as u8).ok()?;
        Some((n.network(), n.broadcast()))
    };
    let bounds: Vec<(IpAddr, IpAddr)> = match rhs {
        Rhs::Value(v) => addr_of(v).map(|x| (x, x)).into_iter().collect(),
        Rhs::Prefix(v, plen) => prefix(v, *plen).into_iter().collect(),
        Rhs::Range(x, y) => addr_of(x).zip(addr_of(y)).into_iter().collect(),
        Rhs::Set(s) => elements(s, sets)
            .iter()
            .filter_map(|e| {
                let lo = addr_of(e.key.first()?)?;
                let hi = e
                    .key_end
                    .as_ref()
                    .and_then(|k| k.first())
                    .and_then(addr_of)
                    .unwrap_or(lo);
                Some((lo, hi))
            })
            .collect(),
    };
    let ms: Vec<M> = bounds.into_iter().map(|(lo, hi)| one(lo, hi)).collect();
    M {
        tri: Tri::any(ms.iter().map(|m| m.tri)),
        ours: ms.iter().any(|m| m.ours && m.tri != Tri::No),
    }
}

fn elements<'a>(s: &'a SetRef, sets: &'a Table) -> &'a [Element] {
    match s {
        SetRef::Anon(e) => e,
        SetRef::Named(n) => sets.set(n).map(|s| s.elements.as_slice()).unwrap_or(&[]),
    }
}

/// An interface-name match against one side of the flow.
fn iface_match(i: &Iface, f: &Flow, rhs: &Rhs, sets: &Table) -> M {
    // Does a pattern (a name, or a prefix with `*`) match name `n`?
    let hit = |pat: &str, prefix: bool, n: &str| {
        if prefix { n.starts_with(pat) } else { n == pat }
    };
    let one = |pat: &str, prefix: bool| -> M {
        match i {
            Iface::Is(names) => {
                let n = names.iter().filter(|n| hit(pat, prefix, n)).count();
                M {
                    tri: if n == names.len() {
                        Tri::Yes
                    } else if n > 0 {
                        Tri::Maybe
                    } else {
                        Tri::No
                    },
                    ours: n > 0,
                }
            }
            // Some interface that is not the topology's: not one of its names.
            Iface::Other => M {
                tri: if !prefix && f.our_ifaces.iter().any(|o| o == pat) {
                    Tri::No
                } else {
                    Tri::Maybe
                },
                ours: false,
            },
            Iface::Unset => M {
                tri: Tri::of(hit(pat, prefix, "")),
                ours: false,
            },
        }
    };
    let ms: Vec<M> = match rhs {
        Rhs::Value(Value::Ifname(n)) => vec![one(n, false)],
        Rhs::Prefix(Value::Ifname(n), _) => vec![one(n, true)],
        Rhs::Set(s) => elements(s, sets)
            .iter()
            .filter_map(|e| match e.key.first() {
                Some(Value::Ifname(n)) => Some(one(n, false)),
                _ => None,
            })
            .collect(),
        _ => vec![M {
            tri: Tri::Maybe,
            ours: false,
        }],
    };
    M {
        tri: Tri::any(ms.iter().map(|m| m.tri)),
        ours: ms.iter().any(|m| m.ours && m.tri != Tri::No),
    }
}

/// A value match on something the flow may know exactly (a protocol, a port).
fn value_match(known: Option<Value>, rhs: &Rhs, sets: &Table) -> Tri {
    let Some(k) = known else {
        return Tri::Maybe;
    };
    match rhs {
        Rhs::Value(v) => Tri::of(*v == k),
        Rhs::Set(s) => Tri::any(elements(s, sets).iter().map(|e| {
            match (e.key.first(), e.key_end.as_ref().and_then(|x| x.first())) {
                (Some(lo), Some(hi)) => match (lo, hi, &k) {
                    (Value::Port(a), Value::Port(b), Value::Port(p)) => Tri::of(a <= p && p <= b),
                    _ => Tri::Maybe,
                },
                (Some(v), None) => Tri::of(*v == k),
                _ => Tri::Maybe,
            }
        })),
        Rhs::Range(Value::Port(a), Value::Port(b)) => match k {
            Value::Port(p) => Tri::of(*a <= p && p <= *b),
            _ => Tri::Maybe,
        },
        _ => Tri::Maybe,
    }
}

fn one_match(m: &Match, f: &Flow, sets: &Table) -> M {
    let plain = |tri| M { tri, ours: false };
    let proto = f.l4.map(|(p, _)| Value::Proto(p));
    let port = f.l4.map(|(_, p)| Value::Port(p));
    let r = match &m.left {
        Expr::Meta(MetaKey::Iifname) => iface_match(&f.iif, f, &m.right, sets),
        Expr::Meta(MetaKey::Oifname) => iface_match(&f.oif, f, &m.right, sets),
        Expr::Meta(MetaKey::Nfproto) => plain(match &m.right {
            Rhs::Value(Value::NfProto(p)) => Tri::of((*p == 10) == f.v6),
            _ => Tri::Maybe,
        }),
        Expr::Meta(MetaKey::Protocol) => plain(match &m.right {
            Rhs::Value(Value::EtherType(t)) => Tri::of(*t == if f.v6 { 0x86dd } else { 0x0800 }),
            _ => Tri::Maybe,
        }),
        Expr::Meta(MetaKey::L4proto) => plain(value_match(proto, &m.right, sets)),
        Expr::Payload(fl) => {
            // A field of the other IP version never matches (nft's dependency says so).
            let family = fl.proto().network();
            if family.is_some_and(|n| (n == 10) != f.v6) {
                plain(Tri::No)
            } else {
                match fl {
                    Field::IpSaddr | Field::Ip6Saddr => addr_match(&f.saddr, f, &m.right, sets),
                    Field::IpDaddr | Field::Ip6Daddr => addr_match(&f.daddr, f, &m.right, sets),
                    Field::IpProtocol | Field::Ip6Nexthdr => {
                        plain(value_match(proto, &m.right, sets))
                    }
                    Field::TcpDport | Field::UdpDport => {
                        let want = fl.proto().l4();
                        match f.l4 {
                            Some((p, _)) if Some(p) != want => plain(Tri::No),
                            _ => plain(value_match(port, &m.right, sets)),
                        }
                    }
                    Field::ThDport => plain(value_match(port, &m.right, sets)),
                    _ => plain(Tri::Maybe),
                }
            }
        }
        Expr::Ct(CtKey::State) => plain(match &m.right {
            Rhs::Value(Value::CtState(bits)) => Tri::of(bits & f.ct != 0),
            Rhs::Set(s) => Tri::any(elements(s, sets).iter().map(|e| match e.key.first() {
                Some(Value::CtState(b)) => Tri::of(b & f.ct != 0),
                _ => Tri::Maybe,
            })),
            _ => Tri::Maybe,
        }),
        Expr::Ct(CtKey::Status) => plain(match &m.right {
            Rhs::Value(Value::CtStatus(bits)) if *bits == ct_status::DNAT => Tri::of(f.dnat),
            _ => Tri::Maybe,
        }),
        _ => plain(Tri::Maybe),
    };
    // `!=` turns the truth around; `==` and flag tests keep it.
    match m.op {
        Op::Neq => M {
            tri: r.tri.not(),
            ..r
        },
        Op::Eq | Op::Flags => r,
        _ => M {
            tri: Tri::Maybe,
            ..r
        },
    }
}

/// Whether every match of a rule holds.
fn rule_match(r: &Rule, f: &Flow, sets: &Table) -> M {
    let mut tri = Tri::Yes;
    let mut ours = false;
    for s in &r.stmts {
        let m = match s {
            Stmt::Match(m) => one_match(m, f, sets),
            // A rate limit, or something nsfw cannot read: holds for some packets.
            Stmt::Limit(_) | Stmt::Unreadable(_) => M {
                tri: Tri::Maybe,
                ours: false,
            },
            _ => continue,
        };
        ours |= m.ours;
        tri = match (tri, m.tri) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, Tri::Yes) => Tri::Yes,
            _ => Tri::Maybe,
        };
    }
    M { tri, ours }
}

/// What a rule ends in.
enum End {
    Accept,
    Drop {
        reject: bool,
    },
    Jump(String),
    Goto(String),
    Return,
    /// Goes on to the next rule (a counter, a log, a mark set; a nat statement accepts, but
    /// in a nat chain that is no filtering).
    Next,
}

fn end_of(r: &Rule) -> End {
    for s in r.stmts.iter().rev() {
        match s {
            Stmt::Verdict(Verdict::Accept) => return End::Accept,
            Stmt::Verdict(Verdict::Drop) => return End::Drop { reject: false },
            Stmt::Reject(_) => return End::Drop { reject: true },
            Stmt::Verdict(Verdict::Jump(c)) => return End::Jump(c.clone()),
            Stmt::Verdict(Verdict::Goto(c)) => return End::Goto(c.clone()),
            Stmt::Verdict(Verdict::Return) => return End::Return,
            Stmt::Nat(_) | Stmt::Masquerade(_) | Stmt::Redirect(_) => return End::Accept,
            Stmt::Counter(_) | Stmt::Log(_) => continue,
            _ => return End::Next,
        }
    }
    End::Next
}

/// A rule as a person would look for it: nft syntax without its counters.
pub(crate) fn shown(r: &Rule) -> String {
    Rule {
        stmts: r
            .stmts
            .iter()
            .filter(|s| !matches!(s, Stmt::Counter(_)))
            .cloned()
            .collect(),
        comment: r.comment.clone(),
    }
    .to_string()
}

enum Walk {
    Accepted,
    Dropped(Blocker),
    End,
}

struct Walker<'a> {
    table: &'a Table,
    handles: &'a dyn Fn(&str, usize) -> u64,
    flow: &'a Flow,
    maybe_accepted: bool,
    partly: Vec<Blocker>,
}

impl Walker<'_> {
    fn blocker(&self, chain: &str, i: usize, r: &Rule, reject: bool) -> Blocker {
        Blocker {
            chain: chain.to_string(),
            rule: Some((shown(r), (self.handles)(chain, i))),
            reject,
            position: i,
        }
    }

    fn walk(&mut self, chain: &str, depth: usize) -> Walk {
        let Some(c) = self.table.chain(chain) else {
            return Walk::End;
        };
        if depth > 16 {
            return Walk::End;
        }
        for (i, r) in c.rules.iter().enumerate() {
            let m = rule_match(r, self.flow, self.table);
            if m.tri == Tri::No {
                continue;
            }
            let sure = m.tri == Tri::Yes;
            match end_of(r) {
                End::Accept if sure => return Walk::Accepted,
                End::Accept => self.maybe_accepted = true,
                End::Drop { reject } => {
                    let b = self.blocker(chain, i, r, reject);
                    if sure {
                        return Walk::Dropped(b);
                    }
                    if m.ours {
                        self.partly.push(b);
                    }
                }
                End::Jump(to) | End::Goto(to) if !sure => {
                    // Part of the flow goes there: what it drops there, it drops in part.
                    let saved = self.maybe_accepted;
                    match self.walk(&to, depth + 1) {
                        Walk::Dropped(b) if m.ours => self.partly.push(b),
                        Walk::Accepted => self.maybe_accepted = true,
                        _ => {}
                    }
                    self.maybe_accepted |= saved;
                }
                End::Jump(to) => match self.walk(&to, depth + 1) {
                    Walk::End => {}
                    w => return w,
                },
                End::Goto(to) => return self.walk(&to, depth + 1),
                End::Return if sure => return Walk::End,
                End::Return | End::Next => {}
            }
        }
        Walk::End
    }
}

/// What base chain `chain` of `table` does to `flow`. `handles` gives a rule's handle by
/// chain and position.
pub(crate) fn judge(
    table: &Table,
    chain: &str,
    flow: &Flow,
    handles: &dyn Fn(&str, usize) -> u64,
) -> Outcome {
    let Some(base) = table.chain(chain).and_then(|c| c.base) else {
        return Outcome::default();
    };
    let mut w = Walker {
        table,
        handles,
        flow,
        maybe_accepted: false,
        partly: Vec::new(),
    };
    let blocked = match w.walk(chain, 0) {
        Walk::Accepted => None,
        Walk::Dropped(b) => Some(b),
        Walk::End if base.policy == Policy::Drop => Some(Blocker {
            chain: chain.to_string(),
            rule: None,
            reject: false,
            position: 0,
        }),
        Walk::End => None,
    };
    Outcome {
        blocked: blocked.map(|b| (b, !w.maybe_accepted)),
        partly: w.partly,
    }
}
