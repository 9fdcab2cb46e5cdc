//! Matches on headers, meta, conntrack and routes; statements and verdicts.

use crate::*;
use nft::*;

/// A forward chain of `rules` in an inet table, checked as one case.
fn check_matches(case: &str, rules: Vec<Rule>) {
    let t = Table {
        comment: Some("matches".into()),
        chains: vec![Chain::new(
            "f",
            base(ChainType::Filter, Hook::Forward, prio::FILTER),
            rules,
        )],
        ..Table::new(Family::Inet, "t")
    };
    check(&format!("matches: {case}"), &t);
}

/// Prefixes (byte-aligned or masked, != and /0), addresses, the protocol, and a port after it.
#[test]
fn ipv4_header_matches() {
    use Field::*;
    check_matches(
        "headers: ipv4",
        vec![
            r(vec![
                m(pl(IpSaddr), EQ, Rhs::Prefix(ip("10.10.0.0"), 24)),
                accept(),
            ]),
            r(vec![
                m(pl(IpSaddr), EQ, Rhs::Prefix(ip("10.16.0.0"), 12)),
                accept(),
            ]),
            r(vec![
                m(pl(IpDaddr), EQ, Rhs::Prefix(ip("10.0.0.0"), 20)),
                accept(),
            ]),
            r(vec![
                m(pl(IpDaddr), NEQ, Rhs::Prefix(ip("10.0.0.0"), 8)),
                accept(),
            ]),
            r(vec![
                m(pl(IpSaddr), EQ, Rhs::Prefix(ip("0.0.0.0"), 0)),
                accept(),
            ]),
            r(vec![m(pl(IpDaddr), EQ, v(ip("10.1.2.3"))), accept()]),
            r(vec![
                m(pl(IpSaddr), EQ, v(ip("10.0.0.1"))),
                m(pl(IpDaddr), EQ, v(ip("10.0.0.2"))),
                accept(),
            ]),
            r(vec![m(pl(IpProtocol), EQ, v(Value::Proto(6))), accept()]),
            r(vec![
                m(pl(IpProtocol), EQ, v(Value::Proto(6))),
                m(pl(TcpDport), EQ, v(Value::Port(22))),
                accept(),
            ]),
        ],
    );
}

/// Prefixes, an address and the next header.
#[test]
fn ipv6_header_matches() {
    use Field::*;
    check_matches(
        "headers: ipv6",
        vec![
            r(vec![
                m(pl(Ip6Saddr), EQ, Rhs::Prefix(ip6("fd00::"), 12)),
                accept(),
            ]),
            r(vec![
                m(pl(Ip6Daddr), EQ, Rhs::Prefix(ip6("fd00:10::"), 64)),
                accept(),
            ]),
            r(vec![
                m(pl(Ip6Saddr), NEQ, Rhs::Prefix(ip6("fd00:10::"), 64)),
                accept(),
            ]),
            r(vec![m(pl(Ip6Saddr), EQ, v(ip6("fd00:10::1"))), accept()]),
            r(vec![m(pl(Ip6Nexthdr), EQ, v(Value::Proto(17))), accept()]),
        ],
    );
}

/// Ports (tcp, udp, th), port ranges, an ordering, ICMP types.
#[test]
fn transport_header_matches() {
    use Field::*;
    check_matches(
        "headers: transport",
        vec![
            r(vec![m(pl(TcpDport), EQ, v(Value::Port(22))), accept()]),
            r(vec![m(pl(TcpDport), NEQ, v(Value::Port(22))), accept()]),
            r(vec![m(pl(UdpSport), EQ, v(Value::Port(53))), accept()]),
            r(vec![m(pl(ThDport), EQ, v(Value::Port(53))), accept()]),
            r(vec![
                m(
                    pl(TcpSport),
                    EQ,
                    Rhs::Range(Value::Port(1024), Value::Port(65535)),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    pl(TcpDport),
                    NEQ,
                    Rhs::Range(Value::Port(100), Value::Port(200)),
                ),
                accept(),
            ]),
            r(vec![m(pl(IcmpType), EQ, v(Value::IcmpType(8))), accept()]),
            r(vec![
                m(pl(Icmpv6Type), EQ, v(Value::Icmpv6Type(128))),
                accept(),
            ]),
            r(vec![
                m(pl(TcpDport), Op::Lt, v(Value::Port(1024))),
                accept(),
            ]),
        ],
    );
}

/// Ethernet addresses and type, interface names (and a prefix of one) and indexes, protocols, marks (ranges, orderings), the packet type.
#[test]
fn ether_and_meta_matches() {
    use Field::*;
    use MetaKey::*;
    check_matches(
        "meta",
        vec![
            r(vec![
                m(
                    pl(EtherSaddr),
                    EQ,
                    v(Value::Ether([0, 0x11, 0x22, 0x33, 0x44, 0x55])),
                ),
                accept(),
            ]),
            r(vec![
                m(meta(Iifname), EQ, v(Value::Ifname("br0".into()))),
                m(meta(Oifname), NEQ, v(Value::Ifname("br1".into()))),
                accept(),
            ]),
            r(vec![
                m(
                    meta(Iifname),
                    EQ,
                    Rhs::Prefix(Value::Ifname("br".into()), 16),
                ),
                accept(),
            ]),
            r(vec![m(meta(Iif), EQ, v(Value::Ifindex(1))), accept()]),
            r(vec![m(meta(Oif), EQ, v(Value::Ifindex(1))), accept()]),
            r(vec![m(meta(L4proto), EQ, v(Value::Proto(58))), accept()]),
            r(vec![m(meta(Nfproto), EQ, v(Value::NfProto(10))), accept()]),
            r(vec![m(meta(Mark), EQ, v(Value::Mark(0x10))), accept()]),
            r(vec![m(meta(Mark), NEQ, v(Value::Mark(0x10))), accept()]),
            r(vec![
                m(
                    meta(Mark),
                    EQ,
                    Rhs::Range(Value::Mark(0x10), Value::Mark(0x20)),
                ),
                accept(),
            ]),
            r(vec![m(meta(Pkttype), EQ, v(Value::PktType(1))), drop_()]),
            r(vec![m(meta(Mark), Op::Gte, v(Value::Mark(0x10))), accept()]),
            r(vec![
                m(pl(EtherDaddr), NEQ, v(Value::Ether([2, 0, 0, 0, 0, 1]))),
                accept(),
            ]),
            r(vec![
                m(meta(Protocol), EQ, v(Value::EtherType(0x86dd))),
                accept(),
            ]),
        ],
    );
}

/// State (flags, ==, !=), status, mark, direction.
#[test]
fn conntrack_matches() {
    check_matches(
        "conntrack",
        vec![
            r(vec![
                Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED),
                accept(),
            ]),
            r(vec![Stmt::ct_state(ct_state::NEW), accept()]),
            r(vec![
                m(
                    Expr::Ct(CtKey::State),
                    NEQ,
                    v(Value::CtState(ct_state::INVALID)),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    Expr::Ct(CtKey::State),
                    EQ,
                    v(Value::CtState(ct_state::ESTABLISHED)),
                ),
                accept(),
            ]),
            r(vec![
                Stmt::Match(Match {
                    left: Expr::Ct(CtKey::Status),
                    op: Op::Flags,
                    right: v(Value::CtStatus(ct_status::DNAT)),
                }),
                accept(),
            ]),
            r(vec![
                m(Expr::Ct(CtKey::Mark), EQ, v(Value::Mark(5))),
                accept(),
            ]),
            r(vec![
                m(Expr::Ct(CtKey::Direction), EQ, v(Value::CtDir(1))),
                accept(),
            ]),
        ],
    );
}

/// fib lookups: an address type, a missing output interface.
#[test]
fn route_matches() {
    check_matches(
        "routes",
        vec![
            r(vec![
                m(
                    Expr::Fib(Fib {
                        flags: fib::DADDR,
                        result: FibResult::Type,
                        present: false,
                    }),
                    EQ,
                    v(Value::FibAddr(2)),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    Expr::Fib(Fib {
                        flags: fib::SADDR | fib::IIF,
                        result: FibResult::Oif,
                        present: true,
                    }),
                    EQ,
                    v(Value::Bool(false)),
                ),
                drop_(),
            ]),
            r(vec![
                m(
                    Expr::Fib(Fib {
                        flags: fib::DADDR | fib::IIF,
                        result: FibResult::Type,
                        present: false,
                    }),
                    NEQ,
                    v(Value::FibAddr(2)),
                ),
                drop_(),
            ]),
        ],
    );
}

/// `rules` in an input chain (policy drop, priority 10) of an inet table that also has a
/// regular chain `x` to jump to, checked as one case.
fn check_statements(case: &str, rules: Vec<Rule>) {
    let t = Table {
        chains: vec![
            Chain {
                comment: Some("chain comment".into()),
                ..Chain::new("x", None, vec![])
            },
            Chain::new(
                "f",
                Some(Base {
                    ty: ChainType::Filter,
                    hook: Hook::Input,
                    priority: 10,
                    policy: Policy::Drop,
                }),
                rules,
            ),
        ],
        ..Table::new(Family::Inet, "s")
    };
    check(&format!("statements: {case}"), &t);
}

/// Counters, logs (prefix and level, nflog group, flags) and limits (packets, over, bytes).
#[test]
fn counters_logs_and_limits() {
    let log = |l: Log| Stmt::Log(l);
    check_statements(
        "counters, logs and limits",
        vec![
            r(vec![Stmt::Counter(Counter::default())]),
            r(vec![Stmt::Counter(Counter::default()), accept()]),
            r(vec![log(Log::default())]),
            r(vec![log(Log {
                prefix: Some("x ".into()),
                level: 6,
                ..Default::default()
            })]),
            r(vec![log(Log {
                prefix: Some("g".into()),
                group: Some(2),
                ..Default::default()
            })]),
            r(vec![log(Log {
                flags: 0x2f,
                ..Default::default()
            })]),
            r(vec![Stmt::Limit(Limit {
                rate: 5,
                per: 60,
                burst: 5,
                bytes: false,
                over: false,
            })]),
            r(vec![
                Stmt::Limit(Limit {
                    rate: 10,
                    per: 1,
                    burst: 20,
                    bytes: false,
                    over: true,
                }),
                drop_(),
            ]),
            r(vec![Stmt::Limit(Limit {
                rate: 100 * 1024,
                per: 1,
                burst: 10 * 1024,
                bytes: true,
                over: false,
            })]),
        ],
    );
}

/// Rejects: the family's default, icmpx, icmp, icmpv6, tcp reset after a TCP match.
#[test]
fn rejects() {
    use MetaKey::*;
    check_statements(
        "rejects",
        vec![
            r(vec![Stmt::Reject(Reject::Default)]),
            r(vec![Stmt::Reject(Reject::Icmpx(3))]),
            r(vec![Stmt::Reject(Reject::Icmp(1))]),
            r(vec![Stmt::Reject(Reject::Icmpv6(1))]),
            r(vec![
                m(meta(L4proto), EQ, v(Value::Proto(6))),
                Stmt::Reject(Reject::TcpReset),
            ]),
        ],
    );
}

/// meta and ct set, the verdicts other than accept and drop, a rule's comment.
#[test]
fn sets_and_verdicts() {
    use MetaKey::*;
    check_statements(
        "sets and verdicts",
        vec![
            r(vec![Stmt::MetaSet(Mark, Arg::Value(Value::Mark(1)))]),
            r(vec![Stmt::CtSet(CtKey::Mark, Arg::Value(Value::Mark(2)))]),
            r(vec![Stmt::CtSet(CtKey::Mark, Arg::Expr(meta(Mark)))]),
            r(vec![Stmt::Verdict(Verdict::Continue)]),
            r(vec![Stmt::Verdict(Verdict::Return)]),
            r(vec![Stmt::Verdict(Verdict::Jump("x".into()))]),
            r(vec![Stmt::Verdict(Verdict::Goto("x".into()))]),
            Rule {
                stmts: vec![accept()],
                comment: Some("with a comment".into()),
            },
        ],
    );
}

/// A regular chain with a comment, a prerouting chain at priority raw (notrack, a conntrack
/// zone chosen before conntrack), a base chain with policy drop, a route chain.
#[test]
fn chains_of_every_kind() {
    use MetaKey::*;
    let t = Table {
        chains: vec![
            Chain {
                comment: Some("chain comment".into()),
                ..Chain::new("x", None, vec![])
            },
            Chain::new(
                "pre",
                base(ChainType::Filter, Hook::Prerouting, prio::RAW),
                vec![
                    r(vec![Stmt::Notrack]),
                    // Before conntrack (priority raw), where a zone can still be chosen.
                    r(vec![
                        m(meta(Pkttype), NEQ, v(Value::PktType(0))),
                        Stmt::CtSet(CtKey::Zone, Arg::Value(Value::U16(28275))),
                    ]),
                ],
            ),
            Chain::new(
                "f",
                Some(Base {
                    ty: ChainType::Filter,
                    hook: Hook::Input,
                    priority: 10,
                    policy: Policy::Drop,
                }),
                vec![],
            ),
            Chain::new(
                "o",
                base(ChainType::Route, Hook::Output, prio::MANGLE),
                vec![],
            ),
        ],
        ..Table::new(Family::Inet, "s")
    };
    check("statements: chains", &t);
}
