//! `plan::plan` against observations written out by hand: an empty host, a host in sync with
//! a one-namespace file, and each kind of drift from it; `Plan::to_json`'s schema.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::{Owner, Plan, plan};
use crate::compile::compile;
use crate::plumbing::{Addr, FileObs, Link, NodeObs, NsObs, Observed, Route};
use crate::resources::Desired;
use crate::state::Record;
use crate::testdata::topology;

pub(super) const ONE: &str = r#"
name = "one"
[bridges.br0]
address = "10.10.0.1/24"
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
"#;

/// Interface indexes of the fixture: the host's bridge and veth end, the namespace's end.
const BR0: u32 = 10;
pub(super) const VETH: u32 = 11;
const ETH0: u32 = 21;

pub(super) fn desired(text: &str) -> Desired {
    compile(&topology("one", text))
}

pub(super) fn net(s: &str) -> IpNetwork {
    s.parse().expect("network")
}

pub(super) fn link(index: u32, name: &str, kind: Option<&str>, alias: Option<&str>) -> Link {
    Link {
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu: if name == "lo" { 65536 } else { 1500 },
        alias: alias.map(str::to_string),
        ..Link::bare(index, true, false)
    }
}

pub(super) fn addr(index: u32, n: &str) -> Addr {
    Addr {
        index,
        net: net(n),
        flags: 0x80,
        scope: 0,
        valid: u32::MAX,
        preferred: u32::MAX,
        brd: None,
        metric: 0,
    }
}

/// A unicast route of the main table: the kernel's for a subnet, or nsfw's (proto 110).
pub(super) fn route(dst: &str, via: Option<&str>, oif: u32, kernel: bool) -> Route {
    Route {
        dst: net(dst),
        gateway: via.map(|v| v.parse::<IpAddr>().expect("address")),
        oif: Some(oif),
        kernel,
        ours: !kernel,
        metric: 0,
        kind: 1,
        table: 254,
        proto: if kernel { 2 } else { 110 },
        scope: if via.is_some() { 0 } else { 253 },
        flags: 0,
        prefsrc: None,
        metrics: [0; 18],
    }
}

fn sysctls(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, Option<String>> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// A host with nothing on it but `lo`.
fn empty() -> Observed {
    let mut o = Observed::default();
    o.host.links.push(link(1, "lo", None, None));
    o
}

/// The host exactly as ONE wants it, as the kernel reads it back.
pub(super) fn in_sync(d: &Desired) -> Observed {
    let mark = Some(d.mark.as_str());
    let mut o = empty();
    let mut br0 = link(BR0, "br0", Some("bridge"), mark);
    br0.mac = d.host.links["br0"].mac;
    let mut veth = link(VETH, "veth-ns1", Some("veth"), mark);
    (veth.mac, veth.master, veth.peer_index) =
        (d.host.links["veth-ns1"].mac, Some(BR0), Some(ETH0));
    o.host.links.extend([br0, veth]);
    o.host.addrs.push(addr(BR0, "10.10.0.1/24"));
    o.host.routes.push(route("10.10.0.0/24", None, BR0, true));
    o.host.sysctls = sysctls(&[
        ("net.ipv4.conf.br0.promote_secondaries", "1"),
        ("net.ipv4.conf.br0.route_localnet", "0"),
    ]);
    let mut eth0 = link(ETH0, "eth0", Some("veth"), None);
    (eth0.mac, eth0.peer_index) = (d.namespaces["ns1"].links["eth0"].mac, Some(VETH));
    let node = NodeObs {
        links: vec![link(1, "lo", None, mark), eth0],
        addrs: vec![addr(ETH0, "10.10.0.2/24")],
        routes: vec![
            route("10.10.0.0/24", None, ETH0, true),
            route("0.0.0.0/0", Some("10.10.0.1"), ETH0, false),
        ],
        sysctls: sysctls(&[
            ("net.ipv4.conf.eth0.promote_secondaries", "1"),
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv6.conf.eth0.disable_ipv6", "1"),
        ]),
        ..Default::default()
    };
    let ns1 = NsObs {
        owner: Some(d.mark.clone()),
        node,
        id: None,
    };
    o.namespaces.insert("ns1".into(), ns1);
    o
}

/// The steps of the plan as `nsfw diff` prints them, with its conflicts.
pub(super) fn steps(p: &Plan) -> Vec<String> {
    let mut v: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
    v.extend(p.conflicts.iter().map(|c| format!("conflict: {c}")));
    v
}

pub(super) fn plan_one(o: &Observed) -> Vec<String> {
    let d = desired(ONE);
    steps(&plan(&d, o, &Record::default(), Owner::Topology("one")))
}

fn ns1(o: &mut Observed) -> &mut NodeObs {
    &mut o.namespaces.get_mut("ns1").expect("ns1").node
}

#[test]
fn from_an_empty_host_every_step_comes_in_stage_order() {
    let d = desired(ONE);
    let p = plan(&d, &empty(), &Record::default(), Owner::Topology("one"));
    let mac = |l: &str| d.host.links[l].mac.expect("mac").to_string();
    assert_eq!(
        steps(&p),
        [
            "+ namespace ns1".to_string(),
            format!("+ bridge br0 mtu 1500 mac {}", mac("br0")),
            format!(
                "+ veth veth-ns1 (on br0) ⇄ ns1:eth0 mtu 1500 mac {}",
                d.namespaces["ns1"].links["eth0"].mac.expect("mac")
            ),
            "+ address 10.10.0.1/24 on br0".into(),
            "~ sysctl net.ipv4.conf.br0.promote_secondaries → 1".into(),
            "+ address 10.10.0.2/24 on ns1:eth0".into(),
            "+ route ns1: default via 10.10.0.1 dev eth0".into(),
            "~ sysctl ns1:net.ipv4.conf.eth0.promote_secondaries → 1".into(),
            "~ sysctl ns1:net.ipv6.conf.eth0.disable_ipv6 → 1".into(),
        ]
    );
    // The write-ahead record learns what the run makes, links with the MAC they get.
    let names: Vec<&String> = p.creates.namespaces.iter().collect();
    assert_eq!(names, ["ns1"]);
    let links: Vec<(&str, &str)> = p
        .creates
        .links
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        links,
        [("br0", &*mac("br0")), ("veth-ns1", &*mac("veth-ns1"))]
    );
    assert!(p.conflicts.is_empty() && p.warnings.is_empty());
}

#[test]
fn a_host_in_sync_plans_nothing() {
    let d = desired(ONE);
    let p = plan(&d, &in_sync(&d), &Record::default(), Owner::Topology("one"));
    assert!(p.is_empty(), "{p}");
    assert!(p.conflicts.is_empty() && p.warnings.is_empty() && p.unreachable.is_empty());
    assert_eq!(p.summary(), "plan: 0 to add, 0 to change, 0 to remove");
}

#[test]
fn a_missing_address_is_added_and_the_segment_forgets_its_neighbours() {
    let mut o = in_sync(&desired(ONE));
    ns1(&mut o).addrs.clear();
    assert_eq!(
        plan_one(&o),
        [
            "+ address 10.10.0.2/24 on ns1:eth0",
            "~ route ns1: default via 10.10.0.1 dev eth0 (again: an address under it changes)",
            "~ neighbours on ns1:eth0: forgotten (an address or MAC on the segment changes)",
            "~ neighbours on br0: forgotten (an address or MAC on the segment changes)",
        ]
    );
}

/// A new namespace's address, held by no one nsfw sees, is announced from its own interface
/// (the kernel's gratuitous ARP), in the host finish: no other namespace of the segment
/// visited, none of the host's neighbours forgotten.
#[test]
fn an_address_arriving_on_a_new_namespace_is_announced_from_inside_it() {
    let two = format!("{ONE}[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n");
    let p = plan(
        &desired(&two),
        &in_sync(&desired(ONE)),
        &Record::default(),
        Owner::Topology("one"),
    );
    let s = steps(&p);
    let said =
        "~ announce 10.10.0.3 on ns2:eth0 (gratuitous ARP: the address may have been held before)";
    assert!(s.iter().any(|x| x == said), "{s:?}");
    assert!(!s.iter().any(|x| x.contains("neighbours")), "{s:?}");
    let a = p
        .steps
        .iter()
        .find(|x| matches!(x, crate::kinds::Step::Announce(_)))
        .expect("announce");
    assert_eq!(a.stage(), crate::kinds::Stage::HostFinish);
    assert_eq!(a.inside(), Some("ns2"));
}

#[test]
fn a_wrong_mtu_mac_or_arp_is_set_back() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    o.host.links[1].mtu = 9000;
    let eth0 = &mut ns1(&mut o).links[1];
    (eth0.mtu, eth0.noarp) = (1400, true);
    eth0.mac = Some(crate::topology::Mac([2, 0, 0, 0, 0, 9]));
    let mac = d.namespaces["ns1"].links["eth0"].mac.expect("mac");
    assert_eq!(
        plan_one(&o),
        [
            "~ link br0: mtu 9000 → 1500".to_string(),
            format!(
                "~ link ns1:eth0: mtu 1400 → 1500, mac 02:00:00:00:00:09 → {mac}, arp off → on"
            ),
            // The MAC changed: the segment's neighbour entries name the old one (the bridge's
            // for 10.10.0.2 would for ~8 s).
            "~ neighbours on ns1:eth0: forgotten (an address or MAC on the segment changes)"
                .to_string(),
            "~ neighbours on br0: forgotten (an address or MAC on the segment changes)".to_string(),
        ]
    );
}

#[test]
fn a_link_down_is_brought_up_and_its_routes_put_again() {
    let mut o = in_sync(&desired(ONE));
    ns1(&mut o).links[1].up = false;
    o.host.links[2].up = false;
    assert_eq!(
        plan_one(&o),
        [
            "~ link veth-ns1: state down → up",
            "~ link ns1:eth0: state down → up",
            "~ route ns1: default via 10.10.0.1 dev eth0 (again: an address under it changes)",
        ]
    );
}

#[test]
fn an_extra_route_inside_goes_and_one_on_the_host_stays_unless_nsfw_made_it() {
    let mut o = in_sync(&desired(ONE));
    ns1(&mut o)
        .routes
        .push(route("192.0.2.0/24", Some("10.10.0.9"), ETH0, false));
    let mut theirs = route("198.51.100.0/24", Some("10.10.0.9"), BR0, false);
    theirs.ours = false;
    o.host.routes.push(theirs);
    assert_eq!(
        plan_one(&o),
        ["- route ns1: 192.0.2.0/24 via 10.10.0.9 dev eth0"]
    );
    // One nsfw made over its own bridge (a `[host] routes` entry left out of the file) goes.
    o.host.routes.last_mut().expect("route").ours = true;
    let steps = plan_one(&o);
    assert!(
        steps.contains(&"- route host: 198.51.100.0/24 via 10.10.0.9 dev br0".into()),
        "{steps:?}"
    );
}

#[test]
fn an_extra_link_inside_a_namespace_goes() {
    let mut o = in_sync(&desired(ONE));
    ns1(&mut o)
        .links
        .push(link(22, "dummy0", Some("dummy"), None));
    assert_eq!(plan_one(&o), ["- link ns1:dummy0 (dummy): not in the file"]);
}

#[test]
fn a_sysctl_changed_is_set_back() {
    let mut o = in_sync(&desired(ONE));
    let s = &mut ns1(&mut o).sysctls;
    s.insert("net.ipv4.ip_forward".into(), Some("1".into()));
    assert_eq!(plan_one(&o), ["~ sysctl ns1:net.ipv4.ip_forward: 1 → 0"]);
}

#[test]
fn objects_of_the_names_someone_else_owns_are_conflicts_and_nothing_else_is_planned() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    o.host.links[1].alias = None;
    o.namespaces.get_mut("ns1").expect("ns1").owner = Some("nsfw:other".into());
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert_eq!(p.conflicts.len(), 3, "{:?}", p.conflicts);
    assert!(p.conflicts[0].contains("namespace ns1 already exists and nsfw does not own it (it belongs to nsfw topology \"other\")"), "{}", p.conflicts[0]);
    assert!(p.conflicts[1].contains("interface br0 already exists on the host and nsfw does not own it (it carries no nsfw mark)"), "{}", p.conflicts[1]);
    // And the subnet that bridge holds is in the way of the file's.
    assert!(
        p.conflicts[2]
            .contains("subnet 10.10.0.0/24 overlaps the host's route 10.10.0.0/24 dev br0"),
        "{}",
        p.conflicts[2]
    );
    assert!(p.steps.iter().all(|s| !matches!(
        s,
        super::Step::DeleteLink(_) | super::Step::DeleteNamespace(_)
    )));
}

#[test]
fn a_bridge_an_interrupted_run_left_unmarked_is_made_again() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    // Made, not yet marked (marking follows at once), so nothing on it yet.
    o.host.links[1].alias = None;
    (o.host.addrs, o.host.routes) = (vec![], vec![]);
    let mut rec = Record::default();
    let mac = d.host.links["br0"].mac.expect("mac").to_string();
    let pending = rec.pending.entry("one".into()).or_default();
    pending.links.insert("br0".into(), mac.clone());
    let p = plan(&d, &o, &rec, Owner::Topology("one"));
    let s = steps(&p);
    assert_eq!(
        s[0],
        "- link br0 (bridge): left unmarked by an interrupted run"
    );
    assert!(
        s.contains(&format!("+ bridge br0 mtu 1500 mac {mac}")),
        "{s:?}"
    );
    // Its port and address are made again on the new bridge.
    assert!(
        s.contains(&"~ link veth-ns1: master br0 → br0".into()),
        "{s:?}"
    );
    assert!(s.contains(&"+ address 10.10.0.1/24 on br0".into()), "{s:?}");
    // Another MAC: somebody else's bridge of that name, a conflict.
    rec.pending
        .get_mut("one")
        .expect("one")
        .links
        .insert("br0".into(), "02:00:00:00:00:01".into());
    let p = plan(&d, &o, &rec, Owner::Topology("one"));
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
}

#[test]
fn a_namespace_left_half_made_is_deleted_and_one_not_ours_to_enter_is_reported() {
    let d = desired(ONE);
    let mut o = in_sync(&d);
    o.unreachable
        .insert("ns9".into(), "ns9: not a namespace (EINVAL)".into());
    o.unreachable
        .insert("ns8".into(), "ns8: cannot enter it: EPERM".into());
    let mut rec = Record::default();
    rec.pending
        .entry("one".into())
        .or_default()
        .namespaces
        .insert("ns9".into());
    let p = plan(&d, &o, &rec, Owner::Topology("one"));
    assert_eq!(
        steps(&p),
        ["- namespace ns9: left half-made by an interrupted run"]
    );
    assert_eq!(p.unreachable.len(), 1, "{:?}", p.unreachable);
    assert!(p.unreachable[0].starts_with("ns8: cannot enter it: EPERM; it stays as it is"));
}

#[test]
fn a_port_someone_enslaved_to_an_nsfw_bridge_is_let_go() {
    let mut o = in_sync(&desired(ONE));
    let mut eth9 = link(30, "eth9", None, None);
    eth9.master = Some(BR0);
    o.host.links.push(eth9);
    assert_eq!(plan_one(&o), ["~ link eth9: master br0 → none"]);
}

#[test]
fn a_flush_of_a_host_in_sync_removes_all_the_topology_owns() {
    let d = desired(ONE);
    let mut nothing = Desired {
        topology: d.topology.clone(),
        mark: d.mark.clone(),
        ..Default::default()
    };
    nothing.source = "flush".into();
    let p = plan(
        &nothing,
        &in_sync(&d),
        &Record::default(),
        Owner::Topology("one"),
    );
    assert_eq!(
        steps(&p),
        [
            "- namespace ns1 (with veth-ns1): no longer in the file",
            "- link br0 (bridge): no longer in the file",
        ]
    );
    // Someone else's topology is not this flush's to touch.
    let p = plan(
        &nothing,
        &in_sync(&d),
        &Record::default(),
        Owner::Topology("two"),
    );
    assert!(p.is_empty(), "{p}");
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort();
    k
}

#[test]
fn to_json_keeps_the_schema_of_docs_json_md() {
    let t = topology("one", ONE);
    let d = compile(&t);
    let mut p = plan(&d, &empty(), &Record::default(), Owner::Topology("one"));
    p.nft =
        crate::firewall::diff(&t, &Default::default(), crate::firewall::prepare(&t)).expect("nft");
    let v = p.to_json("one", "one.toml");
    assert_eq!(
        keys(&v),
        [
            "changes",
            "conflicts",
            "file",
            "in_sync",
            "schema",
            "skipped",
            "summary",
            "topology",
            "unreachable",
            "warnings"
        ]
    );
    assert_eq!(
        (v["schema"].as_u64(), v["in_sync"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(
        (v["topology"].as_str(), v["file"].as_str()),
        (Some("one"), Some("one.toml"))
    );
    let (a, c, r) = p.counts();
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": a, "change": c, "remove": r})
    );
    let changes = v["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), p.len());
    let first = &changes[0];
    assert_eq!(keys(first), ["kind", "name", "object", "op", "text"]);
    assert_eq!(first["op"], "create");
    assert_eq!(first["text"], "+ namespace ns1");
    let table = changes
        .iter()
        .find(|c| c["kind"] == "nft-table")
        .expect("the table");
    assert_eq!(
        keys(table),
        [
            "chain", "detail", "kind", "object", "op", "rule", "table", "text"
        ]
    );
    assert_eq!(table["table"], "inet nsfw_one");
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "nft-rule" && c["rule"].is_string())
    );
    let synced = Plan::default().to_json("one", "one.toml");
    assert_eq!(
        (
            synced["in_sync"].as_bool(),
            synced["changes"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0))
    );
}

/// ONE with eth1 (1400 bytes, no master, 192.0.2.2/24) as a port of br0, and `extra` keys.
pub(super) fn with_port(extra: &str) -> (Desired, Observed) {
    let d = desired(&ONE.replace(
        "[bridges.br0]\n",
        &format!("[bridges.br0]\nports = [\"eth1\"]\n{extra}"),
    ));
    let mut o = in_sync(&desired(ONE));
    let mut eth1 = link(31, "eth1", None, None);
    eth1.mtu = 1400;
    o.host.links.push(eth1);
    (d, o)
}

#[test]
fn a_port_of_another_mtu_is_refused_unless_the_file_sets_the_bridges() {
    let (d, o) = with_port("");
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        p.conflicts
            .iter()
            .any(|c| c.contains("eth1 has MTU 1400 and bridge br0 1500")),
        "{:?}",
        p.conflicts
    );
    let (d, o) = with_port("mtu = 1500\n");
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert_eq!(
        steps(&p),
        ["~ link eth1: mtu 1400 → 1500, master none → br0"]
    );
    // Its own MTU is kept, to be given back.
    assert_eq!(p.record_during.taken["eth1"].mtu, Some(1400));
    // A driver that takes at most 1500 is not asked for 9000 half-way through a run.
    let (d, mut o) = with_port("mtu = 9000\n");
    if let Some(l) = o.host.links.iter_mut().find(|l| l.name == "eth1") {
        l.mtu_range = (Some(68), Some(1500));
    }
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        p.conflicts
            .iter()
            .any(|c| c.contains("eth1 takes an MTU of 68-1500")),
        "{:?}",
        p.conflicts
    );
}

#[test]
fn a_taken_ports_lan_is_trusted_as_a_source_of_its_bridge() {
    let (_, mut o) = with_port("take_addresses = true\n");
    o.host.addrs.push(addr(31, "192.0.2.2/24"));
    let mut r = route("198.18.0.0/24", Some("192.0.2.1"), 31, false);
    (r.ours, r.proto) = (false, 4);
    o.host.routes.push(r);
    let text = ONE.replace(
        "[bridges.br0]\n",
        "[bridges.br0]\nports = [\"eth1\"]\ntake_addresses = true\n",
    );
    let t = topology("one", &text);
    let (t, warnings) = super::with_lan(&t, &o, &Record::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        t.trusted_sources("br0", false),
        [
            net("10.10.0.0/24"),
            net("192.0.2.0/24"),
            net("198.18.0.0/24")
        ]
    );
    // Not the topology's own: no masquerade, still the world to the policy.
    assert_eq!(t.sources_via("br0", false), [net("10.10.0.0/24")]);
}

mod files;
