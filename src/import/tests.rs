//! The guide's lab as an observation written by hand: read into a lab, its firewall lines
//! folded in, written as a file that nsfw reads back to the same topology, twice the same.

use std::net::IpAddr;

use super::lab::{self, Lab};
use super::rules::{At, Found, classify};
use super::{fold, render};
use crate::plumbing::{Addr, FileObs, Link, NodeObs, NsObs, Observed, Route};
use crate::topology::Mac;

fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
    Link {
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu: 1500,
        mac: Some(Mac([2, 0, 0, 0, 0, index as u8])),
        ..Link::bare(index, true, false)
    }
}

fn default_via(gw: &str, oif: u32) -> Route {
    Route {
        dst: "0.0.0.0/0".parse().unwrap(),
        gateway: Some(gw.parse::<IpAddr>().unwrap()),
        oif: Some(oif),
        kernel: false,
        ours: false,
        metric: 0,
        kind: 1,
        table: 254,
        proto: 3,
        scope: 0,
        flags: 0,
        prefsrc: None,
        metrics: [0; 18],
    }
}

/// The guide's host: br0 with 10.10.0.1/24, ns1 and ns2 each on a veth, a resolv.conf in ns1.
fn guide() -> Observed {
    let mut o = Observed::default();
    o.host.links = vec![link(1, "lo", None), link(3, "br0", Some("bridge"))];
    o.host.addrs = vec![Addr::given(3, "10.10.0.1/24")];
    o.host.sysctls.insert(
        crate::compile::IP_FORWARD.to_string(),
        Some("1".to_string()),
    );
    for (i, ns) in ["ns1", "ns2"].into_iter().enumerate() {
        let host_ix = 4 + i as u32;
        let mut h = link(host_ix, &format!("veth-{ns}"), Some("veth"));
        h.master = Some(3);
        h.peer_index = Some(2);
        o.host.links.push(h);
        let mut p = link(2, &format!("eth0-{ns}"), Some("veth"));
        p.peer_index = Some(host_ix);
        p.mac = Some(Mac([2, 0, 0, 1, 0, i as u8]));
        let node = NodeObs {
            links: vec![link(1, "lo", None), p],
            addrs: vec![Addr::given(2, &format!("10.10.0.{}/24", i + 2))],
            routes: vec![default_via("10.10.0.1", 2)],
            ..Default::default()
        };
        o.namespaces.insert(
            ns.into(),
            NsObs {
                owner: None,
                node,
                id: None,
            },
        );
    }
    o.resolv
        .insert("ns1".into(), FileObs::Text("nameserver 1.1.1.1\n".into()));
    o
}

fn found(table: &str, chain: &str, text: &str) -> Found {
    Found {
        at: At {
            legacy: None,
            family: nft::Family::Ip,
            table: table.into(),
            chain: chain.into(),
            handle: 2,
        },
        text: text.into(),
        meaning: classify(chain, text),
    }
}

fn imported() -> (Lab, Vec<bool>, String) {
    let mut lab = lab::build("lab", &guide(), &[]);
    let rules = [
        found(
            "nat",
            "POSTROUTING",
            r#"oifname != "br0" ip saddr 10.10.0.0/24 masquerade"#,
        ),
        found("filter", "FORWARD", "ct state established,related accept"),
        found("mangle", "PREROUTING", r#"iifname "br0" meta mark set 0x1"#),
    ];
    let used = fold::fold(&mut lab, &rules);
    let text = render::toml(&lab);
    (lab, used, text)
}

#[test]
fn the_guides_lab_becomes_a_file_nsfw_reads() {
    let (lab, used, text) = imported();
    assert_eq!(
        used,
        [true, true, false],
        "the mangle rule is no guide line"
    );
    assert!(
        lab.notes.iter().any(|n| n.contains("meta mark set")),
        "{:?}",
        lab.notes
    );
    let t = crate::topology::parse(&text, std::path::Path::new("lab.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(t.bridges.len(), 1);
    assert!(t.bridges[0].masquerade);
    assert_eq!(
        t.bridges[0].mac,
        Mac([2, 0, 0, 0, 0, 3]),
        "the MAC it has, kept"
    );
    let ns1 = &t.namespaces[0];
    assert_eq!(ns1.ifaces[0].ifname, "eth0-ns1");
    assert_eq!(ns1.ifaces[0].host_ifname, "veth-ns1");
    assert_eq!(ns1.dns, vec!["1.1.1.1".parse::<IpAddr>().unwrap()]);
    assert!(
        text.contains("#   ip mangle PREROUTING: iifname \"br0\" meta mark set 0x1"),
        "{text}"
    );
    assert_eq!(text, imported().2, "the same host, the same file");
}

#[test]
fn an_empty_host_is_an_empty_valid_file() {
    let lab = lab::build("lab", &Observed::default(), &[]);
    let text = render::toml(&lab);
    crate::topology::parse(&text, std::path::Path::new("lab.toml")).unwrap();
}

/// The guide's host once adopted as `lab`: everything is nsfw's, so a second import has
/// nothing to write (a file naming none of it would remove the lab when applied); a name
/// that clashes is refused; the default steps aside when the host also has a hand lab.
#[test]
fn a_host_nsfw_already_holds_is_not_imported_again_under_its_name() {
    let mut o = guide();
    for ns in o.namespaces.values_mut() {
        ns.owner = Some("nsfw:lab".into());
    }
    o.host.links[1].alias = Some("nsfw:lab".into());
    let lab = lab::build("", &o, &[]);
    assert!(lab.namespaces.is_empty() && lab.bridges.is_empty());
    assert_eq!(
        lab.held["lab"],
        ["bridge br0", "namespace ns1", "namespace ns2"]
    );
    let e = super::choose_name(&lab, None).expect_err("nothing to import");
    assert!(
        e.contains("nsfw topology lab already holds bridge br0"),
        "{e}"
    );
    // Another hand lab beside it: imported, under a free name; `--name lab` refused.
    let mut o2 = guide();
    o2.namespaces.get_mut("ns2").unwrap().owner = Some("nsfw:lab".into());
    let lab = lab::build("", &o2, &[]);
    assert_eq!(super::choose_name(&lab, None).as_deref(), Ok("lab-2"));
    assert_eq!(
        super::choose_name(&lab, Some("mine")).as_deref(),
        Ok("mine")
    );
    let e = super::choose_name(&lab, Some("lab")).expect_err("clash");
    assert!(
        e.contains("--name lab: nsfw topology lab already holds namespace ns2"),
        "{e}"
    );
}

/// Namespace names TOML cannot take bare are written as quoted keys, and read back as the
/// same names (`ns.dot` was a nested table, `has=eq` invalid).
#[test]
fn odd_namespace_names_are_quoted_keys() {
    let mut o = guide();
    let ns1 = o.namespaces.remove("ns1").unwrap();
    o.namespaces.insert("ns.dot".into(), ns1);
    let ns2 = o.namespaces.remove("ns2").unwrap();
    o.namespaces.insert("has=eq".into(), ns2);
    let text = render::toml(&lab::build("lab", &o, &[]));
    assert!(text.contains("[namespaces.\"ns.dot\"]"), "{text}");
    let t = crate::topology::parse(&text, std::path::Path::new("lab.toml"));
    match t {
        Ok(t) => {
            let names: Vec<&str> = t.namespaces.iter().map(|n| n.name.as_str()).collect();
            assert!(names.contains(&"ns.dot"), "{names:?}");
        }
        // nsfw may refuse the name itself; then it says which, by name.
        Err(e) => assert!(format!("{e:#}").contains("has=eq"), "{e:#}\n{text}"),
    }
}

/// What a file cannot say is absent is noted: no default route, no IPv6 where the bridge
/// has it. A blackhole route is printed as one (was "dev ?").
#[test]
fn absent_default_route_and_ipv6_are_noted() {
    let mut o = guide();
    o.host.addrs.push(Addr::given(3, "fd00:10::1/64"));
    let ns1 = o.namespaces.get_mut("ns1").unwrap();
    ns1.node.routes.clear();
    let mut bh = default_via("10.10.0.1", 0);
    bh.dst = "192.0.2.0/24".parse().unwrap();
    (bh.gateway, bh.oif, bh.kind) = (None, None, 6);
    ns1.node.routes.push(bh);
    let lab = lab::build("lab", &o, &[]);
    let has = |s: &str| lab.notes.iter().any(|n| n.contains(s));
    assert!(
        has("namespace ns1: no IPv4 default route"),
        "{:?}",
        lab.notes
    );
    assert!(
        !has("namespace ns2: no IPv4 default route"),
        "{:?}",
        lab.notes
    );
    assert!(has("namespace ns2: no IPv6 address on"), "{:?}", lab.notes);
    assert!(
        has("route blackhole 192.0.2.0/24 not translated"),
        "{:?}",
        lab.notes
    );
}

/// The guide's host with a tunnel on br0: VNI 100 from 192.0.2.10 on port 4790, two peers'
/// all-zeros entries and one with its own port; the segment's MTU 1450.
fn with_tunnel(local: Option<&str>, peers: &[&str]) -> Observed {
    use crate::plumbing::{Fdb, Via, VxlanObs};
    let mut o = guide();
    let mut vx = link(9, "vx100", Some("vxlan"));
    vx.master = Some(3);
    vx.mtu = 1450;
    vx.vxlan = Some(VxlanObs::new(100, local.map(|a| a.parse().unwrap()), 4790));
    o.host.links.push(vx);
    // One MTU on the segment: the bridge's, its veths' and the namespaces' ends.
    for l in o.host.links.iter_mut().skip(1) {
        l.mtu = 1450;
    }
    for ns in o.namespaces.values_mut() {
        ns.node.links[1].mtu = 1450;
    }
    for p in peers {
        o.host.fdb.push(Fdb {
            index: 9,
            dst: p.parse().unwrap(),
            via: Via::default(),
        });
    }
    o.host.fdb.push(Fdb {
        index: 9,
        dst: "192.0.2.13".parse().unwrap(),
        via: Via {
            port: Some(9999),
            ..Via::default()
        },
    });
    o
}

#[test]
fn a_tunnel_on_a_bridge_becomes_its_vxlan_key() {
    let mut o = with_tunnel(Some("192.0.2.10"), &["192.0.2.12", "192.0.2.11"]);
    o.host.fdb.retain(|f| f.via.is_own());
    let lab = lab::build("lab", &o, &[]);
    let text = render::toml(&lab);
    assert!(
        text.contains(
            "\nvxlan = { id = 100, local = \"192.0.2.10\", peers = [\"192.0.2.11\", \"192.0.2.12\"], port = 4790 }"
        ) && !text.contains("mtu ="),
        "{text}"
    );
    assert!(lab.notes.is_empty(), "{:?}", lab.notes);
    let t = crate::topology::parse(&text, std::path::Path::new("lab.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let v = t.bridges[0].vxlan.as_ref().expect("vxlan");
    assert_eq!(
        (v.id, v.port, v.peers.len(), t.bridges[0].mtu),
        (100, 4790, 2, 1450)
    );
    // Without a source address or a static peer the key cannot stand: commented, noted.
    for (local, peers, why) in [
        (None, &["192.0.2.11"][..], "no local address"),
        (Some("192.0.2.10"), &[][..], "no static peer"),
    ] {
        let lab = lab::build("lab", &with_tunnel(local, peers), &[]);
        let text = render::toml(&lab);
        assert!(text.contains("\n# vxlan = { id = 100, local = "), "{text}");
        assert!(lab.notes.iter().any(|n| n.contains(why)), "{:?}", lab.notes);
        let t = crate::topology::parse(&text, std::path::Path::new("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(t.bridges[0].vxlan.is_none());
    }
}

/// A tunnel that is not exactly what nsfw makes (an all-zeros entry with its own port, an
/// attribute such as `ttl inherit`): `apply --adopt` would refuse it, so its key is written
/// commented out, with a note that names why and that it stays on its bridge as it is.
#[test]
fn a_tunnel_unlike_nsfws_is_commented_and_left_as_it_is() {
    let mut inherit = with_tunnel(Some("192.0.2.10"), &["192.0.2.11"]);
    inherit.host.fdb.retain(|f| f.via.is_own());
    if let Some(x) = inherit.host.links.iter_mut().find_map(|l| l.vxlan.as_mut()) {
        x.odd = Some(28); // IFLA_VXLAN_TTL_INHERIT
    }
    // A multicast group's entry names its device (by name, not index).
    let mut group = with_tunnel(Some("192.0.2.10"), &["192.0.2.11"]);
    group.host.fdb.retain(|f| f.via.is_own());
    group.host.fdb.push(crate::plumbing::Fdb {
        index: 9,
        dst: "239.1.1.1".parse().unwrap(),
        via: crate::plumbing::Via {
            dev: Some(3),
            ..Default::default()
        },
    });
    for (o, why) in [
        (
            with_tunnel(Some("192.0.2.10"), &["192.0.2.11"]),
            "dst 192.0.2.13 port 9999",
        ),
        (group, "dst 239.1.1.1 via br0)"),
        (inherit, "`ttl inherit` set"),
    ] {
        let lab = lab::build("lab", &o, &[]);
        let text = render::toml(&lab);
        assert!(text.contains("\n# vxlan = { id = 100, local = "), "{text}");
        assert!(
            lab.notes
                .iter()
                .any(|n| n.contains(why) && n.contains("stays on br0 as it is")),
            "{:?}",
            lab.notes
        );
        let t = crate::topology::parse(&text, std::path::Path::new("lab.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(t.bridges[0].vxlan.is_none());
    }
}
