//! `guard`: under --adopt the plan removes nothing that was not nsfw's, and refuses to remove
//! what nsfw already holds.

use super::{Adoption, guard};
use crate::kinds::{DelAddr, DeleteLink, DeleteNamespace, Step};
use crate::plan::Plan;
use crate::plumbing::{Link, NsObs, Observed};
use crate::resources::Place;

fn ns(owner: Option<&str>) -> NsObs {
    NsObs {
        owner: owner.map(str::to_string),
        ..Default::default()
    }
}

fn del_ns(name: &str) -> Step {
    DeleteNamespace {
        name: name.into(),
        takes: vec![],
        why: "not in the file",
    }
    .into()
}

/// A topology `lab` applied (or adopted) before, and a file of the same name that names
/// none of it (what `import` wrote after the adoption): refused, nothing removed.
#[test]
fn adopt_refuses_to_remove_what_nsfw_already_holds() {
    let mut o = Observed::default();
    o.namespaces.insert("ns1".into(), ns(Some("nsfw:lab")));
    o.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        alias: Some("nsfw:lab".into()),
        ..Link::bare(3, true, false)
    });
    let mut p = Plan {
        steps: vec![
            del_ns("ns1"),
            DeleteLink {
                place: Place::Host,
                name: "br0".into(),
                index: 3,
                kind: Some("bridge".into()),
                why: "not in the file",
            }
            .into(),
        ],
        ..Default::default()
    };
    guard(&mut p, &o, &Adoption::default(), "lab.toml");
    assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
    assert!(
        p.conflicts[0].contains("namespace ns1"),
        "{:?}",
        p.conflicts
    );
    assert!(p.conflicts[1].contains("br0"), "{:?}", p.conflicts);
}

/// What the adopted namespace holds beyond the file (a second address, a route, a second
/// veth) stays, and is named.
#[test]
fn adopt_keeps_what_the_file_does_not_name_in_an_adopted_namespace() {
    let mut o = Observed::default();
    o.namespaces.insert("ns1".into(), ns(None));
    let mut a = Adoption::default();
    a.pending.namespaces.insert("ns1".into());
    let at = Place::Ns("ns1".into());
    let mut p = Plan {
        steps: vec![
            DelAddr {
                place: at.clone(),
                ifname: "eth0".into(),
                net: "10.10.0.50/24".parse().unwrap(),
            }
            .into(),
            DeleteLink {
                place: at.clone(),
                name: "extra0".into(),
                index: 9,
                kind: Some("veth".into()),
                why: "not in the file",
            }
            .into(),
        ],
        ..Default::default()
    };
    guard(&mut p, &o, &a, "lab.toml");
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("10.10.0.50/24"), "{:?}", p.warnings);
}

/// ip_forward found on may have been on before the lab (Docker): the adoption keeps the
/// original the plan recorded ("1"), so a flush leaves it on, and says so.
#[test]
fn adopted_ip_forward_stays_on_at_flush() {
    let k = crate::compile::IP_FORWARD.to_string();
    let mut p = Plan::default();
    for r in [&mut p.record_during, &mut p.record_after] {
        let e = r.sysctls.entry(k.clone()).or_default();
        e.original = "1".into();
        e.users.insert("lab".into());
    }
    let a = Adoption {
        sysctls: vec![k.clone()],
        ..Default::default()
    };
    super::finish(&mut p, a, "lab");
    assert_eq!(p.record_after.sysctls[&k].original, "1");
    assert_eq!(p.record_during.sysctls[&k].original, "1");
    assert!(
        p.warnings.iter().any(|w| w.contains("leaves it on")),
        "{:?}",
        p.warnings
    );
}

/// A namespace with no default route and no IPv6 (the file cannot say "none"): adopting it
/// gives it neither; a namespace that had a default route keeps getting nsfw's.
#[test]
fn adopt_gives_no_default_route_or_ipv6_a_namespace_had_none_of() {
    use crate::kinds::{AddAddr, SetRoute};
    use crate::resources::RouteSpec;
    let mut o = Observed::default();
    let mut iso = ns(None);
    // lo's ::1 is no IPv6 on the segment.
    iso.node.addrs.push(crate::plumbing::Addr {
        index: 1,
        net: "::1/128".parse().unwrap(),
        brd: None,
        metric: 0,
        flags: 0,
        scope: 254,
        valid: u32::MAX,
        preferred: u32::MAX,
    });
    o.namespaces.insert("iso".into(), iso);
    let mut a = Adoption::default();
    a.pending.namespaces.insert("iso".into());
    let at = Place::Ns("iso".into());
    let default = |dst: &str| -> Step {
        SetRoute {
            place: at.clone(),
            route: RouteSpec {
                dst: dst.parse().unwrap(),
                via: Some("10.10.0.1".parse().unwrap()),
                dev: "eth0".into(),
                metric: 0,
                kind: 1,
                src: None,
                orig: None,
            },
            old: None,
            again: false,
        }
        .into()
    };
    let v6: Step = AddAddr {
        place: at.clone(),
        ifname: "eth0".into(),
        net: "fd00:10::2/64".parse().unwrap(),
        orig: None,
    }
    .into();
    let mut p = Plan {
        steps: vec![default("0.0.0.0/0"), default("::/0"), v6],
        ..Default::default()
    };
    guard(&mut p, &o, &a, "lab.toml");
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    // Had one: nsfw's replaces it as usual.
    let mut o = Observed::default();
    let mut had = ns(None);
    had.node.routes.push(crate::plumbing::Route {
        dst: "0.0.0.0/0".parse().unwrap(),
        gateway: Some("10.10.0.254".parse().unwrap()),
        oif: Some(2),
        kernel: false,
        ours: false,
        metric: 0,
        kind: 1,
        table: 254,
        proto: 3,
        scope: 0,
        flags: 0,
        prefsrc: None,
        metrics: Default::default(),
    });
    o.namespaces.insert("iso".into(), had);
    let mut p = Plan {
        steps: vec![default("0.0.0.0/0")],
        ..Default::default()
    };
    guard(&mut p, &o, &a, "lab.toml");
    assert_eq!(p.steps.len(), 1, "{:?}", p.warnings);
}

const LAB: &str = "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\nuplink = \"uplink\"\n[namespaces.ns1]\nbridge = \"br0\"\npublish = [\"198.51.100.1:8080:80/tcp\"]\n";

fn legacy(chain: &str, pos: u64, text: &str) -> crate::import::rules::Found {
    use crate::import::rules::{At, Found, classify};
    Found {
        at: At {
            family: nft::Family::Ip,
            table: if chain.ends_with("ROUTING") {
                "nat"
            } else {
                "filter"
            }
            .into(),
            chain: chain.into(),
            handle: pos,
            legacy: Some(vec![pos as u8]),
        },
        text: text.into(),
        meaning: classify(chain, text),
    }
}

/// What `rules` removes of `found` (legacy, with `blockers`): their texts.
fn removed(
    found: Vec<crate::import::rules::Found>,
    blockers: Vec<crate::import::rules::Found>,
) -> Vec<String> {
    let t = crate::topology::parse(LAB, std::path::Path::new("t.toml")).expect("valid");
    let hand = super::HandRules {
        nft: vec![],
        nft_forward: Default::default(),
        legacy: crate::import::Legacy {
            found,
            blockers,
            ..Default::default()
        },
    };
    let mut a = Adoption::default();
    super::rules(&t, &mut a, &hand);
    a.legacy.into_iter().map(|f| f.text).collect()
}

/// H1, H2: a drop that stays below the lab's accepts (a catch-all DROP or REJECT, `-o br0
/// -j DROP`) keeps them, like a FORWARD policy drop; one above them, or none, does not.
#[test]
fn accepts_stay_above_a_drop_that_stays() {
    let guide = || {
        vec![
            legacy(
                "POSTROUTING",
                1,
                "ip saddr 10.10.0.0/24 oifname \"uplink\" masquerade",
            ),
            legacy("FORWARD", 1, "ct state established,related accept"),
            legacy("FORWARD", 2, "iifname \"br0\" oifname \"uplink\" accept"),
        ]
    };
    let nat = vec!["ip saddr 10.10.0.0/24 oifname \"uplink\" masquerade".to_string()];
    assert_eq!(removed(guide(), vec![]).len(), 3);
    for drop in [
        "drop",
        "oifname \"br0\" drop",
        "[nsfw cannot read this (xtables target REJECT): target name=\"REJECT\" rev=0 info=0x00]",
    ] {
        assert_eq!(
            removed(guide(), vec![legacy("FORWARD", 3, drop)]),
            nat,
            "{drop}"
        );
    }
    // Above the accepts: the traffic it drops never reached them anyway.
    let mut shifted = guide();
    for f in shifted.iter_mut().filter(|f| f.at.chain == "FORWARD") {
        f.at.handle += 1;
    }
    assert_eq!(
        removed(shifted, vec![legacy("FORWARD", 1, "drop")]).len(),
        3
    );
    // In DOCKER-USER an accept ends only that chain: a drop anywhere in FORWARD counts.
    let user = || {
        vec![legacy(
            "DOCKER-USER",
            1,
            "iifname \"br0\" oifname \"uplink\" accept",
        )]
    };
    assert_eq!(removed(user(), vec![]).len(), 1);
    assert!(removed(user(), vec![legacy("FORWARD", 1, "drop")]).is_empty());
}

/// M1, H5: a DNAT goes only when the file's publish says all of it; a masquerade `! -o
/// uplink` is not the file's masquerade.
#[test]
fn only_what_the_file_says_exactly_is_removed() {
    let at = |to: &str| format!("ip daddr 198.51.100.1 tcp dport 8080 dnat to {to}");
    let ns1 = crate::topology::parse(LAB, std::path::Path::new("t.toml"))
        .expect("valid")
        .namespaces[0]
        .ifaces[0]
        .address
        .ip()
        .to_string();
    let same = at(&format!("{ns1}:80"));
    assert_eq!(
        removed(vec![legacy("PREROUTING", 1, &same)], vec![]),
        vec![same]
    );
    for other in [
        at(&format!("{ns1}:22")),
        format!("ip daddr 198.51.100.9 tcp dport 8080 dnat to {ns1}:80"),
        format!("tcp dport 8080 dnat to {ns1}:80"),
        format!("ip daddr 198.51.100.1 udp dport 8080 dnat to {ns1}:80"),
    ] {
        assert!(
            removed(vec![legacy("PREROUTING", 1, &other)], vec![]).is_empty(),
            "{other}"
        );
    }
    let guides = "oifname != \"br0\" ip saddr 10.10.0.0/24 masquerade";
    assert_eq!(
        removed(vec![legacy("POSTROUTING", 1, guides)], vec![]).len(),
        1
    );
    let not_uplink = "oifname != \"uplink\" ip saddr 10.10.0.0/24 masquerade";
    assert!(removed(vec![legacy("POSTROUTING", 1, not_uplink)], vec![]).is_empty());
}

/// The same in iptables-nft's FORWARD (policy accept): an accept with a catch-all drop or a
/// jump to a chain that rejects below it stays; nsfw's own rules and a drop above do not count.
#[test]
fn nft_accepts_above_a_drop_that_stays_stay() {
    use crate::import::rules::{At, Found, classify};
    let t = crate::topology::parse(LAB, std::path::Path::new("t.toml")).expect("valid");
    let accept = "iifname \"br0\" oifname \"uplink\" accept";
    let found = Found {
        at: At {
            family: nft::Family::Ip,
            table: "filter".into(),
            chain: "FORWARD".into(),
            handle: 5,
            legacy: None,
        },
        text: accept.into(),
        meaning: classify("FORWARD", accept),
    };
    let kept = |rules: &[(&str, u64, &str, bool)]| {
        let hand = super::HandRules {
            nft: vec![found.clone()],
            nft_forward: crate::import::NftForward {
                rules: rules
                    .iter()
                    .map(|(c, h, t, o)| (c.to_string(), *h, t.to_string(), *o))
                    .collect(),
            },
            legacy: Default::default(),
        };
        let mut a = Adoption::default();
        super::rules(&t, &mut a, &hand);
        a.rules.is_empty()
    };
    assert!(!kept(&[("FORWARD", 5, accept, false)]));
    assert!(kept(&[
        ("FORWARD", 5, accept, false),
        ("FORWARD", 9, "drop", false)
    ]));
    assert!(kept(&[
        ("FORWARD", 5, accept, false),
        ("FORWARD", 2, "jump MINE", false),
        ("MINE", 3, "reject with icmp type port-unreachable", false),
    ]));
    assert!(!kept(&[
        ("FORWARD", 9, "drop", false),
        ("FORWARD", 5, accept, false)
    ]));
    assert!(!kept(&[
        ("FORWARD", 5, accept, false),
        ("FORWARD", 9, "drop", true)
    ]));
}

/// A tunnel `import` could not translate (or any hand-made port the file does not describe)
/// on a bridge being adopted: the plan would let it go of the bridge (nsfw's bridges have
/// the file's ports only); under --adopt it stays where it is, and a warning says so.
#[test]
fn adopt_leaves_a_port_the_file_does_not_describe_on_its_bridge() {
    use crate::kinds::{LinkAttr, SetLink};
    let mut o = Observed::default();
    o.host.links.push(Link {
        name: "br0".into(),
        kind: Some("bridge".into()),
        ..Link::bare(3, true, false)
    });
    o.host.links.push(Link {
        name: "vx100".into(),
        kind: Some("vxlan".into()),
        master: Some(3),
        ..Link::bare(4, true, false)
    });
    let mut a = Adoption::default();
    a.pending.links.insert("br0".into(), String::new());
    let detach: Step = SetLink {
        place: Place::Host,
        name: "vx100".into(),
        attrs: vec![LinkAttr::Master {
            old: Some("br0".into()),
            new: None,
        }],
    }
    .into();
    let mut p = Plan {
        steps: vec![detach],
        ..Default::default()
    };
    guard(&mut p, &o, &a, "lab.toml");
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.left_out.len(), 1);
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
    assert!(
        p.warnings.len() == 1 && p.warnings[0].contains("vx100 is not nsfw's"),
        "{:?}",
        p.warnings
    );
}
