//! `converge` whole over the fake kernel: apply from nothing, flush, drift repaired, the
//! order of the stages and the batch, the generation shortcut, conflicts and refusals.

use std::os::fd::AsFd;

use nft::batch::Op;

use super::fake::{Fake, Sent};
use super::{Outcome, Target, converge_in};
use crate::plan::Owner;
use crate::plumbing::Link;
use crate::resources::Place;
use crate::state::Record;
use crate::testdata::{
    DUAL, IMPAIRED, MORE, PUBLISH, ROUTED, RULESETS, Scratch, ruleset, topology,
};
use crate::topology::Topology;
mod inflight;
mod ipv6off;
mod macvlan;

/// One run of `converge` for `tg` on `k`, its record in `dir`; the lines it says.
fn run(k: &mut Fake, dir: &Scratch, tg: &Target) -> anyhow::Result<(Outcome, Vec<String>)> {
    let mut said = Vec::new();
    let out = converge_in(k, dir.fd.as_fd(), tg, &mut |l| said.push(l), &mut |_, _| {})?;
    Ok((out, said))
}

/// Applies `t`, which must succeed; what was sent is forgotten.
fn apply(k: &mut Fake, dir: &Scratch, t: &Topology) -> Outcome {
    let (out, _) = run(k, dir, &Target::apply(t)).unwrap_or_else(|e| panic!("apply: {e:#}"));
    k.sent.clear();
    (k.observed, k.observed_net) = (0, 0);
    out
}

/// The host as `t` wants it, from nothing.
fn applied(t: &Topology) -> (Fake, Scratch) {
    let (mut k, dir) = (Fake::new(), Scratch::new());
    apply(&mut k, &dir, t);
    (k, dir)
}

/// `t` once more: nothing to do, nothing sent.
fn assert_in_sync(k: &mut Fake, dir: &Scratch, t: &Topology) {
    let (out, said) = run(k, dir, &Target::apply(t)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((out.changes, said), (0, vec![]), "{}", t.name);
    assert_eq!(k.sent, vec![], "{}", t.name);
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_lab_applied_cold_sends_the_batch_before_the_namespaces_and_is_then_in_sync() {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).expect("apply");
    assert_eq!(out.changes, said.len());
    assert_eq!(
        k.sent_lines(),
        lines(&[
            // The firewall first: its rules name interfaces, so they hold before the links.
            "nft: create table inet nsfw_lab",
            "nft: create table bridge nsfw_lab",
            "+ namespace ns1",
            "+ namespace ns2",
            "+ bridge br0 mtu 1500 mac 02:54:95:74:c4:b3",
            "+ veth veth-ns1 (on br0) ⇄ ns1:eth0 mtu 1500 mac 02:1d:e8:17:8e:31",
            "+ veth veth-ns2 (on br0) ⇄ ns2:eth0 mtu 1500 mac 02:1d:eb:7d:8e:31",
            // Sysctls before addresses, as the executor sets them.
            "~ sysctl net.ipv4.conf.br0.promote_secondaries → 1",
            "~ sysctl net.ipv4.ip_forward: 0 → 1",
            "+ address 10.10.0.1/24 on br0",
            "~ sysctl ns1:net.ipv4.conf.eth0.promote_secondaries → 1",
            "~ sysctl ns1:net.ipv6.conf.eth0.disable_ipv6 → 1",
            "+ address 10.10.0.2/24 on ns1:eth0",
            "+ route ns1: default via 10.10.0.1 dev eth0",
            "~ sysctl ns2:net.ipv4.conf.eth0.promote_secondaries → 1",
            "~ sysctl ns2:net.ipv6.conf.eth0.disable_ipv6 → 1",
            "+ address 10.10.0.3/24 on ns2:eth0",
            "+ route ns2: default via 10.10.0.1 dev eth0",
        ])
    );
    // The record keeps the host's forwarding from before, for the last flush to put back.
    let rec = Record::load(dir.fd.as_fd());
    assert!(rec.pending.values().all(|p| p.is_empty()), "{rec:?}");
    let fwd = &rec.sysctls[crate::compile::IP_FORWARD];
    assert_eq!(fwd.original, "0");
    assert!(fwd.users.contains("lab"));
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}

#[test]
fn every_shipped_ruleset_and_test_file_applies_from_nothing_and_is_then_in_sync() {
    for (name, text) in RULESETS.iter().chain(MORE.iter()) {
        let t = topology(name, text);
        let (mut k, dir) = (Fake::new(), Scratch::new());
        let (out, _) =
            run(&mut k, &dir, &Target::apply(&t)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(out.changes > 0, "{name}");
        k.sent.clear();
        assert_in_sync(&mut k, &dir, &t);
    }
}

#[test]
fn flush_takes_away_everything_apply_made_and_puts_forwarding_back() {
    let t = ruleset("lab");
    let (mut k, dir) = applied(&t);
    let (out, _) = run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("flush");
    assert!(out.changes > 0);
    // Flushing, the batch goes last: after the namespaces it protects.
    assert_eq!(
        k.sent_lines(),
        lines(&[
            "- namespace ns1 (with veth-ns1): no longer in the file",
            "- namespace ns2 (with veth-ns2): no longer in the file",
            "- link br0 (bridge): no longer in the file",
            "~ sysctl net.ipv4.ip_forward: 1 → 0 (its value before nsfw)",
            "nft: delete table inet nsfw_lab",
            "nft: delete table bridge nsfw_lab",
        ])
    );
    assert!(k.net.namespaces.is_empty());
    let links: Vec<&str> = k.net.host.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(links, ["lo"]);
    assert!(k.nft.tables.is_empty() && k.nft.own.is_empty());
    let fwd = &k.net.host.sysctls[crate::compile::IP_FORWARD];
    assert_eq!(fwd.as_deref(), Some("0"));
    assert_eq!(Record::load(dir.fd.as_fd()), Record::default());
    k.sent.clear();
    let (again, _) = run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("again");
    assert_eq!((again.changes, k.sent.len()), (0, 0));
}

#[test]
fn flushing_one_topology_leaves_another_alone_and_flush_all_takes_both() {
    let (lab, seg) = (ruleset("lab"), ruleset("two-segments"));
    let (mut k, dir) = applied(&lab);
    apply(&mut k, &dir, &seg);
    run(&mut k, &dir, &Target::flush(Owner::Topology("lab"))).expect("flush lab");
    let ns: Vec<&String> = k.net.namespaces.keys().collect();
    assert_eq!(ns, ["db", "probe", "web"]);
    let tables: Vec<&String> = k.nft.own.keys().collect();
    assert_eq!(tables, ["nsfw_segments"]);
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &seg);
    run(&mut k, &dir, &Target::flush(Owner::All)).expect("flush --all");
    assert!(k.net.namespaces.is_empty() && k.nft.own.is_empty());
    assert_eq!(k.net.host.links.len(), 1);
}

#[test]
fn drift_is_repaired_with_exactly_the_repair() {
    let t = ruleset("lab");
    let (mut k, dir) = applied(&t);
    let ns1 = Place::Ns("ns1".into());
    k.net.link_mut(&ns1, "eth0").expect("eth0").mtu = 1400;
    k.net.link_mut(&Place::Host, "br0").expect("br0").up = false;
    let ns2 = k.net.node_mut(&Place::Ns("ns2".into())).expect("ns2");
    ns2.addrs.retain(|a| a.net.ip().to_string() != "10.10.0.3");
    ns2.routes.clear();
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert_eq!(
        said,
        lines(&[
            "~ link br0: state down → up",
            "~ link ns1:eth0: mtu 1400 → 1500",
            "+ address 10.10.0.3/24 on ns2:eth0",
            "+ route ns2: default via 10.10.0.1 dev eth0",
            "~ neighbours on ns1:eth0: forgotten (an address or MAC on the segment changes)",
            "~ neighbours on ns2:eth0: forgotten (an address or MAC on the segment changes)",
            "~ neighbours on br0: forgotten (an address or MAC on the segment changes)",
        ])
    );
    assert_eq!(k.sent_lines(), said);
    assert_eq!(out.changes, said.len());
    // Only the plumbing changed: the ruleset was neither sent nor read back.
    assert!(k.sent.iter().all(|s| matches!(s, Sent::Step(_))));
    assert_eq!((k.observed, k.observed_net), (1, 1));
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}

/// Removes the first element of the first set that has one from nsfw's table `name`, as
/// someone with `nft delete element` would (a commit of theirs).
fn delete_an_element(k: &mut Fake, name: &str) -> String {
    let t = k.nft.own[name].decoded().expect("decodes");
    let s = t
        .sets
        .iter()
        .find(|s| !s.elements.is_empty())
        .expect("a set");
    let set = nft::Set {
        elements: s.elements[..1].to_vec(),
        ..s.without_elements()
    };
    let op = Op::DeleteElements {
        family: nft::Family::Inet,
        table: name.into(),
        set,
    };
    use super::kernel::Kernel;
    k.send(None, &[op]).expect("delete");
    k.sent.clear();
    s.name.clone()
}

#[test]
fn an_element_removed_behind_nsfw_is_added_back_alone_and_not_read_back() {
    let t = ruleset("publish");
    let (mut k, dir) = applied(&t);
    let set = delete_an_element(&mut k, "nsfw_publish");
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert_eq!(out.changes, 1, "{said:?}");
    assert_eq!(
        k.sent_lines()[0],
        format!("nft: add 1 element(s) of set nsfw_publish {set}")
    );
    // The generation moved by the batch alone: nothing is read again.
    assert_eq!((k.observed, k.observed_net), (1, 0));
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}

#[test]
fn a_commit_by_someone_else_meanwhile_makes_the_engine_read_nftables_back() {
    let t = ruleset("publish");
    let (mut k, dir) = applied(&t);
    delete_an_element(&mut k, "nsfw_publish");
    k.others_commit = true;
    run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert_eq!((k.observed, k.observed_net), (2, 0));
}

#[test]
fn a_refused_batch_stops_the_run_before_any_namespace_is_made() {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.refuse_batches = true;
    let e = run(&mut k, &dir, &Target::apply(&t))
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("refused"), "{e:#}");
    assert_eq!(
        k.sent_lines(),
        [
            "nft: create table inet nsfw_lab",
            "nft: create table bridge nsfw_lab"
        ]
    );
    assert!(k.net.namespaces.is_empty());
    // The record names what the run was about to make, for the next run.
    let rec = Record::load(dir.fd.as_fd());
    let p = &rec.pending["lab"];
    assert_eq!(p.namespaces.len(), 2);
    assert_eq!(p.links.len(), 3, "{p:?}");
    k.refuse_batches = false;
    apply(&mut k, &dir, &t);
    assert!(Record::load(dir.fd.as_fd()).pending.is_empty());
    assert_in_sync(&mut k, &dir, &t);
}

#[test]
fn a_conflict_changes_nothing() {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.net.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        mtu: 1500,
        ..Link::bare(5, true, false)
    });
    let e = run(&mut k, &dir, &Target::apply(&t))
        .err()
        .expect("conflict");
    let e = format!("{e:#}");
    assert!(
        e.contains("interface br0 already exists on the host and nsfw does not own it"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(
        e.contains("`nsfw apply --adopt FILE`"),
        "the refusal names --adopt: {e}"
    );
    assert_eq!(k.sent, vec![]);
    assert_eq!(Record::load(dir.fd.as_fd()), Record::default());
}

/// An adoption killed after its record was written: the next apply of that topology, with
/// or without --adopt, takes the objects the record names for its own, marks them where they
/// are, and clears the record's entry.
#[test]
fn a_killed_adoption_is_finished_by_the_next_apply() {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.net.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        mtu: 1500,
        ..Link::bare(5, true, false)
    });
    let mut rec = Record::default();
    rec.adopting
        .entry("lab".into())
        .or_default()
        .links
        .insert("br0".into(), String::new());
    rec.save(dir.fd.as_fd()).unwrap();
    run(&mut k, &dir, &Target::apply(&t)).expect("the adoption finishes");
    let br0 = k.net.host.link("br0").expect("br0 kept");
    assert_eq!(br0.index, 5, "the same link, not made again");
    assert_eq!(br0.alias.as_deref(), Some("nsfw:lab"));
    assert!(Record::load(dir.fd.as_fd()).adopting.is_empty());
}

#[test]
fn impairments_need_netem_and_are_made_where_it_is() {
    let t = topology("slow", IMPAIRED);
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.netem = false;
    let e = run(&mut k, &dir, &Target::apply(&t))
        .err()
        .expect("no netem");
    assert!(
        format!("{e:#}").contains("this kernel has no netem qdisc"),
        "{e:#}"
    );
    assert_eq!(k.sent, vec![]);
    k.netem = true;
    apply(&mut k, &dir, &t);
    let far = Place::Ns("far".into());
    assert_eq!(
        k.net.link_mut(&far, "eth0").expect("eth0").qdisc.as_deref(),
        Some("netem")
    );
    assert_in_sync(&mut k, &dir, &t);
}

/// A rate alone needs no netem: both ends get their tbf, a rate added to an impairment puts
/// the tbf below the netem, and a rate taken out leaves the impairment.
#[test]
fn rates_need_no_netem_and_combine_with_an_impairment() {
    let rated = IMPAIRED.replace("latency = \"20ms\"\nloss = \"1%\"", "rate = \"10mbit\"");
    let t = topology("slow", &rated);
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.netem = false;
    apply(&mut k, &dir, &t);
    let far = Place::Ns("far".into());
    let root = |k: &mut Fake, place: &Place, l: &str| {
        let l = k.net.link_mut(place, l).expect("link");
        l.qdisc.clone()
    };
    assert_eq!(root(&mut k, &far, "eth0").as_deref(), Some("tbf"));
    assert_eq!(
        root(&mut k, &Place::Host, "veth-far").as_deref(),
        Some("tbf")
    );
    assert_in_sync(&mut k, &dir, &t);
    k.netem = true;
    let both = topology("slow", &format!("{rated}latency = \"20ms\"\n"));
    apply(&mut k, &dir, &both);
    assert_eq!(root(&mut k, &far, "eth0").as_deref(), Some("netem"));
    assert_in_sync(&mut k, &dir, &both);
    apply(&mut k, &dir, &t);
    assert_eq!(root(&mut k, &far, "eth0").as_deref(), Some("tbf"));
    let none = topology("slow", &rated.replace("rate = \"10mbit\"", ""));
    apply(&mut k, &dir, &none);
    assert_eq!(
        root(&mut k, &Place::Host, "veth-far").as_deref(),
        Some("noqueue")
    );
    assert_in_sync(&mut k, &dir, &none);
}

#[test]
fn a_link_an_interrupted_run_left_unmarked_is_made_again() {
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    // As a run killed between making the bridge and marking it leaves it: the record names
    // it with the MAC it was made with.
    let mac = crate::compile::compile(&t).host.links["br0"]
        .mac
        .expect("mac");
    k.net.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        mtu: 1500,
        mac: Some(mac),
        ..Link::bare(5, true, false)
    });
    let mut rec = Record::default();
    let pending = rec.pending.entry("lab".into()).or_default();
    pending.links.insert("br0".into(), mac.to_string());
    rec.save(dir.fd.as_fd()).expect("save");
    let (_, said) = run(&mut k, &dir, &Target::apply(&t)).expect("finish");
    assert_eq!(
        said[0],
        "- link br0 (bridge): left unmarked by an interrupted run"
    );
    assert!(said.contains(&"+ bridge br0 mtu 1500 mac 02:54:95:74:c4:b3".to_string()));
    assert!(Record::load(dir.fd.as_fd()).pending.is_empty());
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}

#[test]
fn published_udp_ports_that_move_have_their_flows_forgotten_right_after_the_batch() {
    let t = topology("pub", PUBLISH);
    let (mut k, dir) = applied(&t);
    let moved = topology("pub", &PUBLISH.replace("5353:53/udp", "5354:53/udp"));
    run(&mut k, &dir, &Target::apply(&moved)).expect("apply");
    let sent = k.sent_lines();
    assert_eq!(
        sent,
        lines(&[
            "nft: delete 1 element(s) of set nsfw_pub publish4",
            "nft: delete 1 element(s) of set nsfw_pub publish6",
            "nft: add 1 element(s) of set nsfw_pub publish4",
            "nft: add 1 element(s) of set nsfw_pub publish6",
            // Both families' entries of the port that moved, and of the port now taken.
            "conntrack: forget 2 moved, 2 taken",
        ])
    );
}

#[test]
fn a_router_namespace_gets_its_table_in_a_batch_of_its_own_after_the_plumbing() {
    let t = topology("routed", ROUTED);
    let (mut k, dir) = (Fake::new(), Scratch::new());
    run(&mut k, &dir, &Target::apply(&t)).expect("apply");
    let sent = k.sent_lines();
    let last = sent.last().expect("sent");
    assert_eq!(last, "nft in edge: create table inet nsfw_routed");
    assert!(k.ns_tables["edge"].contains_key("nsfw_routed"));
    // Taken away behind nsfw's back, it alone is put back.
    k.ns_tables.clear();
    k.sent.clear();
    let (out, _) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert_eq!(k.sent_lines(), [last.as_str()]);
    assert!(out.changes > 0);
}

#[test]
fn dual_stack_namespaces_get_their_link_local_addresses_from_nsfw() {
    let t = topology("dual", DUAL);
    let (mut k, _dir) = applied(&t);
    let ns1 = k.net.node_mut(&Place::Ns("ns1".into())).expect("ns1");
    let mut v6: Vec<String> = ns1
        .addrs
        .iter()
        .filter(|a| a.net.is_ipv6())
        .map(|a| a.net.to_string())
        .collect();
    v6.sort();
    assert_eq!(v6.len(), 2, "{v6:?}");
    assert!(
        v6[0].starts_with("fd00:10::2/64") && v6[1].starts_with("fe80::"),
        "{v6:?}"
    );
}

/// Children of a host uplink and the host's shim: made from nothing, in sync after; a child
/// deleted behind nsfw's back made again alone; flush leaves the uplink and nothing else.
#[test]
fn macvlan_children_converge_and_a_deleted_child_is_made_again_alone() {
    let t = topology(
        "mv",
        r#"
name = "mv"
[namespaces.m1]
macvlan = "up0"
address = "192.0.2.11/24"
host_shim = true
[namespaces.m2]
macvtap = "up0"
mode = "private"
address = "192.0.2.12/24"
"#,
    );
    let (mut k, dir) = (Fake::new(), Scratch::new());
    let up = Link {
        name: "up0".into(),
        mtu: 1500,
        ..Link::bare(90, true, false)
    };
    k.net.host.links.push(up);
    apply(&mut k, &dir, &t);
    assert_in_sync(&mut k, &dir, &t);
    let node = &mut k.net.namespaces.get_mut("m1").expect("m1").node;
    node.links.retain(|l| l.name != "eth0");
    let (out, said) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert!(out.changes > 0);
    assert!(
        said.iter()
            .any(|l| l.contains("+ macvlan m1:eth0 on up0 mode bridge")),
        "{said:#?}"
    );
    assert!(!said.iter().any(|l| l.contains("m2")), "{said:#?}");
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
    run(&mut k, &dir, &Target::flush(Owner::Topology("mv"))).expect("flush");
    let links: Vec<&str> = k.net.host.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(links, ["lo", "up0"]);
}

/// `--adopt` with the guide's MASQUERADE in iptables-legacy: removed right after the batch;
/// a run stopped between the two (the removal fails here) leaves the record saying so, and
/// the next plain apply removes it.
#[test]
fn hand_rules_in_iptables_legacy_go_right_after_the_batch_even_if_the_run_stops_between() {
    use crate::import::rules::{At, Found, Meaning};
    let t = ruleset("lab");
    let (mut k, dir) = (Fake::new(), Scratch::new());
    k.hand.legacy.found.push(Found {
        at: At {
            family: nft::Family::Ip,
            table: "nat".into(),
            chain: "POSTROUTING".into(),
            handle: 1,
            legacy: Some(vec![1, 2, 3]),
        },
        text: "ip saddr 10.10.0.0/24 masquerade".into(),
        meaning: Some(Meaning::Masquerade {
            subnet: "10.10.0.0/24".parse().unwrap(),
            uplink: None,
            not_out: None,
            snat: None,
        }),
    });
    k.refuse_legacy = true;
    let adopt = Target {
        adopt: true,
        ..Target::apply(&t)
    };
    assert!(run(&mut k, &dir, &adopt).is_err(), "the removal fails");
    let batch = k
        .sent
        .iter()
        .position(|s| matches!(s, Sent::Batch(None, _)));
    let legacy = k.sent.iter().position(|s| matches!(s, Sent::Legacy(_)));
    assert!(batch.is_some() && batch < legacy, "{:?}", k.sent);
    let rec = Record::load(dir.fd.as_fd());
    assert!(rec.adopting["lab"].legacy_rules, "{rec:?}");
    assert_eq!(k.hand.legacy.found.len(), 1);
    k.refuse_legacy = false;
    run(&mut k, &dir, &Target::apply(&t)).expect("the next apply finishes");
    assert!(k.hand.legacy.found.is_empty(), "removed");
    assert!(Record::load(dir.fd.as_fd()).adopting.is_empty());
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}
