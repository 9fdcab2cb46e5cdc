//! `plan::ports` and `plan::with_lan` on a taken port: what is trusted as its LAN, and what
//! cannot be taken at all.

use super::tests::{ONE, addr, net, route, with_port};
use super::{Owner, plan};
use crate::state::Record;
use crate::testdata::topology;

/// A VPN's `0.0.0.0/1` + `128.0.0.0/1` in a table of its own once made every source trusted
/// under the bridge's name: only connected subnets and main-table routes via a next hop on
/// the port, no broader than a /8 and not overlapping another bridge's, are the LAN.
#[test]
fn only_the_lan_behind_a_taken_port_is_trusted_and_what_is_left_out_is_said() {
    let (_, mut o) = with_port("take_addresses = true\n");
    o.host.addrs.push(addr(31, "192.0.2.2/24"));
    let gw = Some("192.0.2.1");
    let mut add = |dst: &str, via: Option<&str>, table: u32| {
        let mut r = route(dst, via, 31, false);
        (r.ours, r.proto, r.table) = (false, 4, table);
        if table == 254 {
            o.host.routes.push(r);
        } else {
            o.host.other_tables.push(r);
        }
    };
    add("0.0.0.0/1", gw, 100);
    add("128.0.0.0/1", gw, 100);
    add("198.51.100.0/24", gw, 100);
    add("4.0.0.0/6", gw, 254);
    add("198.19.0.0/16", None, 254);
    add("198.18.0.0/24", gw, 254);
    add("10.0.0.0/8", gw, 254);
    add("10.31.0.0/16", gw, 254);
    let text = ONE.replace(
        "[bridges.br0]\n",
        "[bridges.br0]\nports = [\"eth1\"]\ntake_addresses = true\n",
    ) + "[bridges.br1]\naddress = \"10.31.0.1/24\"\n";
    let t = topology("one", &text);
    let (t, warnings) = super::with_lan(&t, &o, &Record::default());
    assert_eq!(
        t.trusted_sources("br0", false),
        [
            net("10.10.0.0/24"),
            net("192.0.2.0/24"),
            net("198.18.0.0/24")
        ]
    );
    let w = warnings.join("\n");
    for left in [
        "0.0.0.0/1 (a route of table 100)",
        "128.0.0.0/1 (a route of table 100)",
        "198.51.100.0/24 (a route of table 100)",
        "4.0.0.0/6 (broader than a /8",
        "198.19.0.0/16 (a route with no next hop)",
        "10.0.0.0/8 (overlaps 10.10.0.0/24",
        "10.31.0.0/16 (overlaps 10.31.0.0/24",
    ] {
        assert!(w.contains(left), "{left} not in {w}");
    }
}

/// Below MTU 1280 the kernel has no IPv6 on a link: a port whose IPv6 addresses would be
/// taken to such a bridge is refused before anything moves (it was enslaved first, and
/// lost them half-way through the run).
#[test]
fn a_port_with_ipv6_is_not_taken_to_a_bridge_below_1280() {
    let (d, mut o) = with_port("take_addresses = true\nmtu = 1279\n");
    o.host.addrs.push(addr(31, "192.0.2.2/24"));
    o.host.addrs.push(addr(31, "2001:db8:77::2/64"));
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(
        p.conflicts
            .iter()
            .any(|c| c.contains("eth1 carries IPv6 (2001:db8:77::2/64)")),
        "{:?}",
        p.conflicts
    );
    // IPv4 only: taken at 1279 as before.
    o.host.addrs.retain(|a| a.net.is_ipv4());
    let p = plan(&d, &o, &Record::default(), Owner::Topology("one"));
    assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
}
