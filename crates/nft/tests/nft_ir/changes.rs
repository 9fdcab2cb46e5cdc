//! Foreign rules, restored rulesets, element-only changes and every op, in the kernel.

use crate::common::Sandbox;
use crate::*;
use nft::batch::{Op as BatchOp, encode};
use nft::diff::table_diff;
use nft::socket::NftSocket;
use nft::*;

/// A table publishing `n` ports through a dnat map, and an interval set of ranges.
fn published(n: u16, moved: Option<(u16, u16)>, ranges: &[(&str, &str)]) -> Table {
    let els = (0..n)
        .map(|i| {
            let p = 10000 + i;
            let p = match moved {
                Some((from, to)) if from == p => to,
                _ => p,
            };
            Element::map(
                vec![Value::Proto(6), Value::Port(p)],
                ElemData::Values(vec![ip("10.10.0.2"), Value::Port(p)]),
            )
        })
        .collect();
    let key = Expr::Concat(vec![Expr::Meta(MetaKey::L4proto), pl(Field::ThDport)]);
    Table {
        sets: vec![
            Set {
                data: Some(SetData::Values(vec![
                    Datatype::Ipv4Addr,
                    Datatype::InetService,
                ])),
                ..set(
                    "pub4",
                    vec![Datatype::InetProto, Datatype::InetService],
                    els,
                )
            },
            Set {
                flags: SetFlags {
                    interval: true,
                    ..Default::default()
                },
                ..set(
                    "blocked",
                    vec![Datatype::Ipv4Addr],
                    ranges.iter().map(|(a, b)| range(ip(a), ip(b))).collect(),
                )
            },
        ],
        chains: vec![Chain::new(
            "pre",
            base(ChainType::Nat, Hook::Prerouting, prio::DSTNAT),
            vec![
                r(vec![
                    m(pl(Field::IpSaddr), EQ, Rhs::Set(named("blocked"))),
                    drop_(),
                ]),
                r(vec![Stmt::Nat(Nat {
                    kind: NatKind::Dnat,
                    family: Some(NatFamily::Ip),
                    to: NatTo::Map(key, named("pub4")),
                    flags: 0,
                })]),
            ],
        )],
        ..Table::new(Family::Inet, "pub")
    }
}

#[test]
fn an_element_only_change_sends_only_those_elements() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = published(
        10_000,
        None,
        &[("10.0.0.0", "10.255.255.255"), ("192.0.2.0", "192.0.2.9")],
    );
    apply(&sb, vec![BatchOp::ReplaceTable(before.clone())]);
    let have = read(&sb, Family::Inet, "pub");
    let pub4 = have
        .set("pub4")
        .expect("pub4 is there")
        .expect("pub4 decodes");
    assert_eq!(pub4.elements.len(), 10_000);
    assert!(
        table_diff(&before, Some(&have)).ops.is_empty(),
        "fresh table not in sync"
    );

    // One published port moves; one blocked range goes, another comes.
    let after = published(
        10_000,
        Some((10_005, 30_005)),
        &[
            ("10.0.0.0", "10.255.255.255"),
            ("198.51.100.0", "198.51.100.255"),
        ],
    );
    let d = table_diff(&after, Some(&have));
    let text: Vec<String> = d.lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        text,
        [
            "- nft element inet pub pub4: tcp . 10005 : 10.10.0.2 . 10005",
            "+ nft element inet pub pub4: tcp . 30005 : 10.10.0.2 . 30005",
            "- nft element inet pub blocked: 192.0.2.0-192.0.2.9",
            "+ nft element inet pub blocked: 198.51.100.0/24",
        ]
    );
    let enc = encode(&d.ops).expect("encode");
    let del = libc::NFT_MSG_DELSETELEM as u16;
    let add = libc::NFT_MSG_NEWSETELEM as u16;
    assert_eq!(enc.types, [del, del, add, add], "{:?}", d.ops);
    apply(&sb, d.ops);
    let now = read(&sb, Family::Inet, "pub");
    let d = table_diff(&after, Some(&now));
    assert!(d.ops.is_empty() && d.lines.is_empty(), "{:?}", d.lines);
    assert!(
        sb.ok("nft list set inet pub blocked")
            .contains("elements = { 10.0.0.0/8, 198.51.100.0/24 }")
    );
}

fn try_apply(sb: &Sandbox, ops: Vec<BatchOp>) -> Result<(), String> {
    in_sandbox(sb, move || {
        let enc = encode(&ops).map_err(|e| format!("{e:#}"))?;
        NftSocket::open()
            .map_err(|e| format!("{e:#}"))?
            .send(&enc)
            .map_err(|e| format!("{e:#}"))
    })
}

/// The family and name of the table the ops work on.
const FAM: Family = Family::Ip;
const OPS: &str = "ops";

/// `tcp dport 22 accept`, the rule the table starts with in its input chain `c`.
fn tcp22() -> Rule {
    r(vec![
        m(pl(Field::TcpDport), EQ, v(Value::Port(22))),
        accept(),
    ])
}

/// Each op in turn on one table, each checked by reading the table back (or by `nft`).
#[test]
fn every_op_does_what_it_says() {
    let Some(sb) = Sandbox::or_skip() else { return };
    add_table(&sb);
    add_a_set_and_rules_looking_it_up(&sb);
    delete_a_rule_by_handle(&sb);
    add_flush_and_delete_chains_and_delete_a_set(&sb);
    a_rejected_batch_names_its_message(&sb);
    delete_a_table_there_or_not(&sb);
}

fn add_table(sb: &Sandbox) {
    let t = Table {
        comment: Some("ops".into()),
        chains: vec![Chain::new(
            "c",
            base(ChainType::Filter, Hook::Input, prio::FILTER),
            vec![tcp22()],
        )],
        ..Table::new(FAM, OPS)
    };
    apply(sb, vec![BatchOp::AddTable(t.clone())]);
    assert_same("add table", &t, &decoded(&read(sb, FAM, OPS)));
}

/// A set and a rule looking it up in one batch: the rule converts the mark to network order
/// because the batch knows the set is an interval set. A rule added first goes to the top.
fn add_a_set_and_rules_looking_it_up(sb: &Sandbox) {
    let (fam, tname) = (FAM, OPS.to_string());
    let mark_set = Set {
        flags: SetFlags {
            interval: true,
            ..Default::default()
        },
        ..set(
            "mi",
            vec![Datatype::Mark],
            vec![range(Value::Mark(0x10), Value::Mark(0x1f))],
        )
    };
    let lookup = r(vec![
        m(meta(MetaKey::Mark), EQ, Rhs::Set(named("mi"))),
        accept(),
    ]);
    let first = r(vec![Stmt::Counter(Counter::default())]);
    apply(
        sb,
        vec![
            BatchOp::AddSet {
                family: fam,
                table: tname.clone(),
                set: mark_set.clone(),
            },
            BatchOp::AddRule {
                family: fam,
                table: tname.clone(),
                chain: "c".into(),
                rule: lookup.clone(),
                first: false,
            },
            BatchOp::AddRule {
                family: fam,
                table: tname.clone(),
                chain: "c".into(),
                rule: first.clone(),
                first: true,
            },
        ],
    );
    let d = read(sb, fam, &tname);
    assert_eq!(
        d.structure().chains()[0].rules,
        [first, tcp22(), lookup.clone()]
    );
    assert!(
        sb.ok("nft --debug=netlink list chain ip ops c")
            .contains("byteorder")
    );
}

/// The middle rule of three, deleted by its handle.
fn delete_a_rule_by_handle(sb: &Sandbox) {
    let (fam, tname) = (FAM, OPS.to_string());
    let d = read(sb, fam, &tname);
    let handle = d.handles["c"][1];
    apply(
        sb,
        vec![BatchOp::DeleteRule {
            family: fam,
            table: tname.clone(),
            chain: "c".into(),
            handle,
            what: "test".into(),
        }],
    );
    assert_eq!(read(sb, fam, &tname).structure().chains()[0].rules.len(), 2);
}

/// A regular chain with a rule, then flushed (with `c`), then deleted; the set deleted too.
fn add_flush_and_delete_chains_and_delete_a_set(sb: &Sandbox) {
    let (fam, tname) = (FAM, OPS.to_string());
    let other = Chain::new("other", None, vec![r(vec![drop_()])]);
    apply(
        sb,
        vec![BatchOp::AddChain {
            family: fam,
            table: tname.clone(),
            chain: other.clone(),
        }],
    );
    assert_eq!(
        read(sb, fam, &tname).structure().chain("other"),
        Some(&other)
    );
    apply(
        sb,
        vec![
            BatchOp::FlushChain {
                family: fam,
                table: tname.clone(),
                name: "other".into(),
            },
            BatchOp::FlushChain {
                family: fam,
                table: tname.clone(),
                name: "c".into(),
            },
        ],
    );
    let d = read(sb, fam, &tname);
    assert!(
        d.structure()
            .chain("other")
            .is_some_and(|c| c.rules.is_empty())
    );
    apply(
        sb,
        vec![
            BatchOp::DeleteChain {
                family: fam,
                table: tname.clone(),
                name: "other".into(),
            },
            BatchOp::DeleteSet {
                family: fam,
                table: tname.clone(),
                name: "mi".into(),
            },
        ],
    );
    let d = read(sb, fam, &tname);
    let s = d.structure();
    assert!(s.chain("other").is_none() && s.set_names().next().is_none());
}

/// A rejected batch names the message it failed at, and changes nothing.
fn a_rejected_batch_names_its_message(sb: &Sandbox) {
    let (fam, tname) = (FAM, OPS.to_string());
    let err = try_apply(
        sb,
        vec![
            BatchOp::AddRule {
                family: fam,
                table: tname.clone(),
                chain: "c".into(),
                rule: r(vec![accept()]),
                first: false,
            },
            BatchOp::AddRule {
                family: fam,
                table: tname.clone(),
                chain: "c".into(),
                rule: r(vec![Stmt::Verdict(Verdict::Jump("nowhere".into()))]),
                first: false,
            },
        ],
    )
    .expect_err("a jump to a missing chain");
    assert!(
        err.contains("table ip ops chain c rule `jump nowhere`") && err.contains("nothing"),
        "{err}"
    );
    assert!(
        read(sb, fam, &tname).structure().chains()[0]
            .rules
            .is_empty()
    );
}

/// Deleting a table works whether it is there or not.
fn delete_a_table_there_or_not(sb: &Sandbox) {
    let (fam, tname) = (FAM, OPS.to_string());
    for _ in 0..2 {
        apply(
            sb,
            vec![BatchOp::DeleteTable {
                family: fam,
                name: tname.clone(),
            }],
        );
    }
    assert!(!sb.ok("nft list tables").contains("ops"));
}

/// What apply's cheap verification relies on: every committed batch adds one to the ruleset's
/// generation, whoever sends it, and reading changes nothing.
#[test]
fn each_commit_adds_one_to_the_ruleset_generation() {
    use nft::dump::next_generation;
    let Some(sb) = Sandbox::or_skip() else { return };
    let gen_of = |sb: &Sandbox| {
        in_sandbox(sb, || {
            NftSocket::open()
                .expect("socket")
                .generation()
                .expect("generation")
        })
    };
    let g0 = gen_of(&sb);
    let t = Table::new(Family::Inet, "g");
    apply(&sb, vec![BatchOp::ReplaceTable(t.clone())]);
    let g1 = gen_of(&sb);
    assert_eq!(g1, next_generation(g0));
    let _ = read(&sb, Family::Inet, "g");
    assert_eq!(gen_of(&sb), g1, "reading committed something");
    // A batch of several messages is one commit.
    apply(
        &sb,
        vec![
            BatchOp::ReplaceTable(t),
            BatchOp::AddTable(Table::new(Family::Ip, "h")),
        ],
    );
    assert_eq!(gen_of(&sb), next_generation(g1));
    // Another program's commit counts the same.
    sb.ok("nft add table ip other");
    assert_eq!(gen_of(&sb), next_generation(next_generation(g1)));
    // A rejected batch commits nothing.
    assert!(
        try_apply(
            &sb,
            vec![BatchOp::DeleteRule {
                family: Family::Ip,
                table: "h".into(),
                chain: "absent".into(),
                handle: 4242,
                what: String::new(),
            }],
        )
        .is_err()
    );
    assert_eq!(gen_of(&sb), next_generation(next_generation(g1)));
}
