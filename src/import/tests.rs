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

fn addr(index: u32, net: &str) -> Addr {
    Addr {
        index,
        net: net.parse().unwrap(),
        flags: 0,
        scope: 0,
        valid: u32::MAX,
        preferred: u32::MAX,
        brd: None,
        metric: 0,
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
    o.host.addrs = vec![addr(3, "10.10.0.1/24")];
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
            addrs: vec![addr(2, &format!("10.10.0.{}/24", i + 2))],
            routes: vec![default_via("10.10.0.1", 2)],
            ..Default::default()
        };
        o.namespaces.insert(ns.into(), NsObs { owner: None, node });
    }
    o.resolv
        .insert("ns1".into(), FileObs::Text("nameserver 1.1.1.1\n".into()));
    o
}

fn found(table: &str, chain: &str, text: &str) -> Found {
    Found {
        at: At {
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
