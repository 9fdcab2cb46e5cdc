//! Pure-logic tests of the IR pipeline, no kernel: lowering writes what nft 1.0.6 writes
//! (checked against `nft --debug=netlink`), raising reads it back to the same IR, rendering is
//! nft's text, and the diff of an element-only change holds element messages only.

use super::batch::{Op as BatchOp, encode};
use super::diff::{canonical_rule, table_diff};
use super::dump::Dumped;
use super::expr::{self as x, Raw};
use super::ir::*;
use super::lower::{LowerCtx, lower_rule};
use super::raise::{RaiseCtx, raise_rule};

fn ip(s: &str) -> Value {
    Value::Ipv4(s.parse().expect("ipv4"))
}

fn lower(family: Family, rule: &Rule, sets: &[Set]) -> Vec<Raw> {
    let mut id = 1;
    let mut cx = LowerCtx {
        family,
        sets,
        next_set_id: &mut id,
    };
    lower_rule(rule, &mut cx).expect("lower").exprs
}

/// `payload load 3b @ network header + 12 => reg 1` and the like, as nft's debug output
/// abbreviates them.
fn short(r: &Raw) -> String {
    match r {
        Raw::Payload(p) => format!(
            "payload {}b @ {} + {} => reg {}",
            p.len.unwrap_or(0),
            ["link", "network", "transport"][p.base.unwrap_or(0) as usize % 3],
            p.offset.unwrap_or(0),
            p.dreg.unwrap_or(0)
        ),
        Raw::Meta(m) => format!("meta {} => reg {}", m.key.unwrap_or(0), m.dreg.unwrap_or(0)),
        Raw::Cmp(c) => format!(
            "cmp {} reg {} {}",
            c.op.unwrap_or(0),
            c.sreg.unwrap_or(0),
            hex(c.data.as_deref().unwrap_or(&[]))
        ),
        Raw::Bitwise(b) => format!("bitwise & {}", hex(b.mask.as_deref().unwrap_or(&[]))),
        Raw::Lookup(l) => format!(
            "lookup reg {} {} dreg {:?}",
            l.sreg.unwrap_or(0),
            l.set.as_deref().unwrap_or(""),
            l.dreg
        ),
        Raw::Nat(n) => format!(
            "nat addr reg {:?} proto reg {:?} flags {:#x}",
            n.addr_min,
            n.proto_min,
            n.flags.unwrap_or(0)
        ),
        Raw::Byteorder(b) => format!("hton reg {}", b.sreg.unwrap_or(0)),
        r => r.describe(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

fn shape(family: Family, stmts: Vec<Stmt>, sets: &[Set]) -> Vec<String> {
    lower(family, &Rule::new(stmts), sets)
        .iter()
        .map(short)
        .collect()
}

#[test]
fn lowering_writes_what_nft_writes() {
    let saddr = Expr::Payload(Field::IpSaddr);
    // ip saddr 10.10.0.0/24: nfproto dependency, a 3-byte load, a 3-byte compare.
    assert_eq!(
        shape(
            Family::Inet,
            vec![Stmt::prefix(saddr.clone(), ip("10.10.0.0"), 24)],
            &[]
        ),
        [
            "meta 15 => reg 1",
            "cmp 0 reg 1 02",
            "payload 3b @ network + 12 => reg 1",
            "cmp 0 reg 1 0a0a00"
        ]
    );
    // ip saddr 10.16.0.0/12: not byte aligned, a mask.
    assert_eq!(
        shape(
            Family::Ip,
            vec![Stmt::prefix(saddr, ip("10.16.0.0"), 12)],
            &[]
        ),
        [
            "payload 4b @ network + 12 => reg 1",
            "bitwise & fff00000",
            "cmp 0 reg 1 0a100000"
        ]
    );
    // dnat ip to ip daddr . meta l4proto . th dport map @pub4a: 32-bit registers 1, 9, 10.
    let pub4a = Set {
        name: "pub4a".into(),
        key: vec![
            Datatype::Ipv4Addr,
            Datatype::InetProto,
            Datatype::InetService,
        ],
        data: Some(SetData::Values(vec![
            Datatype::Ipv4Addr,
            Datatype::InetService,
        ])),
        ..Default::default()
    };
    let key = Expr::Concat(vec![
        Expr::Payload(Field::IpDaddr),
        Expr::Meta(MetaKey::L4proto),
        Expr::Payload(Field::ThDport),
    ]);
    assert_eq!(
        shape(
            Family::Inet,
            vec![Stmt::Nat(Nat {
                kind: NatKind::Dnat,
                family: Some(NatFamily::Ip),
                to: NatTo::Map(key, SetRef::Named("pub4a".into())),
                flags: 0,
            })],
            &[pub4a]
        ),
        [
            "meta 15 => reg 1",
            "cmp 0 reg 1 02",
            "payload 4b @ network + 16 => reg 1",
            "meta 16 => reg 9",
            "payload 2b @ transport + 2 => reg 10",
            "lookup reg 1 pub4a dreg Some(1)",
            "nat addr reg Some(1) proto reg Some(9) flags 0x3"
        ]
    );
    // meta mark 0x10-0x20 compares in network order.
    assert_eq!(
        shape(
            Family::Ip,
            vec![Stmt::Match(Match {
                left: Expr::Meta(MetaKey::Mark),
                op: Op::Eq,
                right: Rhs::Range(Value::Mark(0x10), Value::Mark(0x20)),
            })],
            &[]
        ),
        [
            "meta 3 => reg 1",
            "hton reg 1",
            "cmp 5 reg 1 00000010",
            "cmp 3 reg 1 00000020"
        ]
    );
}

/// Statements that read back to themselves through lower and raise.
fn round_trips() -> Vec<(Family, Vec<Stmt>)> {
    let tcp = || Stmt::eq(Expr::Meta(MetaKey::L4proto), Value::Proto(6));
    vec![
        (
            Family::Inet,
            vec![
                Stmt::prefix(Expr::Payload(Field::IpSaddr), ip("10.0.0.0"), 8),
                Stmt::iifname("br0", true),
                Stmt::Verdict(Verdict::Jump("x".into())),
            ],
        ),
        (
            Family::Inet,
            vec![
                Stmt::eq(Expr::Payload(Field::Icmpv6Type), Value::Icmpv6Type(128)),
                Stmt::Counter(Counter::default()),
                Stmt::Verdict(Verdict::Accept),
            ],
        ),
        (
            Family::Inet,
            vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
        ),
        (Family::Inet, vec![tcp(), Stmt::Reject(Reject::TcpReset)]),
        (Family::Inet, vec![Stmt::Reject(Reject::Icmp(13))]),
        (Family::Ip, vec![Stmt::Reject(Reject::Default)]),
        (
            Family::Inet,
            vec![
                tcp(),
                Stmt::Masquerade(PortNat {
                    ports: Some((1024, 2048)),
                    flags: nat::RANDOM,
                }),
            ],
        ),
        (
            Family::Ip6,
            vec![Stmt::Nat(Nat {
                kind: NatKind::Snat,
                family: None,
                to: NatTo::AddrPort(Value::Ipv6("fd00::1".parse().expect("v6")), 80),
                flags: 0,
            })],
        ),
        (
            Family::Inet,
            vec![Stmt::Vmap(
                Expr::Concat(vec![
                    Expr::Meta(MetaKey::Iifname),
                    Expr::Meta(MetaKey::Oifname),
                ]),
                SetRef::Anon(vec![Element::map(
                    vec![Value::Ifname("br0".into()), Value::Ifname("br1".into())],
                    ElemData::Verdict(Verdict::Drop),
                )]),
            )],
        ),
        (
            Family::Bridge,
            vec![
                Stmt::eq(
                    Expr::Payload(Field::Ip6Daddr),
                    Value::Ipv6("::1".parse().expect("v6")),
                ),
                Stmt::eq(Expr::Meta(MetaKey::Ibrname), Value::Ifname("br0".into())),
                Stmt::Log(Log {
                    prefix: Some("x".into()),
                    group: Some(3),
                    ..Default::default()
                }),
            ],
        ),
    ]
}

#[test]
fn lower_then_raise_gives_the_rule_back() {
    for (family, stmts) in round_trips() {
        let rule = Rule::new(stmts);
        assert_eq!(
            canonical_rule(&rule, family, &[]),
            rule,
            "{} ({family:?})",
            rule
        );
    }
}

#[test]
fn raise_reads_nfts_encoding_and_swallows_its_dependencies() {
    // nft's `tcp dport 22 accept`, written out by hand.
    let raws = vec![
        Raw::Meta(x::Meta {
            key: Some(16),
            dreg: Some(1),
            sreg: None,
        }),
        Raw::Cmp(x::Cmp {
            sreg: Some(1),
            op: Some(0),
            data: Some(vec![6]),
        }),
        Raw::Payload(x::Payload {
            dreg: Some(1),
            base: Some(2),
            offset: Some(2),
            len: Some(2),
            ..Default::default()
        }),
        Raw::Cmp(x::Cmp {
            sreg: Some(1),
            op: Some(0),
            data: Some(vec![0, 22]),
        }),
        Raw::Immediate(x::Immediate {
            dreg: Some(0),
            verdict: Some(1),
            ..Default::default()
        }),
    ];
    let stmts = raise_rule(
        &raws,
        &RaiseCtx {
            family: Family::Inet,
            sets: &[],
        },
    );
    assert_eq!(Rule::new(stmts).to_string(), "tcp dport 22 accept");
    // An expression nsfw has no description of stays visible by name.
    let odd = raise_rule(
        &[Raw::Unknown("quota".into())],
        &RaiseCtx {
            family: Family::Ip,
            sets: &[],
        },
    );
    assert!(matches!(&odd[..], [Stmt::Unreadable(t)] if t.contains("quota")));
}

#[test]
fn rendering_is_nft_list() {
    let t = Table {
        dormant: true,
        comment: Some("c".into()),
        sets: vec![Set {
            name: "ports".into(),
            key: vec![Datatype::InetService],
            flags: SetFlags {
                interval: true,
                ..Default::default()
            },
            elements: vec![
                Element::key(vec![Value::Port(443)]),
                Element {
                    key: vec![Value::Port(80)],
                    key_end: Some(vec![Value::Port(95)]),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        chains: vec![Chain::new(
            "pre",
            Some(Base {
                ty: ChainType::Nat,
                hook: Hook::Prerouting,
                priority: prio::DSTNAT + 5,
                policy: Policy::Accept,
            }),
            vec![Rule {
                stmts: vec![
                    Stmt::eq(Expr::Payload(Field::TcpDport), Value::Port(81)),
                    Stmt::Nat(Nat {
                        kind: NatKind::Dnat,
                        family: Some(NatFamily::Ip),
                        to: NatTo::AddrPort(ip("10.0.0.1"), 80),
                        flags: 0,
                    }),
                ],
                comment: Some("publish".into()),
            }],
        )],
        ..Table::new(Family::Inet, "t")
    };
    assert_eq!(
        t.to_string(),
        "table inet t {\n\tflags dormant\n\tcomment \"c\"\n\n\tset ports {\n\t\ttype inet_service\n\t\tflags interval\n\t\telements = { 80-95, 443 }\n\t}\n\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat + 5; policy accept;\n\t\ttcp dport 81 dnat ip to 10.0.0.1:80 comment \"publish\"\n\t}\n}\n"
    );
}

#[test]
fn an_element_only_change_is_two_element_messages() {
    let els = |moved: u16| -> Vec<Element> {
        (0..10_000u16)
            .map(|i| {
                let p = if i == 5 { moved } else { 10_000 + i };
                Element::map(
                    vec![Value::Proto(6), Value::Port(p)],
                    ElemData::Values(vec![ip("10.10.0.2"), Value::Port(80)]),
                )
            })
            .collect()
    };
    let table = |moved| Table {
        sets: vec![Set {
            name: "pub4".into(),
            key: vec![Datatype::InetProto, Datatype::InetService],
            data: Some(SetData::Values(vec![
                Datatype::Ipv4Addr,
                Datatype::InetService,
            ])),
            elements: els(moved),
            ..Default::default()
        }],
        ..Table::new(Family::Inet, "t")
    };
    let have = Dumped::of(table(10_005)).expect("encodes");
    let d = table_diff(&table(30_005), Some(&have));
    assert_eq!(d.lines.len(), 2, "{:?}", d.lines);
    assert!(matches!(
        &d.ops[..],
        [BatchOp::DeleteElements { set: a, .. }, BatchOp::AddElements { set: b, .. }]
            if a.elements.len() == 1 && b.elements.len() == 1
    ));
    let enc = encode(&d.ops).expect("encode");
    assert_eq!(enc.len(), 2);
    assert_eq!(
        enc.types,
        [
            libc::NFT_MSG_DELSETELEM as u16,
            libc::NFT_MSG_NEWSETELEM as u16
        ]
    );
    // Anything else (here a rule) replaces the table in one batch.
    let mut t = table(30_005);
    t.chains
        .push(Chain::new("c", None, vec![Rule::new(vec![])]));
    assert!(matches!(
        &table_diff(&t, Some(&have)).ops[..],
        [BatchOp::ReplaceTable(_)]
    ));
    // Creating it anew sends the 10,000 elements in a few large messages.
    let whole = encode(&[BatchOp::ReplaceTable(t)]).expect("encode");
    assert!(whole.len() < 40, "{} messages", whole.len());
}

#[test]
fn a_counted_set_read_back_keeps_a_zero_counter_per_element_apart_from_its_elements() {
    let counted = |name: &str, counter: bool| Set {
        name: name.into(),
        key: vec![Datatype::Ipv4Addr],
        flags: SetFlags {
            counter,
            ..Default::default()
        },
        elements: vec![
            Element::key(vec![ip("10.0.0.2")]),
            Element::key(vec![ip("10.0.0.3")]),
        ],
        ..Default::default()
    };
    let t = Table {
        sets: vec![counted("c", true), counted("plain", false)],
        ..Table::new(Family::Inet, "t")
    };
    let d = Dumped::of(t.clone()).expect("encodes");
    let c = d.element_counters("c").expect("decodes");
    let keys: Vec<&Vec<Value>> = c.iter().map(|(e, _)| &e.key).collect();
    assert_eq!(keys, [&vec![ip("10.0.0.2")], &vec![ip("10.0.0.3")]]);
    assert!(c.iter().all(|(_, n)| n.packets == 0 && n.bytes == 0));
    assert!(d.element_counters("plain").expect("decodes").is_empty());
    // The counters are no part of the table: it decodes to what was loaded.
    assert_eq!(d.decoded().expect("decodes"), t);
    assert!(t.to_string().contains("10.0.0.2 counter packets 0 bytes 0"));
}
