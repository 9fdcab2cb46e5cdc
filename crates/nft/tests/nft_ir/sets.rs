//! Named and anonymous sets, maps and verdict maps, and lookups in them.

use crate::*;
use nft::*;

fn cat(types: &[Datatype]) -> Vec<Datatype> {
    types.to_vec()
}

/// The named sets and maps of the set and NAT cases.
pub fn sets_and_maps() -> Vec<Set> {
    [
        concatenations_and_maps(),
        verdict_maps(),
        interval_timeout_and_constant_sets(),
        sets_nft_orders(),
        dynamic_and_empty_sets(),
    ]
    .concat()
}

/// An interval set of a concatenation; maps to an address and port (the publish maps of both families, with and without the host address) and to an address.
fn concatenations_and_maps() -> Vec<Set> {
    use Datatype::*;
    let p = Value::Proto;
    let port = Value::Port;
    let map = |k: Vec<Value>, d: Vec<Value>| Element::map(k, ElemData::Values(d));
    vec![
        Set {
            flags: SetFlags {
                interval: true,
                ..Default::default()
            },
            ..set(
                "s4",
                cat(&[Ipv4Addr, InetProto, InetService]),
                vec![
                    Element {
                        key: vec![ip("10.0.0.0"), p(6), port(80)],
                        key_end: Some(vec![ip("10.255.255.255"), p(6), port(90)]),
                        ..Default::default()
                    },
                    Element::key(vec![ip("192.168.1.1"), p(17), port(53)]),
                ],
            )
        },
        Set {
            data: Some(SetData::Values(cat(&[Ipv4Addr, InetService]))),
            ..set(
                "pub4",
                cat(&[InetProto, InetService]),
                vec![
                    map(vec![p(6), port(8080)], vec![ip("10.10.0.2"), port(80)]),
                    map(vec![p(17), port(5353)], vec![ip("10.10.0.3"), port(53)]),
                ],
            )
        },
        Set {
            data: Some(SetData::Values(cat(&[Ipv4Addr, InetService]))),
            ..set(
                "pub4a",
                cat(&[Ipv4Addr, InetProto, InetService]),
                vec![map(
                    vec![ip("127.0.0.1"), p(6), port(8443)],
                    vec![ip("10.10.0.2"), port(443)],
                )],
            )
        },
        Set {
            data: Some(SetData::Values(cat(&[Ipv6Addr, InetService]))),
            ..set(
                "pub6",
                cat(&[InetProto, InetService]),
                vec![
                    map(vec![p(6), port(8080)], vec![ip6("fd00::2"), port(80)]),
                    map(vec![p(17), port(53)], vec![ip6("fd00::3"), port(5353)]),
                ],
            )
        },
        Set {
            data: Some(SetData::Values(cat(&[Ipv6Addr, InetService]))),
            ..set(
                "pub6a",
                cat(&[Ipv6Addr, InetProto, InetService]),
                vec![map(
                    vec![ip6("::1"), p(6), port(8443)],
                    vec![ip6("fd00::2"), port(443)],
                )],
            )
        },
        Set {
            data: Some(SetData::Values(cat(&[Ipv4Addr]))),
            ..set(
                "m2",
                cat(&[Ipv4Addr]),
                vec![map(vec![ip("1.2.3.4")], vec![ip("10.0.0.1")])],
            )
        },
    ]
}

/// Verdict maps: of a concatenation, and of intervals.
fn verdict_maps() -> Vec<Set> {
    use Datatype::*;
    vec![
        Set {
            data: Some(SetData::Verdict),
            ..set(
                "vm",
                cat(&[Ifname, Ifname]),
                vec![
                    Element::map(
                        vec![Value::Ifname("br0".into()), Value::Ifname("br1".into())],
                        ElemData::Verdict(nft::Verdict::Jump("x".into())),
                    ),
                    Element::map(
                        vec![Value::Ifname("br1".into()), Value::Ifname("br0".into())],
                        ElemData::Verdict(nft::Verdict::Drop),
                    ),
                ],
            )
        },
        Set {
            data: Some(SetData::Verdict),
            flags: SetFlags {
                interval: true,
                ..Default::default()
            },
            ..set(
                "vm4",
                cat(&[Ipv4Addr]),
                vec![Element {
                    data: Some(ElemData::Verdict(nft::Verdict::Accept)),
                    ..range(ip("10.0.0.0"), ip("10.255.255.255"))
                }],
            )
        },
    ]
}

/// Interval sets (addresses, marks), a set with timeouts, a constant set.
fn interval_timeout_and_constant_sets() -> Vec<Set> {
    use Datatype::*;
    let port = Value::Port;
    vec![
        Set {
            flags: SetFlags {
                interval: true,
                ..Default::default()
            },
            ..set(
                "a",
                cat(&[Ipv4Addr]),
                vec![
                    range(ip("10.0.0.0"), ip("10.255.255.255")),
                    range(ip("172.16.0.0"), ip("172.16.0.9")),
                    Element::key(vec![ip("192.168.1.1")]),
                ],
            )
        },
        Set {
            flags: SetFlags {
                interval: true,
                ..Default::default()
            },
            ..set(
                "mi",
                cat(&[Mark]),
                vec![
                    range(Value::Mark(0x10), Value::Mark(0x1f)),
                    range(Value::Mark(0x100), Value::Mark(0x120)),
                ],
            )
        },
        Set {
            flags: SetFlags {
                timeout: true,
                ..Default::default()
            },
            timeout: Some(3_600_000),
            ..set(
                "b",
                cat(&[InetService]),
                vec![
                    Element {
                        timeout: Some(600_000),
                        comment: Some("x".into()),
                        ..Element::key(vec![port(22)])
                    },
                    Element::key(vec![port(80)]),
                ],
            )
        },
        Set {
            flags: SetFlags {
                constant: true,
                ..Default::default()
            },
            ..set(
                "c",
                cat(&[Ipv4Addr]),
                vec![Element::key(vec![ip("1.2.3.4")])],
            )
        },
    ]
}

/// Sets whose elements nft prints in an order of its own (ports, addresses, names, states, a concatenation).
fn sets_nft_orders() -> Vec<Set> {
    use Datatype::*;
    let port = Value::Port;
    vec![
        set(
            "ports",
            cat(&[InetService]),
            (1..=13).map(|n| Element::key(vec![port(n)])).collect(),
        ),
        set(
            "ips",
            cat(&[Ipv4Addr]),
            (1..=5)
                .map(|n| Element::key(vec![ip(&format!("{n}.{n}.{n}.{n}"))]))
                .collect(),
        ),
        set(
            "ifs",
            cat(&[Ifname]),
            ["eth0", "br1", "br0"]
                .iter()
                .map(|n| Element::key(vec![Value::Ifname(n.to_string())]))
                .collect(),
        ),
        set(
            "st",
            cat(&[CtState]),
            [8, 2, 4]
                .iter()
                .map(|b| Element::key(vec![Value::CtState(*b)]))
                .collect(),
        ),
        set(
            "h",
            cat(&[Ipv4Addr, InetService]),
            [("10.0.0.1", 80), ("1.2.3.4", 22), ("5.5.5.5", 1)]
                .iter()
                .map(|(a, n)| Element::key(vec![ip(a), port(*n)]))
                .collect(),
        ),
    ]
}

/// A set whose elements time out one by one, and an empty set with a comment.
fn dynamic_and_empty_sets() -> Vec<Set> {
    use Datatype::*;
    vec![
        Set {
            flags: SetFlags {
                timeout: true,
                ..Default::default()
            },
            ..set(
                "dyn",
                cat(&[Ipv4Addr]),
                vec![Element {
                    timeout: Some(90_000),
                    ..Element::key(vec![ip("192.0.2.1")])
                }],
            )
        },
        Set {
            comment: Some("empty, with a comment".into()),
            ..set("e6", cat(&[Ipv6Addr]), vec![])
        },
    ]
}

/// `rules` in a forward chain of an inet table that holds every named set and map of
/// [`sets_and_maps`] and a regular chain `x` to jump to, checked as one case.
fn check_lookups(case: &str, rules: Vec<Rule>) {
    let t = Table {
        sets: sets_and_maps(),
        chains: vec![
            Chain::new("x", None, vec![]),
            Chain::new(
                "f",
                base(ChainType::Filter, Hook::Forward, prio::FILTER),
                rules,
            ),
        ],
        ..Table::new(Family::Inet, "lookups")
    };
    check(&format!("sets: {case}"), &t);
}

/// Lookups (== and !=) in named sets: addresses, ports with timeouts, marks, a concatenation.
#[test]
fn lookups_in_named_sets() {
    use Field::*;
    use MetaKey::*;
    check_lookups(
        "named sets",
        vec![
            r(vec![m(pl(IpSaddr), EQ, Rhs::Set(named("a"))), accept()]),
            r(vec![m(pl(IpSaddr), NEQ, Rhs::Set(named("a"))), drop_()]),
            r(vec![m(pl(TcpDport), EQ, Rhs::Set(named("b"))), accept()]),
            r(vec![m(meta(Mark), EQ, Rhs::Set(named("mi"))), accept()]),
            r(vec![
                m(
                    Expr::Concat(vec![pl(IpSaddr), meta(L4proto), pl(ThDport)]),
                    EQ,
                    Rhs::Set(named("s4")),
                ),
                accept(),
            ]),
        ],
    );
}

/// Verdict maps, named and anonymous, of a concatenation and of intervals.
#[test]
fn verdict_maps_named_and_anonymous() {
    use Field::*;
    use MetaKey::*;
    check_lookups(
        "verdict maps",
        vec![
            r(vec![Stmt::Vmap(
                Expr::Concat(vec![meta(Iifname), meta(Oifname)]),
                named("vm"),
            )]),
            r(vec![Stmt::Vmap(pl(IpDaddr), named("vm4"))]),
            r(vec![Stmt::Vmap(
                Expr::Concat(vec![meta(Iifname), meta(Oifname)]),
                SetRef::Anon(vec![Element::map(
                    vec![Value::Ifname("br0".into()), Value::Ifname("br1".into())],
                    ElemData::Verdict(Verdict::Jump("x".into())),
                )]),
            )]),
            r(vec![Stmt::Vmap(
                pl(IpSaddr),
                SetRef::Anon(vec![
                    Element {
                        data: Some(ElemData::Verdict(Verdict::Jump("x".into()))),
                        ..range(ip("10.0.0.0"), ip("10.255.255.255"))
                    },
                    Element {
                        data: Some(ElemData::Verdict(Verdict::Drop)),
                        ..range(ip("192.168.0.0"), ip("192.168.255.255"))
                    },
                ]),
            )]),
        ],
    );
}

/// Lookups in anonymous sets: ports, protocols with a port range, addresses with a range, ICMP types, conntrack states.
#[test]
fn lookups_in_anonymous_sets() {
    use Field::*;
    use MetaKey::*;
    let port = Value::Port;
    check_lookups(
        "anonymous sets",
        vec![
            r(vec![
                m(pl(TcpDport), EQ, Rhs::Set(anon(vec![port(80), port(443)]))),
                accept(),
            ]),
            r(vec![
                m(
                    meta(L4proto),
                    EQ,
                    Rhs::Set(anon(vec![Value::Proto(6), Value::Proto(17)])),
                ),
                m(
                    pl(ThDport),
                    EQ,
                    Rhs::Set(SetRef::Anon(vec![
                        Element::key(vec![port(22)]),
                        range(port(80), port(90)),
                    ])),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    pl(IpSaddr),
                    EQ,
                    Rhs::Set(SetRef::Anon(vec![
                        range(ip("10.0.0.0"), ip("10.255.255.255")),
                        Element::key(vec![ip("192.168.1.1")]),
                    ])),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    pl(IcmpType),
                    EQ,
                    Rhs::Set(anon(vec![Value::IcmpType(8), Value::IcmpType(0)])),
                ),
                accept(),
            ]),
            r(vec![
                m(
                    Expr::Ct(CtKey::State),
                    EQ,
                    Rhs::Set(anon(vec![
                        Value::CtState(ct_state::NEW),
                        Value::CtState(ct_state::ESTABLISHED),
                    ])),
                ),
                accept(),
            ]),
        ],
    );
}

/// A set and a map declared `counter`: each element gets a counter of its own, which nft
/// lists after the key; read back, the set says `counter` and its elements' counters are
/// apart from the elements the diff compares.
fn counted() -> Table {
    use Datatype::*;
    let port = Value::Port;
    let counter = SetFlags {
        counter: true,
        ..Default::default()
    };
    let pm = Element::map(
        vec![Value::Proto(6), port(8080)],
        ElemData::Values(vec![ip("10.10.0.2"), port(80)]),
    );
    Table {
        sets: vec![
            Set {
                flags: counter,
                ..set(
                    "c",
                    vec![Ipv4Addr],
                    vec![
                        Element::key(vec![ip("127.0.0.1")]),
                        Element::key(vec![ip("10.0.0.2")]),
                    ],
                )
            },
            Set {
                flags: counter,
                data: Some(SetData::Values(cat(&[Ipv4Addr, InetService]))),
                ..set("pm", cat(&[InetProto, InetService]), vec![pm])
            },
        ],
        chains: vec![Chain::new(
            "out",
            base(ChainType::Filter, Hook::Output, prio::FILTER),
            // ip daddr @c
            vec![r(vec![m(pl(Field::IpDaddr), EQ, Rhs::Set(named("c")))])],
        )],
        ..Table::new(Family::Inet, "counted")
    }
}

#[test]
fn counted_sets_round_trip_as_nft_lists_them() {
    check("counted sets", &counted());
}

#[test]
fn a_counted_element_counts_what_its_lookup_matched() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let t = counted();
    apply(&sb, vec![BatchOp::ReplaceTable(t.clone())]);
    // Three echo requests and their three replies leave through lo to 127.0.0.1.
    sb.ok("ip link set lo up && ping -c 3 -i 0.2 -W 1 127.0.0.1 >/dev/null");
    let d = read(&sb, Family::Inet, "counted");
    let counts: Vec<(Vec<Value>, u64)> = d
        .element_counters("c")
        .expect("decodes")
        .into_iter()
        .map(|(e, c)| (e.key, c.packets))
        .collect();
    assert!(counts.contains(&(vec![ip("127.0.0.1")], 6)), "{counts:?}");
    assert!(counts.contains(&(vec![ip("10.0.0.2")], 0)), "{counts:?}");
    let pm = d.element_counters("pm").expect("decodes");
    assert_eq!(pm.len(), 1, "{pm:?}");
    // What counted is no difference: the table is still the one loaded.
    let diff = nft::diff::table_diff(&t, Some(&d));
    assert!(diff.ops.is_empty(), "{:?}", diff.ops);
}

/// A set someone declared with another stateful expression than `counter` is named as
/// unreadable, never read as a plain set the diff would keep.
#[test]
fn a_set_with_another_expression_is_unreadable() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok(
        "nft add table inet x && nft add set inet x q '{ type ipv4_addr; limit rate 10/second; }'",
    );
    let d = read(&sb, Family::Inet, "x");
    assert!(
        d.unreadable.iter().any(|u| u.contains("limit")),
        "{:?}",
        d.unreadable
    );
}
