//! Physical ports with `take_addresses`: every route through the port (any table, its
//! protocol, metric and source) and every address (flags, lifetimes) moves to the bridge and
//! comes back as it was, at flush and when the port leaves the file while the bridge stays.
//! Packets to a subnet behind a static route of the port are the witness.

mod common;

use common::Sandbox;

const TAKE: &str = r#"
name = "p"
[bridges.br0]
address = "10.10.0.1/24"
ports = ["eth9"]
take_addresses = true
[namespaces.ns1]
bridge = "br0"
"#;

/// What the port had, as `ip` prints it: routes of every table but local and the kernel's,
/// and the addresses with their flags (lifetimes are left out: they count down).
fn held(sb: &Sandbox, dev: &str) -> Vec<String> {
    let routes = sb.ok(&format!(
        "ip route show table all dev {dev} | grep -v 'proto kernel\\|table local\\|^fe80\\|^multicast' || true"
    ));
    let addrs = sb.ok(&format!(
        "ip -o -4 addr show dev {dev} | sed 's/.*inet /inet /; s/ {dev}.*//; s/brd [^ ]* //'"
    ));
    let mut out: Vec<String> = routes
        .lines()
        .chain(addrs.lines())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    out.sort();
    out
}

/// A "physical" eth9 (one end of a pair whose other end, in `wire`, is the next hop) with a
/// default route (metric 100, proto static), a static route to 203.0.113.0/24, a policy
/// routing table and a second address with lifetimes and noprefixroute.
fn uplink(sb: &Sandbox) -> Vec<String> {
    sb.ok("ip netns add wire && ip link add eth9 type veth peer name eth0 netns wire \
           && ip link set eth9 up && ip addr add 192.0.2.5/24 dev eth9 \
           && ip addr add 192.0.2.6/24 dev eth9 valid_lft 3000 preferred_lft 2000 noprefixroute \
           && ip -n wire link set eth0 up && ip -n wire link set lo up \
           && ip -n wire addr add 192.0.2.1/24 dev eth0 && ip -n wire addr add 192.0.2.3/24 dev eth0 \
           && ip -n wire addr add 203.0.113.9/32 dev lo \
           && ip -n wire route add 10.10.0.0/24 via 192.0.2.5 \
           && ip route add default via 192.0.2.1 dev eth9 proto static metric 100 \
           && ip route add 203.0.113.0/24 via 192.0.2.3 dev eth9 proto static \
           && ip route add 198.18.0.0/15 via 192.0.2.3 dev eth9 table 100 proto static metric 5 src 192.0.2.5");
    let before = held(sb, "eth9");
    assert_eq!(before.len(), 5, "{before:?}");
    before
}

/// `lines` through another interface, with the bridge's own address beside them.
fn on_bridge(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().map(|l| l.replace("eth9", "br0")).collect();
    out.push("inet 10.10.0.1/24 scope global".to_string());
    out.sort();
    out
}

#[test]
fn a_taken_port_gives_back_every_route_and_address_as_it_was() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = uplink(&sb);
    let f = sb.file("p.toml", TAKE);
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    // On the bridge meanwhile, verbatim: the static route still leads to 203.0.113.9.
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    assert!(held(&sb, "eth9").is_empty(), "{:?}", held(&sb, "eth9"));
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    // The record, written before anything changed, holds every route.
    let rec = sb.ok("cat /run/nsfw/record");
    assert!(
        rec.contains("203.0.113.0/24") && rec.contains("\"table\":100"),
        "{rec}"
    );
    // Someone deletes a taken route: drift, put back as it was (proto static, not nsfw's).
    sb.ok("ip route del 203.0.113.0/24 dev br0");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        d.contains("203.0.113.0/24 via 192.0.2.3 dev br0 proto 4"),
        "{d}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    // Flush: back on the port exactly as before, and packets take it.
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(held(&sb, "eth9"), before);
    assert!(sb.ok("ip route get 203.0.113.9").contains("dev eth9"));
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    assert!(
        sb.ok("ip -o addr show dev eth9")
            .contains("dynamic noprefixroute")
    );
}

#[test]
fn a_port_that_leaves_the_file_gets_its_routes_back_while_the_bridge_stays() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = uplink(&sb);
    let f = sb.file("p.toml", TAKE);
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    let without = sb.file(
        "q.toml",
        &TAKE.replace("ports = [\"eth9\"]\ntake_addresses = true\n", ""),
    );
    sb.nsfw_code(&["apply", &without], 0);
    sb.nsfw_code(&["diff", &without], 0);
    assert_eq!(held(&sb, "eth9"), before);
    // The bridge keeps its own address only.
    let br = held(&sb, "br0");
    assert_eq!(br, vec!["inet 10.10.0.1/24 scope global".to_string()]);
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    assert!(
        !sb.ok("cat /run/nsfw/record 2>/dev/null || true")
            .contains("eth9")
    );
}

/// A NIC whose LAN routes through the host: eth8 (192.0.2.2/24) with a LAN router `lan`
/// (192.0.2.10) behind it, and 198.18.0.0/24 behind that router (on its loopback), routed by
/// the host through it. Taken by a bridge, the LAN keeps reaching the world and ns1 through
/// the host; given back at flush, the LAN reaches the host at once (announced, not waiting
/// for its stale neighbour entry to time out).
#[test]
fn a_taken_nic_keeps_routing_its_lan_and_announces_the_move() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["192.0.2.0/24", "198.18.0.0/24"]);
    sb.ok(
        "ip netns add lan && ip link add eth8 type veth peer name eth0 netns lan \
           && ip link set eth8 up && ip addr add 192.0.2.2/24 dev eth8 \
           && ip -n lan link set lo up && ip -n lan link set eth0 up \
           && ip -n lan addr add 192.0.2.10/24 dev eth0 && ip -n lan addr add 198.18.0.1/32 dev lo \
           && ip -n lan route add default via 192.0.2.2 \
           && ip route add 198.18.0.0/24 via 192.0.2.10 dev eth8 \
           && ip addr add 2001:db8:77::2/64 dev eth8 nodad \
           && ip -n lan addr add 2001:db8:77::10/64 dev eth0 nodad \
           && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
    );
    let lan_reaches = |from: &str, to: &str| {
        sb.sh(&format!("ip netns exec lan ping -c1 -W2 -I {from} {to}"))
            .status
            .success()
    };
    assert!(lan_reaches("192.0.2.10", "203.0.113.10"));
    // The world reaches the LAN's hosts and routed network: nsfw does not firewall a LAN it
    // does not own, before the take or after.
    let world_reaches = |to: &str| {
        sb.sh(&format!("ip netns exec wan ping -c1 -W1 {to}"))
            .status
            .success()
    };
    assert!(world_reaches("192.0.2.10") && world_reaches("198.18.0.1"));
    let f = sb.file(
        "p.toml",
        r#"
name = "p"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
ports = ["eth8"]
take_addresses = true
[namespaces.ns1]
bridge = "br0"
"#,
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    for from in ["192.0.2.10", "198.18.0.1"] {
        assert!(lan_reaches(from, "203.0.113.10"), "lan {from} → internet");
        assert!(lan_reaches(from, "10.10.0.2"), "lan {from} → ns1");
    }
    assert!(sb.pings("ns1", "203.0.113.10"));
    for to in ["192.0.2.10", "198.18.0.1"] {
        assert!(world_reaches(to), "world → lan {to}");
    }
    // The namespaces are not the LAN: still closed to the world.
    sb.ok("ip -n wan route add 10.10.0.0/24 via 198.51.100.1");
    assert!(!world_reaches("10.10.0.2"), "world → ns1");
    // Flush: the address goes back to eth8, whose MAC the LAN's entry does not hold yet.
    sb.ok(
        "ip netns exec lan ping -c1 -W1 192.0.2.2 && ip netns exec lan ping -c1 -W1 2001:db8:77::2",
    );
    sb.nsfw_code(&["flush", &f], 0);
    let mac = sb.ok("ip -o link show dev eth8 | sed 's/.*link\\/ether \\([^ ]*\\).*/\\1/'");
    for a in ["192.0.2.2", "2001:db8:77::2"] {
        let seen = sb.ok(&format!("ip -n lan neigh show {a}"));
        assert!(
            seen.contains(mac.trim()),
            "LAN's entry {seen} is not eth8's {mac}"
        );
        let out = sb.ok(&format!("ip netns exec lan ping -c1 -W1 {a}"));
        assert!(out.contains("1 received"), "{out}");
    }
    // The host forwards IPv6: its NA says it is a router, the LAN's entry keeps IsRouter.
    let seen = sb.ok("ip -n lan -6 neigh show 2001:db8:77::2");
    assert!(seen.contains("router"), "{seen}");
}

/// A port that was down before apply is down again after flush (nsfw brings it up to bridge
/// it, and gives it back as it was), with or without addresses to take.
#[test]
fn a_port_that_was_down_is_down_again_after_flush() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok(
        "ip link add eth8 type veth peer name eth8p && ip link add eth9 type veth peer name eth9p \
           && ip addr add 192.0.2.2/24 dev eth9",
    );
    let f = sb.file(
        "d.toml",
        r#"
name = "d"
[bridges.br0]
address = "10.10.0.1/24"
ports = ["eth8"]
[bridges.br1]
address = "10.11.0.1/24"
ports = ["eth9"]
take_addresses = true
"#,
    );
    sb.nsfw_code(&["apply", &f], 0);
    for p in ["eth8", "eth9"] {
        let l = sb.ok(&format!("ip -o link show dev {p}"));
        assert!(l.contains(",UP"), "{p} is bridged up: {l}");
    }
    sb.nsfw_code(&["diff", &f], 0);
    sb.nsfw_code(&["flush", &f], 0);
    for p in ["eth8", "eth9"] {
        let l = sb.ok(&format!("ip -o link show dev {p}"));
        assert!(
            !l.contains(",UP") && !l.contains("<UP"),
            "{p} is down again: {l}"
        );
    }
    let a = sb.ok("ip -o addr show dev eth9");
    assert!(a.contains("192.0.2.2/24"), "{a}");
}

/// What an address is besides its network comes back as it was: no broadcast address where
/// it had none, its broadcast where it had one, and its metric (IFA_RT_PRIORITY); a route its
/// RTA_METRICS (`mtu`, `advmss`).
#[test]
fn a_taken_address_keeps_its_broadcast_and_metric() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok(
        "ip link add eth8 type veth peer name eth8p && ip link set eth8 up \
           && ip addr add 192.0.2.2/24 dev eth8 metric 77 \
           && ip addr add 198.18.0.2/24 brd 198.18.0.255 dev eth8 \
           && ip route add 198.19.0.0/24 via 192.0.2.10 dev eth8 mtu 1400 advmss 1300",
    );
    let route = || sb.ok("ip -o route show 198.19.0.0/24");
    let show = |dev: &str| {
        sb.ok(&format!(
            "ip -o -4 addr show dev {dev} | sed 's/ valid_lft.*//; s/^[0-9]*: [^ ]* *//'"
        ))
    };
    let before = show("eth8");
    assert!(before.contains("metric 77"), "{before}");
    let f = sb.file(
        "a.toml",
        r#"
name = "a"
[bridges.br0]
address = "10.10.0.1/24"
ports = ["eth8"]
take_addresses = true
"#,
    );
    sb.nsfw_code(&["apply", &f], 0);
    let held = show("br0");
    for want in ["192.0.2.2/24 metric 77", "198.18.0.2/24 brd 198.18.0.255"] {
        assert!(held.contains(want), "{want} not in {held}");
    }
    assert!(!held.contains("brd 192.0.2.255"), "{held}");
    let r = route();
    assert!(
        r.contains("dev br0") && r.contains("mtu 1400 advmss 1300"),
        "{r}"
    );
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(show("eth8"), before);
    let r = route();
    assert!(
        r.contains("dev eth8") && r.contains("mtu 1400 advmss 1300"),
        "{r}"
    );
}
