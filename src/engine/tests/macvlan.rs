//! Children of a host uplink over the fake kernel: an uplink that cannot carry them, the
//! host's route to an IPv6 child through its shim.

use super::super::Target;
use super::super::fake::Fake;
use super::{apply, assert_in_sync, run};
use crate::plumbing::{Addr, Link};
use crate::resources::Place;
use crate::testdata::{Scratch, topology};

/// An in-memory host with an uplink `up0` (ifindex 90, MTU 1500), its alias `alias`.
fn with_up0(alias: Option<&str>) -> Fake {
    let mut k = Fake::new();
    k.net.host.links.push(Link {
        name: "up0".into(),
        mtu: 1500,
        alias: alias.map(String::from),
        ..Link::bare(90, true, false)
    });
    k
}

/// An uplink that cannot carry the child is refused before anything changes: an MTU above
/// the uplink's (the kernel would refuse it part-way), a link nsfw made (another topology's
/// bridge: its flush would take the child along), the host's own address, on the uplink or
/// on another of its links.
#[test]
fn an_unfit_uplink_is_refused_before_anything_changes() {
    for (mtu, alias, host_addr, why) in [
        (
            "mtu = 9000",
            None,
            None,
            "mtu = 9000 is above the uplink's 1500",
        ),
        (
            "",
            Some("nsfw:other"),
            None,
            "it is a link nsfw made (marked \"nsfw:other\")",
        ),
        (
            "",
            None,
            Some(("192.0.2.11/24", 90)),
            "address 192.0.2.11 is the host's own (on the uplink)",
        ),
        // On another link of the host's: it answers ARP for it on the uplink too, and its own
        // address wins over its route to the child.
        (
            "",
            None,
            Some(("192.0.2.11/32", 1)),
            "address 192.0.2.11 is the host's own (on lo)",
        ),
    ] {
        let t = topology(
            "mv",
            &format!(
                "name = \"mv\"\n[namespaces.m1]\nmacvlan = \"up0\"\naddress = \"192.0.2.11/24\"\n{mtu}\n"
            ),
        );
        let (mut k, dir) = (with_up0(alias), Scratch::new());
        k.net.host.links.push(Link {
            name: "lo".into(),
            ..Link::bare(1, true, false)
        });
        if let Some((a, index)) = host_addr {
            k.net.host.addrs.push(Addr::given(index, a));
        }
        let e = super::run(&mut k, &dir, &Target::apply(&t))
            .err()
            .expect("refused");
        let e = format!("{e:#}");
        assert!(e.contains(why) && e.contains("nothing was changed"), "{e}");
        assert!(k.sent.is_empty(), "{why}: {:#?}", k.sent);
    }
}

/// The chain of uplink `up0` in the fake kernel's netdev table of `mv`, as `nft` prints it.
fn uplink_chain(k: &Fake) -> String {
    let d = k.nft.netdev.get("nsfw_mv").expect("the uplink's table");
    let t = d.decoded().expect("decoded");
    let c = t
        .chains
        .iter()
        .find(|c| c.name == "up0")
        .expect("chain up0");
    c.rules
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// No tagged frame leaves the uplink while the host has no VLAN on it; a VLAN link of the
/// host's on the uplink appearing later (here, on a macvlan of the host's there) makes the
/// next apply drop those rules, and says so.
#[test]
fn tagged_frames_leave_the_uplink_only_when_the_host_has_a_vlan_there() {
    let t = topology(
        "mv",
        "name = \"mv\"\n[namespaces.m1]\nmacvlan = \"up0\"\naddress = \"192.0.2.11/24\"\n",
    );
    let (mut k, dir) = (with_up0(None), Scratch::new());
    super::apply(&mut k, &dir, &t);
    let tags = [
        "ether type { 8021q, 8021ad }",
        "meta protocol { 8021q, 8021ad }",
    ];
    let chain = uplink_chain(&k);
    for rule in tags {
        assert!(chain.contains(rule), "{rule}\n{chain}");
    }
    super::assert_in_sync(&mut k, &dir, &t);
    // A VLAN of the host's over a macvlan of the host's on the uplink: its frames are the
    // host's, tagged.
    k.net.host.links.push(Link {
        name: "shim0".into(),
        kind: Some("macvlan".into()),
        peer_index: Some(90),
        ..Link::bare(91, true, false)
    });
    k.net.host.links.push(Link {
        name: "shim0.5".into(),
        kind: Some("vlan".into()),
        peer_index: Some(91),
        ..Link::bare(92, true, false)
    });
    let (_, said) = super::run(&mut k, &dir, &Target::apply(&t)).expect("apply");
    // The run names each rule it takes out.
    for rule in tags {
        let line = format!("- nft rule netdev nsfw_mv up0: {rule} counter");
        assert!(said.iter().any(|l| l.starts_with(&line)), "{said:#?}");
    }
    k.sent.clear();
    let chain = uplink_chain(&k);
    for rule in tags {
        assert!(!chain.contains(rule), "{rule}\n{chain}");
    }
    super::assert_in_sync(&mut k, &dir, &t);
}

/// The host's route to an IPv6 child leaves from the shim's link-local address, which is
/// there before it (the fake refuses a source that is not); the source taken off the route,
/// or the address itself deleted, is repaired in one run.
#[test]
fn the_route_to_an_ipv6_child_leaves_from_the_shims_link_local() {
    let t = topology(
        "mv",
        r#"
name = "mv"
[namespaces.m1]
macvlan = "up0"
address = "192.0.2.11/24"
address6 = "2001:db8:200::21/64"
host_shim = true
"#,
    );
    let (mut k, dir) = (with_up0(None), Scratch::new());
    apply(&mut k, &dir, &t);
    let dst: ipnetwork::IpNetwork = "2001:db8:200::21/128".parse().unwrap();
    let src = |k: &Fake| {
        let r = k.net.host.routes.iter().find(|r| r.dst == dst);
        r.expect("the route").prefsrc
    };
    let v4 = k
        .net
        .host
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "192.0.2.11/32");
    // up0 has no IPv4 address on the child's subnet: the kernel's choice (see the next test).
    assert_eq!(v4.expect("the IPv4 route").prefsrc, None);
    let ll = src(&k).expect("a source");
    assert!(
        matches!(ll, std::net::IpAddr::V6(a) if a.is_unicast_link_local()),
        "{ll}"
    );
    let shim = k.net.host.links.iter().find(|l| l.name.starts_with("mvs-"));
    let ifname = shim.expect("the shim").name.clone();
    let net = ipnetwork::IpNetwork::new(ll, 64).unwrap();
    for by_hand in ["route", "address"] {
        let del = crate::kinds::DelAddr {
            place: Place::Host,
            ifname: ifname.clone(),
            net,
        };
        match by_hand {
            "route" => k.net.host.routes.iter_mut().for_each(|r| r.prefsrc = None),
            _ => k.net.apply(&crate::kinds::Step::DelAddr(del), "").unwrap(),
        }
        assert_eq!(src(&k), None, "{by_hand}");
        let (_, said) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
        assert!(
            said.iter().any(|l| l.contains(&format!("src {ll}"))),
            "{said:#?}"
        );
        assert_eq!(src(&k), Some(ll), "{by_hand}");
        k.sent.clear();
        assert_in_sync(&mut k, &dir, &t);
    }
}

/// The host's IPv4 route to a child through the shim leaves from the uplink's own address on
/// the child's subnet (the shim has none, and the kernel would take the host's first global
/// one: on a second uplink, an address off that LAN); it follows that address when it
/// changes.
#[test]
fn the_route_to_an_ipv4_child_leaves_from_the_uplinks_address_on_its_subnet() {
    let t = topology(
        "mv",
        "name = \"mv\"\n[namespaces.m1]\nmacvlan = \"up0\"\naddress = \"192.0.2.11/24\"\nhost_shim = true\n",
    );
    let (mut k, dir) = (with_up0(None), Scratch::new());
    let on_up0 = |net: &str| Addr::given(90, net);
    k.net
        .host
        .addrs
        .extend([on_up0("198.51.100.5/24"), on_up0("192.0.2.2/24")]);
    apply(&mut k, &dir, &t);
    let src = |k: &Fake| {
        let r = k
            .net
            .host
            .routes
            .iter()
            .find(|r| r.dst.to_string() == "192.0.2.11/32");
        r.expect("the route").prefsrc.map(|a| a.to_string())
    };
    assert_eq!(src(&k).as_deref(), Some("192.0.2.2"));
    // The uplink's address changed (a new lease): the route follows in one run.
    k.net
        .host
        .addrs
        .retain(|a| a.net.ip().to_string() != "192.0.2.2");
    k.net.host.addrs.push(on_up0("192.0.2.3/24"));
    let (_, said) = run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert!(
        said.iter().any(|l| l.contains("src 192.0.2.3")),
        "{said:#?}"
    );
    assert_eq!(src(&k).as_deref(), Some("192.0.2.3"));
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
    // Deleted as the kernel deletes an IPv4 address: the routes that left from it go with it.
    let del = crate::kinds::DelAddr {
        place: Place::Host,
        ifname: "up0".into(),
        net: "192.0.2.3/24".parse().expect("a net"),
    };
    k.net
        .apply(&crate::kinds::Step::DelAddr(del), "")
        .expect("deleted");
    let gone = |k: &Fake| {
        !k.net
            .host
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "192.0.2.11/32")
    };
    assert!(
        gone(&k),
        "the fake kernel deletes the route with its source"
    );
    k.net.host.addrs.push(on_up0("192.0.2.4/24"));
    run(&mut k, &dir, &Target::apply(&t)).expect("repair");
    assert_eq!(src(&k).as_deref(), Some("192.0.2.4"));
    k.sent.clear();
    assert_in_sync(&mut k, &dir, &t);
}
