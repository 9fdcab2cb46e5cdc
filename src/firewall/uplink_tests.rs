//! Unit tests of the uplink chain's sets and cross-table edits.

use super::*;

/// A passthru child carries the uplink's MAC, not its derived one: its rules judge every
/// frame on the uplink by address, whatever the MAC; a bridge-mode child's key on its MAC.
#[test]
fn a_passthru_child_is_judged_whatever_its_mac() {
    for (mode, keyed) in [("passthru", false), ("bridge", true)] {
        let t = crate::testdata::topology(
            "pt",
            &format!(
                "name = 'pt'\n[namespaces.p]\nmacvlan = 'up0'\nmode = '{mode}'\naddress = '192.0.2.31/24'\n"
            ),
        );
        let table = super::table(&t).expect("a table");
        // The first 18 rules are the uplink's (untagged, claims::head, unknown MACs,
        // claims::rules); the child's follow.
        let rules = format!("{:?}", &table.chains[0].rules[18..]);
        assert_eq!(rules.contains("EtherSaddr"), keyed, "{mode}: {rules}");
        assert!(rules.contains("IpSaddr"), "{mode}: {rules}");
    }
}

fn mv(name: &str, ns: &str, addr: &str) -> crate::topology::Topology {
    crate::testdata::topology(
        name,
        &format!("name = '{name}'\n[namespaces.{ns}]\nmacvlan = 'up0'\naddress = '{addr}'\n"),
    )
}

fn macs(t: &nft::Table, set: &str) -> Vec<Mac> {
    let s = t.sets.iter().find(|s| s.name == set).expect("the set");
    s.elements
        .iter()
        .map(|e| match e.key.as_slice() {
            [Value::Ether(m)] => Mac(*m),
            k => panic!("not a MAC: {k:?}"),
        })
        .collect()
}

/// The MACs let out of an uplink: the uplink's, the foreign children's on its unicast
/// list, another topology's children (read from its table), never one of this topology's
/// children carries against the file; and the other topology's chain gains this one's
/// children, then loses them at this one's flush.
#[test]
fn known_macs_are_the_uplink_foreign_and_other_topologies_less_the_spoof() {
    let (a, b) = (mv("a", "x", "192.0.2.31/24"), mv("b", "y", "192.0.2.32/24"));
    let mine = children(&a)["up0"].clone();
    let theirs = children(&b)["up0"].clone();
    let (up, foreign, spoof) = (
        Mac([2, 0, 0, 0, 0, 1]),
        Mac([2, 0, 0, 0, 0, 2]),
        Mac([2, 0, 0, 0, 0, 3]),
    );
    let mut s = NftState::default();
    s.uplinks.insert(
        "up0".into(),
        Seen {
            mac: Some(up),
            unicast: vec![foreign, spoof, mine[0], theirs[0]],
            spoofed: vec![spoof],
            ..Seen::default()
        },
    );
    let tb = table(&b).expect("b's table");
    s.netdev
        .insert(tb.name.clone(), Dumped::of(tb.clone()).expect("dumped"));
    s.tables.push(nft::dump::TableInfo {
        family: Family::Netdev,
        name: tb.name.clone(),
        dormant: false,
        comment: tb.comment.clone(),
        handle: 1,
    });
    let want =
        table_with(&a, &|u, own| (known(&a, u, own, &s), Default::default())).expect("a's table");
    assert_eq!(macs(&want, "children_up0"), mine);
    let mut k = macs(&want, "known_up0");
    k.sort();
    let mut expect = vec![up, foreign, theirs[0]];
    expect.sort();
    assert_eq!(
        k, expect,
        "the spoof and a's own child are not among the others"
    );
    let mut p = NftPlan::default();
    diff(&mut p, &a, &s);
    let added = p.ops.iter().any(|o| {
        matches!(o, nft::batch::Op::AddElements { table, set, .. }
        if *table == tb.name && set.elements == mac_set(String::new(), mine.clone()).elements)
    });
    assert!(added, "b's chain lets a's child out: {:?}", p.ops);
    // a's table as applied, and b's chain with a's child: a's flush takes it back.
    let wa = Dumped::of(want.clone()).expect("dumped");
    s.netdev.insert(want.name.clone(), wa);
    s.tables.push(nft::dump::TableInfo {
        name: want.name.clone(),
        comment: want.comment.clone(),
        ..s.tables[0].clone()
    });
    let mut tb2 = tb;
    tb2.sets
        .iter_mut()
        .filter(|x| x.name == "known_up0")
        .for_each(|x| {
            x.elements = mac_set(String::new(), mine.clone()).elements;
        });
    s.netdev
        .insert(tb2.name.clone(), Dumped::of(tb2.clone()).expect("dumped"));
    let mut p = NftPlan::default();
    flush(&mut p, &s, &|c| c == want.comment.as_deref());
    let deleted = p
        .ops
        .iter()
        .any(|o| matches!(o, nft::batch::Op::DeleteElements { table, .. } if *table == tb2.name));
    assert!(
        deleted,
        "a's flush takes its child out of b's set: {:?}",
        p.ops
    );
}

/// A `netdev nsfw_*` table made by hand (no `nsfw:` comment) is neither read as another
/// topology's children nor edited; a marked one is, and the plan prints its elements as MACs.
#[test]
fn only_tables_marked_as_a_topologys_are_read_and_edited() {
    let (a, b) = (mv("a", "x", "192.0.2.31/24"), mv("b", "y", "192.0.2.32/24"));
    let mine = children(&a)["up0"].clone();
    let planted = Mac([2, 0xde, 0xad, 0xbe, 0xef, 1]);
    let mut s = NftState::default();
    s.uplinks.insert("up0".into(), Seen::default());
    for (name, comment) in [("nsfw_mine", None), ("nsfw_b", Some("nsfw:b".to_string()))] {
        let mut t = table(&b).expect("b's table");
        t.name = name.into();
        t.comment = comment.clone();
        t.sets
            .iter_mut()
            .filter(|x| x.name == "children_up0")
            .for_each(|x| x.elements = mac_set(String::new(), [planted]).elements);
        s.netdev.insert(name.into(), Dumped::of(t).expect("dumped"));
        s.tables.push(nft::dump::TableInfo {
            family: Family::Netdev,
            name: name.into(),
            dormant: false,
            comment,
            handle: 1,
        });
    }
    let mut p = NftPlan::default();
    diff(&mut p, &a, &s);
    let touched: Vec<&str> = p
        .ops
        .iter()
        .filter_map(|o| match o {
            nft::batch::Op::AddElements { table, .. } => Some(table.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(touched, ["nsfw_b"], "only the marked table gains a's child");
    let line = p
        .lines
        .iter()
        .find(|l| l.set.as_deref() == Some("known_up0") && l.table == "netdev nsfw_b")
        .expect("a line");
    assert!(
        format!("{line:?}").contains(&mine[0].to_string()),
        "printed as a MAC: {line:?}"
    );
    // Once b's mark is gone too, its planted child is no longer let out by a's chain.
    s.tables.iter_mut().for_each(|t| t.comment = None);
    let want =
        table_with(&a, &|u, own| (known(&a, u, own, &s), Default::default())).expect("a's table");
    assert!(
        !macs(&want, "known_up0").contains(&planted),
        "an unmarked table's set is not trusted"
    );
}

/// The uplink's chain drops 802.1Q and 802.1ad frames (by the wire's ethertype and by the
/// skb's protocol), first, unless the host has a VLAN link on the uplink.
#[test]
fn tagged_frames_are_dropped_unless_the_host_has_a_vlan_on_the_uplink() {
    let t = mv("a", "x", "192.0.2.31/24");
    let rules = |vlan: bool| -> Vec<String> {
        let seen = Seen {
            vlan,
            ..Seen::default()
        };
        let tb = table_with(&t, &|u, _| (Vec::new(), claims(&t, u, &seen))).expect("a table");
        tb.chains[0].rules.iter().map(|r| r.to_string()).collect()
    };
    let tags = [
        "ether type { 8021q, 8021ad } counter packets 0 bytes 0 drop",
        "meta protocol { 8021q, 8021ad } counter packets 0 bytes 0 drop",
    ];
    let without = rules(false);
    assert_eq!(without[..2], tags, "{without:#?}");
    let with = rules(true);
    assert!(
        with.iter().all(|r| !r.contains("8021q")),
        "a host VLAN's frames leave: {with:#?}"
    );
    assert_eq!(with.len() + 2, without.len());
    // `nsfw show` knows no host VLAN: it prints the rules.
    let shown = table(&t).expect("shown").chains[0].rules[0].to_string();
    assert_eq!(shown, tags[0]);
}
