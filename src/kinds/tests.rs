//! Every kind of step as `nsfw diff` shows it (text and JSON), with its stage, its mark, the
//! object it is grouped under and the namespace it works inside; and the rtnetlink requests
//! each becomes. Golden files, so that a kind's description or lowering changes only on
//! purpose.

use std::fmt::Write;

use ipnetwork::IpNetwork;

use crate::kinds::{
    AddAddr, At, CreateBridge, CreateMacvlan, CreateNamespace, CreateVeth, DelAddr, DelRoute,
    DeleteLink, DeleteNamespace, ForgetNeighbours, Indexes, LinkAttr, MarkNamespace, RemoveResolv,
    SetLink, SetNetem, SetRoute, SetSysctl, Step, WriteResolv,
};
use crate::netem::Netem;
use crate::rate::{Rate, Shape, Shaped};
use crate::resources::{AddrOrig, Place, RouteOrig, RouteSpec};
use crate::topology::{Mac, MacvlanMode};

fn net(s: &str) -> IpNetwork {
    s.parse().expect("network")
}

fn ns(n: &str) -> Place {
    Place::Ns(n.into())
}

fn route(dst: &str, via: Option<&str>, dev: &str) -> RouteSpec {
    RouteSpec::unicast(net(dst), via.map(|v| v.parse().expect("address")), dev)
}

const MAC: Mac = Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55]);
const MAC2: Mac = Mac([2, 0x66, 0x77, 0x88, 0x99, 0xaa]);

fn links() -> Vec<Step> {
    let all_attrs = vec![
        LinkAttr::NfCall { new: true },
        LinkAttr::Master {
            old: Some("br0".into()),
            new: Some("br1".into()),
        },
        LinkAttr::Hairpin { new: false },
        LinkAttr::Isolated { new: true },
        LinkAttr::Mtu {
            old: 1500,
            new: 9000,
        },
        LinkAttr::Mac {
            old: Some(MAC),
            new: MAC2,
        },
        LinkAttr::Mac {
            old: None,
            new: MAC,
        },
        LinkAttr::Arp,
        LinkAttr::Up,
    ];
    vec![
        Step::DeleteLink(DeleteLink {
            place: Place::Host,
            name: "veth-old".into(),
            index: 7,
            kind: Some("veth".into()),
            why: "no longer in the file",
        }),
        Step::DeleteLink(DeleteLink {
            place: ns("ns1"),
            name: "dummy0".into(),
            index: 3,
            kind: None,
            why: "not in the file",
        }),
        Step::CreateBridge(CreateBridge {
            name: "br0".into(),
            mtu: 1500,
            mac: MAC,
            nf_call: true,
        }),
        Step::CreateVeth(CreateVeth {
            ns: "ns1".into(),
            host: "veth-ns1".into(),
            peer: "eth0".into(),
            bridge: "br0".into(),
            mtu: 1500,
            mac: Some(MAC),
            host_mac: Some(MAC2),
            no_link_local: true,
            hairpin: true,
            isolated: false,
        }),
        Step::CreateVeth(CreateVeth {
            ns: "ns2".into(),
            host: "veth-ns2".into(),
            peer: "eth1".into(),
            bridge: "br1".into(),
            mtu: 1280,
            mac: None,
            host_mac: None,
            no_link_local: false,
            hairpin: false,
            isolated: true,
        }),
        Step::SetLink(SetLink {
            place: Place::Host,
            name: "br0".into(),
            attrs: all_attrs,
        }),
        Step::SetLink(SetLink {
            place: Place::Host,
            name: "eth1".into(),
            attrs: vec![LinkAttr::Master {
                old: Some("br0".into()),
                new: None,
            }],
        }),
        Step::SetLink(SetLink {
            place: ns("ns1"),
            name: "eth0".into(),
            attrs: vec![LinkAttr::Up],
        }),
    ]
}

/// A macvlan child born in its namespace, a macvtap one, and the host's shim (on eth1).
fn macvlans() -> Vec<Step> {
    let child = |place: Place, name: &str, mode, tap, mtu| {
        Step::CreateMacvlan(CreateMacvlan {
            place,
            name: name.into(),
            uplink: "eth1".into(),
            mode,
            tap,
            mtu,
            mac: Some(MAC),
            no_link_local: true,
            alias: "nsfw:lab".into(),
        })
    };
    vec![
        child(ns("m1"), "eth0", MacvlanMode::Bridge, false, 0),
        child(ns("vm"), "tap0", MacvlanMode::Private, true, 1400),
        child(Place::Host, "mvs-0badcafe", MacvlanMode::Bridge, false, 0),
    ]
}

fn namespaces_and_files() -> Vec<Step> {
    vec![
        Step::DeleteNamespace(DeleteNamespace {
            name: "gone".into(),
            takes: vec!["veth-gone".into(), "veth-gone2".into()],
            why: "no longer in the file",
        }),
        Step::DeleteNamespace(DeleteNamespace {
            name: "half".into(),
            takes: vec![],
            why: "left half-made by an interrupted run",
        }),
        Step::CreateNamespace(CreateNamespace { name: "ns1".into() }),
        Step::MarkNamespace(MarkNamespace { name: "ns1".into() }),
        Step::WriteResolv(WriteResolv {
            ns: "ns1".into(),
            content: "nameserver 1.1.1.1\n".into(),
        }),
        Step::RemoveResolv(RemoveResolv { ns: "ns2".into() }),
    ]
}

fn addresses_and_routes() -> Vec<Step> {
    let orig = RouteOrig {
        table: 100,
        proto: 4,
        scope: 0,
        flags: 4,
        prefsrc: Some("192.0.2.10".parse().expect("address")),
        metrics: [0; 18],
    };
    vec![
        Step::AddAddr(AddAddr {
            place: Place::Host,
            ifname: "br0".into(),
            net: net("10.10.0.1/24"),
            orig: None,
        }),
        Step::AddAddr(AddAddr {
            place: Place::Host,
            ifname: "br0".into(),
            net: net("192.0.2.10/24"),
            orig: Some(AddrOrig {
                flags: 0x80,
                scope: 0,
                valid: 3600,
                preferred: 1800,
                brd: Some(std::net::Ipv4Addr::new(192, 0, 2, 255)),
                metric: 77,
            }),
        }),
        Step::AddAddr(AddAddr {
            place: ns("ns1"),
            ifname: "eth0".into(),
            net: net("fd00::2/64"),
            orig: None,
        }),
        Step::DelAddr(DelAddr {
            place: ns("ns1"),
            ifname: "eth0".into(),
            net: net("10.10.0.9/24"),
        }),
        Step::DelAddr(DelAddr {
            place: Place::Host,
            ifname: "eth1".into(),
            net: net("192.0.2.10/24"),
        }),
        Step::SetRoute(SetRoute {
            place: ns("ns1"),
            route: route("0.0.0.0/0", Some("10.10.0.1"), "eth0"),
            old: None,
            again: false,
        }),
        Step::SetRoute(SetRoute {
            place: ns("ns1"),
            route: route("10.99.0.0/16", Some("10.10.0.3"), "eth0"),
            old: Some(route("10.99.0.0/16", Some("10.10.0.4"), "eth0")),
            again: false,
        }),
        Step::SetRoute(SetRoute {
            place: Place::Host,
            route: route("10.99.0.0/16", Some("10.10.0.3"), "br0"),
            old: None,
            again: true,
        }),
        Step::SetRoute(SetRoute {
            place: Place::Host,
            route: RouteSpec {
                metric: 50,
                orig: Some(orig),
                ..route("0.0.0.0/0", Some("192.0.2.1"), "br0")
            },
            old: None,
            again: false,
        }),
        Step::DelRoute(DelRoute {
            place: ns("ns1"),
            route: route("fd99::/64", Some("fd00::1"), "eth0"),
        }),
        Step::DelRoute(DelRoute {
            place: Place::Host,
            route: RouteSpec {
                kind: 6,
                ..route("203.0.113.0/24", None, "")
            },
        }),
    ]
}

fn the_rest() -> Vec<Step> {
    let netem = Netem {
        latency_us: Some(20_000),
        jitter_us: Some(5_000),
        loss_ppm: Some(10_000),
        rate_bps: None,
    };
    vec![
        // The host's route to an IPv6 macvlan child, its source (the shim's link-local) put
        // back.
        Step::SetRoute(SetRoute {
            place: Place::Host,
            route: RouteSpec {
                src: Some("fe80::11:22ff:fe33:4455".parse().expect("address")),
                ..route("2001:db8:200::21/128", None, "mvs-0badcafe")
            },
            old: Some(route("2001:db8:200::21/128", None, "mvs-0badcafe")),
            again: false,
        }),
        Step::SetSysctl(SetSysctl {
            place: Place::Host,
            key: "net.ipv4.ip_forward".into(),
            old: Some("0".into()),
            new: "1".into(),
            restore: false,
        }),
        Step::SetSysctl(SetSysctl {
            place: Place::Host,
            key: "net.ipv4.ip_forward".into(),
            old: Some("1".into()),
            new: "0".into(),
            restore: true,
        }),
        Step::SetSysctl(SetSysctl {
            place: ns("ns1"),
            key: "net.ipv6.conf.eth0.disable_ipv6".into(),
            old: None,
            new: "1".into(),
            restore: false,
        }),
        Step::ForgetNeighbours(ForgetNeighbours {
            place: Place::Host,
            ifname: "br0".into(),
        }),
        Step::ForgetNeighbours(ForgetNeighbours {
            place: ns("ns1"),
            ifname: "eth0".into(),
        }),
        Step::SetNetem(SetNetem {
            place: ns("ns1"),
            ifname: "eth0".into(),
            shape: Shape { netem, rate: None },
            old: None,
        }),
        Step::SetNetem(SetNetem {
            place: ns("ns1"),
            ifname: "eth0".into(),
            shape: Shape::default(),
            old: Some(Ok(Shaped { netem, tbf: None })),
        }),
    ]
    .into_iter()
    .chain(qdisc_trees(netem))
    .collect()
}

/// The qdisc trees: a tbf made at a bridge port's root; one changed in place; a netem put
/// above it (a tree of another shape: removed and made again, the tbf below the netem); an
/// unreadable tree of nsfw's made again.
fn qdisc_trees(netem: Netem) -> Vec<Step> {
    let rate = Rate::new(10_000_000, None, None, 1500);
    let faster = Rate::new(20_000_000, Some(30_000), Some(40_000_000), 1500);
    let step = |place: Place, ifname: &str, shape, old| {
        Step::SetNetem(SetNetem {
            place,
            ifname: ifname.into(),
            shape,
            old,
        })
    };
    let only = |r: Rate| Shape {
        netem: Netem::default(),
        rate: Some(r),
    };
    let read = |s: Shape| Some(Ok(s.as_read()));
    vec![
        step(Place::Host, "veth-ns1", only(rate), None),
        step(Place::Host, "veth-ns1", only(faster), read(only(rate))),
        step(
            ns("ns1"),
            "eth0",
            Shape {
                netem,
                rate: Some(rate),
            },
            read(only(rate)),
        ),
        step(
            ns("ns1"),
            "eth0",
            only(rate),
            Some(Err("tbf with overhead or mpu".into())),
        ),
    ]
}

#[test]
fn every_step_kind_reads_as_before() {
    let mut out = String::new();
    for s in [
        links(),
        macvlans(),
        namespaces_and_files(),
        addresses_and_routes(),
        the_rest(),
    ]
    .concat()
    {
        let json = serde_json::to_string(&s.json()).expect("json");
        let inside = s.inside().unwrap_or("-");
        let (stage, mark, object) = (s.stage(), s.mark(), s.object());
        writeln!(
            out,
            "{s}\n  {stage:?} {mark} [{object}] in {inside}\n  {json}"
        )
        .expect("write");
    }
    crate::testdata::golden("kinds/steps.txt", &out);
}

/// The indexes the requests are built against: every interface the steps above name.
fn indexes() -> Indexes {
    ["br0", "br1", "eth0", "eth1", "veth-ns1", "mvs-0badcafe"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), 10 + i as u32))
        .collect()
}

#[test]
fn every_step_kind_lowers_as_before() {
    let ix = indexes();
    let at = At::new("nsfw:lab", &ix);
    let mut out = String::new();
    let steps = [
        links(),
        macvlans(),
        namespaces_and_files(),
        addresses_and_routes(),
        the_rest(),
    ]
    .concat();
    for s in &steps {
        // A link born in a namespace needs that namespace open: what its visit sends there.
        let reqs = match s.born_in() {
            Some(_) => Some(Ok(s.finish_inside())),
            None => s.requests(&at),
        };
        writeln!(out, "{s}").expect("write");
        match reqs {
            None => writeln!(out, "  (no requests)").expect("write"),
            Some(Err(e)) => writeln!(out, "  error: {e:#}").expect("write"),
            Some(Ok(reqs)) => {
                for r in reqs {
                    let ok = if r.ok.is_empty() {
                        String::new()
                    } else {
                        format!(" ok_if {:?}", r.ok)
                    };
                    writeln!(
                        out,
                        "  {} [flags {:#x}{ok}]\n    {:?}",
                        r.what, r.flags, r.msg
                    )
                    .expect("write");
                }
            }
        }
    }
    crate::testdata::golden("kinds/requests.txt", &out);
}
