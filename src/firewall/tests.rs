//! The firewall's pure half: the rendered table of every shipped ruleset as `nsfw show`
//! printed it before (tests/golden/show), and the nft part of a plan against rulesets held
//! in memory as a dump would give them.

use nft::batch::Op;
use nft::dump::{ChainInfo, TableInfo};
use nft::{Base, ChainType, Family, Hook, Policy};

use super::{NftState, diff, flush, prepare, table};
use crate::owner::table as table_name;
use crate::testdata::{
    DUAL, MORE, POLICY, PUBLISH, ROUTED, RULESETS, golden, read_back, ruleset, topology,
};
use crate::topology::Topology;

/// The host's ruleset holding `t`'s table, as nsfw loads it (br_netfilter loaded).
fn holding(t: &Topology) -> NftState {
    let want = table(t);
    let mut s = NftState {
        br_nf: Some(false),
        ..Default::default()
    };
    s.tables.push(TableInfo {
        family: Family::Inet,
        name: want.name.clone(),
        dormant: false,
        comment: want.comment.clone(),
        handle: 1,
    });
    s.own
        .insert(want.name.clone(), read_back(&want).expect("reads back"));
    // And its port security's bridge table.
    if let Some(ports) = super::identity::table(t) {
        s.tables.push(TableInfo {
            family: Family::Bridge,
            name: ports.name.clone(),
            dormant: false,
            comment: ports.comment.clone(),
            handle: 9,
        });
        s.bridge
            .insert(ports.name.clone(), read_back(&ports).expect("reads back"));
    }
    s
}

#[test]
fn every_shipped_ruleset_renders_as_nsfw_show_printed_it() {
    for (name, text) in RULESETS {
        let t = table(&topology(name, text));
        golden(&format!("show/{name}.nft"), &t.to_string());
    }
}

#[test]
fn routed_dual_stack_published_policy_and_impaired_files_render_to_their_golden_tables() {
    for (name, text) in MORE {
        let t = table(&topology(name, text));
        golden(&format!("show/{name}.nft"), &t.to_string());
    }
}

#[test]
fn port_security_tables_render_as_before() {
    // The skeleton is the same for every file: a golden each for a plain segment, a
    // dual-stack one and one with a router (its `routed` sets).
    let files = [
        ruleset("lab"),
        topology("dual", DUAL),
        topology("routed", ROUTED),
    ];
    for t in &files {
        let name = &t.name;
        let t = super::identity::table(t).expect("ports");
        golden(&format!("show/{name}-ports.nft"), &t.to_string());
    }
}

#[test]
fn against_nothing_the_table_is_created_whole() {
    let t = ruleset("lab");
    let p = diff(&t, &NftState::default(), prepare(&t)).expect("diff");
    let ports = super::identity::table(&t).expect("a namespace on a bridge");
    assert_eq!(p.ops, [Op::CreateTable(table(&t)), Op::CreateTable(ports)]);
    assert_eq!(p.lines[0].to_string(), "+ nft table inet nsfw_lab");
    assert!(
        p.lines
            .iter()
            .any(|l| l.to_string() == "+ nft table bridge nsfw_lab"),
        "{:?}",
        p.lines
    );
    assert!(p.conflicts.is_empty() && p.ns_ops.is_empty());
}

#[test]
fn against_its_own_table_read_back_nothing_changes_for_any_file() {
    for (name, text) in RULESETS.iter().chain(MORE.iter()) {
        let t = topology(name, text);
        let p = diff(&t, &holding(&t), prepare(&t)).expect("diff");
        let lines: Vec<String> = p.lines.iter().map(|l| l.to_string()).collect();
        // A router namespace's table is another ruleset's (see the routed test).
        assert!(p.ops.is_empty(), "{name}: {lines:?}");
        assert!(p.conflicts.is_empty(), "{name}: {:?}", p.conflicts);
    }
}

#[test]
fn a_table_of_the_name_someone_else_owns_is_a_conflict() {
    let t = ruleset("lab");
    let mut s = holding(&t);
    s.tables[0].comment = Some("made by hand".into());
    let p = diff(&t, &s, prepare(&t)).expect("diff");
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    assert!(
        p.conflicts[0].contains("table inet nsfw_lab exists and nsfw does not own it"),
        "{}",
        p.conflicts[0]
    );
    assert!(p.ops.is_empty());
}

#[test]
fn a_namespace_gone_takes_only_its_elements_and_a_rule_changed_replaces_the_table() {
    let two = topology("pub", PUBLISH);
    let one = topology(
        "pub",
        &PUBLISH[..PUBLISH.find("[namespaces.dns]").expect("dns")],
    );
    let p = diff(&one, &holding(&two), prepare(&one)).expect("diff");
    assert!(!p.ops.is_empty());
    assert!(
        p.ops.iter().any(|o| matches!(
            o,
            Op::DeleteElements {
                family: Family::Bridge,
                ..
            }
        )),
        "the namespace's port security elements go too: {:?}",
        p.ops
    );
    assert!(
        p.ops.iter().all(|o| matches!(o, Op::DeleteElements { .. })),
        "{:?}",
        p.ops
    );
    // Back again: added, and nothing else.
    let p = diff(&two, &holding(&one), prepare(&two)).expect("diff");
    assert!(
        p.ops.iter().all(|o| matches!(o, Op::AddElements { .. })),
        "{:?}",
        p.ops
    );
    // Without NAT the table has other rules: it is replaced in one batch.
    let plain = topology("pub", &PUBLISH.replace("masquerade = true\n", ""));
    let p = diff(&plain, &holding(&two), prepare(&plain)).expect("diff");
    assert!(matches!(&p.ops[..], [Op::ReplaceTable(_)]), "{:?}", p.ops);
    // Port security's skeleton does not depend on the file: only elements change there.
}

#[test]
fn a_router_namespace_that_masquerades_gets_a_table_of_its_own() {
    let t = topology("routed", ROUTED);
    let p = diff(&t, &NftState::default(), prepare(&t)).expect("diff");
    let [(ns, ops)] = &p.ns_ops[..] else {
        panic!("{:?}", p.ns_ops)
    };
    assert_eq!(ns, "edge");
    let [Op::CreateTable(inside)] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!(inside.name, table_name("routed"));
    golden("show/routed-edge.nft", &inside.to_string());
    let line = p.lines.iter().find(|l| l.table.starts_with("edge:"));
    assert!(line.is_some(), "{:?}", p.lines);
}

/// iptables-nft's `ip filter` FORWARD with a drop policy, as Docker leaves it.
fn docker(s: &mut NftState) {
    s.tables.push(TableInfo {
        family: Family::Ip,
        name: "filter".into(),
        dormant: false,
        comment: None,
        handle: 2,
    });
    s.ipt_forward = Some(ChainInfo {
        table: "filter".into(),
        name: "FORWARD".into(),
        base: Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Forward,
            priority: 0,
            policy: Policy::Drop,
        }),
        odd_base: None,
        comment: None,
        handle: 3,
    });
}

#[test]
fn a_forward_policy_of_drop_gets_scoped_accepts_on_top_and_flush_takes_them() {
    let t = ruleset("lab");
    let mut s = holding(&t);
    docker(&mut s);
    let p = diff(&t, &s, prepare(&t)).expect("diff");
    let lines: Vec<String> = p.lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        lines,
        [
            "+ nft rule ip filter FORWARD: oifname \"br0\" accept comment \"nsfw:lab\"",
            "+ nft rule ip filter FORWARD: iifname \"br0\" accept comment \"nsfw:lab\"",
        ]
    );
    // Each goes in first, the last inserted ending on top: in reverse.
    let chains: Vec<(&str, bool)> = p
        .ops
        .iter()
        .map(|o| match o {
            Op::AddRule { chain, first, .. } => (chain.as_str(), *first),
            _ => ("?", false),
        })
        .collect();
    assert_eq!(chains, [("FORWARD", true), ("FORWARD", true)]);
    // Once in place (as the kernel reads them back), nothing more; flush takes them.
    for (i, op) in p.ops.iter().rev().enumerate() {
        if let Op::AddRule { chain, rule, .. } = op {
            s.placed.push(nft::dump::KRule {
                chain: chain.clone(),
                handle: 10 + i as u64,
                rule: nft::diff::canonical_rule(rule, Family::Ip, &[]),
            });
        }
    }
    assert_eq!(diff(&t, &s, prepare(&t)).expect("diff").ops, []);
    let gone: Vec<String> = flush(Some(&["lab".into()]), &s)
        .lines
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        gone,
        [
            "- nft table inet nsfw_lab",
            "- nft table bridge nsfw_lab",
            "- nft rule ip filter FORWARD: oifname \"br0\" accept comment \"nsfw:lab\" (handle 10)",
            "- nft rule ip filter FORWARD: iifname \"br0\" accept comment \"nsfw:lab\" (handle 11)",
        ]
    );
}

#[test]
fn flush_deletes_the_owners_tables_and_nothing_of_anyone_else() {
    let (lab, seg) = (ruleset("lab"), ruleset("two-segments"));
    let mut s = holding(&lab);
    let other = holding(&seg);
    s.tables.extend(other.tables);
    s.own.extend(other.own);
    let p = flush(Some(&["lab".to_string()]), &s);
    let del = |family| Op::DeleteTable {
        family,
        name: "nsfw_lab".into(),
    };
    assert_eq!(p.ops, [del(Family::Inet), del(Family::Bridge)]);
    let all = flush(None, &s);
    assert_eq!(all.ops.len(), 4);
}

#[test]
fn a_host_port_another_nsfw_table_publishes_is_a_conflict() {
    let (publish, other) = (ruleset("publish"), topology("pub", PUBLISH));
    let p = diff(&other, &holding(&publish), prepare(&other)).expect("diff");
    assert!(
        p.conflicts.iter().any(|c| c.contains("8080")),
        "{:?}",
        p.conflicts
    );
}

#[test]
fn a_policy_within_a_bridge_without_br_netfilter_is_one_conflict() {
    let text = POLICY.replace("br_netfilter = \"on\"\n", "");
    let t = topology("pol", &text);
    let p = diff(&t, &NftState::default(), prepare(&t)).expect("diff");
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    assert!(p.conflicts[0].contains("needs the br_netfilter module"));
    let loaded = NftState {
        br_nf: Some(false),
        ..Default::default()
    };
    let p = diff(&t, &loaded, prepare(&t)).expect("diff");
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
}

/// A macvlan child's namespace holds its guard (`guard`): made when missing, left alone when
/// it is as the file says, put back whole when a rule of it is gone.
#[test]
fn a_macvlan_childs_namespace_gets_its_guard_and_drift_is_repaired() {
    let t = topology(
        "mg",
        "name = 'mg'\n[namespaces.m1]\nmacvlan = 'up0'\naddress = '192.0.2.11/24'\naddress6 = '2001:db8::11/64'\ngateway = '192.0.2.1'\n",
    );
    let p = diff(&t, &NftState::default(), prepare(&t)).expect("diff");
    let [(ns, ops)] = &p.ns_ops[..] else {
        panic!("{:?}", p.ns_ops)
    };
    assert_eq!(ns, "m1");
    let [Op::CreateTable(guard)] = &ops[..] else {
        panic!("{ops:?}")
    };
    assert_eq!(guard.family, Family::Netdev);
    golden("show/macvlan-guard.nft", &guard.to_string());
    assert!(p.lines.iter().any(|l| l.table == "m1:netdev nsfw_mg"));
    // As the file says: nothing to do inside.
    let mut s = NftState::default();
    let have = read_back(guard).expect("reads back");
    s.ns_guards.insert("m1".into(), Some(have));
    let p = diff(&t, &s, prepare(&t)).expect("diff");
    assert!(p.ns_ops.is_empty(), "{:?}", p.ns_ops);
    // A rule deleted by hand.
    let mut cut = guard.clone();
    cut.chains[0].rules.remove(4);
    s.ns_guards
        .insert("m1".into(), Some(read_back(&cut).expect("reads back")));
    let p = diff(&t, &s, prepare(&t)).expect("diff");
    assert_eq!(p.ns_ops.len(), 1, "{:?}", p.ns_ops);
}
