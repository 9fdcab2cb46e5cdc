//! Routed labs with real packets: a router namespace between two segments (one L2-only),
//! routes on both sides, NAT by the host or by the router, edits applied in one step, drift
//! inside the router repaired, physical ports taken and given back, impaired links.

mod common;

use common::{Sandbox, show};

const ROUTER: &str = include_str!("../rulesets/router.toml");

/// `try`'s table rows, whitespace-normalised.
fn rows(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_router_lab_meets_every_expectation() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", ROUTER);
    let out = sb.nsfw_code(&["try", &f], 0);
    let rows = rows(&out);
    // Written out, not derived: across the router both ways, out through the host's NAT,
    // nothing in from the world.
    for want in [
        "ns3 ns1 10.10.0.2 v4 tcp/9000 reach reach ok",
        "ns1 ns3 10.20.0.2 v4 tcp/9000 reach reach ok",
        "ns3 internet 203.0.113.10 v4 tcp/8000 reach as 198.51.100.1 reach ok",
        "wan ns3 10.20.0.2 v4 tcp/9000 blocked blocked ok",
        "ns3 router 10.20.0.1 v4 icmp reach reach ok",
    ] {
        assert!(rows.iter().any(|r| r == want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_masquerading_router_hides_its_subnet_and_flush_takes_its_table() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "r.toml",
        &ROUTER.replace("forward = true", "masquerade = \"eth0\""),
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let inside = sb.ok("ip netns exec router nft list ruleset");
    assert!(
        inside.contains("table inet nsfw_router") && inside.contains("oifname \"eth0\" masquerade"),
        "{inside}"
    );
    // The host sees the router's address, not ns3's.
    sb.serve(None, "tcp", &[7000]);
    assert_eq!(
        sb.ask(Some("ns3"), "tcp", "10.10.0.1", 7000).as_deref(),
        Some("10.10.0.254")
    );
    // Nothing new in through the masqueraded side: ns1 cannot open a connection to ns3.
    sb.serve(Some("ns3"), "tcp", &[7001]);
    assert_eq!(sb.ask(Some("ns1"), "tcp", "10.20.0.2", 7001), None);
    // Someone empties the router's table: diff says so, apply puts it back.
    sb.ok("ip netns exec router nft flush chain inet nsfw_router postrouting");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(d.contains("router:inet nsfw_router"), "{d}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    // Without `masquerade` the NAT goes; the table stays for its anti-spoofing.
    let plain = sb.file("p.toml", ROUTER);
    sb.nsfw_code(&["apply", &plain], 0);
    let inside = sb.ok("ip netns exec router nft list ruleset");
    assert!(
        !inside.contains("masquerade") && inside.contains("fib saddr . iif oif missing"),
        "{inside}"
    );
    sb.nsfw_code(&["flush", &plain], 0);
    assert!(sb.leftovers(&[]).is_empty(), "{:?}", sb.leftovers(&[]));
}

#[test]
fn edits_take_one_apply_and_traffic_follows() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", ROUTER);
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "tcp", &[7000]);
    assert_eq!(
        sb.ask(Some("ns3"), "tcp", "10.10.0.2", 7000).as_deref(),
        Some("10.20.0.2")
    );
    // The router's eth1 and ns3 move to a new L2-only segment.
    let moved = ROUTER
        .replace("[bridges.br1]\n", "[bridges.br1]\n[bridges.br2]\n")
        .replace(
            "[namespaces.router.interfaces.eth1]\nbridge = \"br1\"",
            "[namespaces.router.interfaces.eth1]\nbridge = \"br2\"",
        )
        .replace(
            "[namespaces.ns3]\nbridge = \"br1\"",
            "[namespaces.ns3]\nbridge = \"br2\"",
        );
    let m = sb.file("moved.toml", &moved);
    sb.nsfw_code(&["apply", &m], 0);
    sb.nsfw_code(&["diff", &m], 0);
    let links = sb.ok("ip -o link show master br2");
    assert_eq!(links.lines().count(), 2, "{links}");
    assert_eq!(
        sb.ask(Some("ns3"), "tcp", "10.10.0.2", 7000).as_deref(),
        Some("10.20.0.2")
    );
    // A route added to the router.
    let routed = moved.replace(
        "routes = [{ to = \"0.0.0.0/0\", via = \"10.10.0.1\" }]",
        "routes = [{ to = \"0.0.0.0/0\", via = \"10.10.0.1\" }, { to = \"10.30.0.0/24\", via = \"10.20.0.2\" }]",
    );
    let r = sb.file("routed.toml", &routed);
    let out = sb.nsfw_code(&["apply", &r], 0);
    assert!(
        out.contains("+ route router: 10.30.0.0/24 via 10.20.0.2"),
        "{out}"
    );
    sb.nsfw_code(&["diff", &r], 0);
    assert!(
        sb.ok("ip -n router route show 10.30.0.0/24")
            .contains("via 10.20.0.2 dev eth1")
    );
}

#[test]
fn drift_inside_the_router_is_reported_and_repaired() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", ROUTER);
    sb.nsfw_code(&["apply", &f], 0);
    for (breakage, expect) in [
        (
            "ip -n router route del default",
            "+ route router: default via 10.10.0.1 dev eth0",
        ),
        (
            "ip netns exec router sysctl -qw net.ipv4.ip_forward=0",
            "~ sysctl router:net.ipv4.ip_forward: 0 → 1",
        ),
        (
            "ip route del 10.20.0.0/24",
            "+ route host: 10.20.0.0/24 via 10.10.0.254 dev br0",
        ),
    ] {
        sb.ok(breakage);
        let out = sb.nsfw_code(&["diff", &f], 2);
        assert!(
            out.contains(expect),
            "{breakage}: expected {expect:?} in\n{out}"
        );
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
    }
    assert!(sb.pings("ns3", "10.10.0.2"));
    // A host route taken out of the file goes.
    let fewer = sb.file(
        "fewer.toml",
        &ROUTER.replace(
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }]",
            "",
        ),
    );
    sb.nsfw_code(&["apply", &fewer], 0);
    assert!(sb.ok("ip route show 10.20.0.0/24").trim().is_empty());
}

const PORTED: &str = r#"
name = "p"
[bridges.br0]
address = "10.10.0.1/24"
ports = ["eth9"]
[namespaces.ns1]
bridge = "br0"
"#;

#[test]
fn physical_ports_are_taken_refused_and_given_back() {
    let Some(sb) = Sandbox::or_skip() else { return };
    // The "physical" interface: one end of a pair whose other end plays the wire.
    sb.ok("ip netns add wire && ip link add eth9 type veth peer name eth0 netns wire && ip link set eth9 up");
    let f = sb.file("p.toml", PORTED);
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.ok("ip -o link show eth9").contains("master br0"));
    sb.nsfw_code(&["diff", &f], 0);
    // Released by hand: drift, repaired.
    sb.ok("ip link set eth9 nomaster");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(d.contains("~ link eth9: master none → br0"), "{d}");
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.ok("ip -o link show eth9").contains("master br0"));
    // Something on the wire is reached through the bridge.
    sb.ok("ip -n wire link set eth0 up && ip -n wire addr add 10.10.0.99/24 dev eth0");
    assert!(sb.pings("ns1", "10.10.0.99"));
    sb.nsfw_code(&["flush", &f], 0);
    let l = sb.ok("ip -o link show eth9");
    assert!(!l.contains("master"), "{l}");

    // With an address and no take_addresses: refused, nothing made.
    sb.ok("ip addr add 192.0.2.5/24 dev eth9");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bridges.br0.ports")
            && err.contains("192.0.2.5/24")
            && err.contains("take_addresses"),
        "{err}"
    );
    assert!(!sb.ok("ip -o link").contains("br0"));
    assert_eq!(sb.netns(), vec!["wire".to_string()]);

    // With take_addresses: the address and the default route move to the bridge, and back
    // at flush.
    sb.ok("ip route add default via 192.0.2.1 dev eth9");
    let t = sb.file(
        "t.toml",
        &PORTED.replace(
            "ports = [\"eth9\"]",
            "ports = [\"eth9\"]\ntake_addresses = true",
        ),
    );
    sb.nsfw_code(&["apply", &t], 0);
    sb.nsfw_code(&["diff", &t], 0);
    assert!(sb.ok("ip -o addr show dev br0").contains("192.0.2.5/24"));
    assert!(!sb.ok("ip -o addr show dev eth9").contains("192.0.2.5"));
    assert!(
        sb.ok("ip route show default")
            .contains("via 192.0.2.1 dev br0")
    );
    sb.nsfw_code(&["flush", &t], 0);
    assert!(sb.ok("ip -o addr show dev eth9").contains("192.0.2.5/24"));
    assert!(
        sb.ok("ip route show default")
            .contains("via 192.0.2.1 dev eth9")
    );
    assert!(
        sb.leftovers(&["eth9", "wire"]).is_empty(),
        "{:?}",
        sb.leftovers(&["eth9", "wire"])
    );
}

#[test]
fn latency_on_an_interface_where_the_kernel_has_netem() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let lab = "name = \"lat\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[namespaces.ns1]\nbridge = \"br0\"\n";
    let slow = sb.file("slow.toml", &format!("{lab}latency = \"50ms\"\n"));
    let o = sb.nsfw(&["apply", &slow]);
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(1) && err.contains("no netem") {
        // Refused before anything changed, with the reason.
        assert!(sb.netns().is_empty(), "{err}");
        eprintln!("skipped: this kernel has no netem qdisc ({err})");
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    sb.nsfw_code(&["diff", &slow], 0);
    let rtt = |sb: &Sandbox| -> f64 {
        let out = sb.ok("ping -c3 -i0.2 -q 10.10.0.2 | tail -1");
        // "rtt min/avg/max/mdev = 50.1/50.2/50.4/0.1 ms": the average.
        out.split('=')
            .nth(1)
            .and_then(|v| v.split('/').nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(rtt(&sb) >= 50.0, "rtt {}", rtt(&sb));
    // try checks the delay too.
    let out = sb.nsfw_code(&["try", &slow], 0);
    assert!(out.contains("icmp rtt>=50ms"), "{out}");
    // Someone changes the qdisc by hand: drift, named, repaired.
    sb.ok("ip netns exec ns1 tc qdisc change dev eth0 root netem delay 5ms");
    let out = sb.nsfw_code(&["diff", &slow], 2);
    assert!(out.contains("netem"), "{out}");
    sb.nsfw_code(&["apply", &slow], 0);
    sb.nsfw_code(&["diff", &slow], 0);
    assert!(rtt(&sb) >= 50.0, "rtt {}", rtt(&sb));
    // Another latency: one apply.
    let slower = sb.file("slower.toml", &format!("{lab}latency = \"80ms\"\n"));
    sb.nsfw_code(&["apply", &slower], 0);
    sb.nsfw_code(&["diff", &slower], 0);
    assert!(rtt(&sb) >= 80.0, "rtt {}", rtt(&sb));
    let fast = sb.file("fast.toml", lab);
    sb.nsfw_code(&["apply", &fast], 0);
    sb.nsfw_code(&["diff", &fast], 0);
    assert!(rtt(&sb) < 5.0, "rtt {}", rtt(&sb));
}

/// A `[host]` route aggregating the subnets behind the router (10.20.0.0/16 over the router's
/// 10.20.0.0/24) gives bridge br0 nested source networks; they load (the kernel refuses
/// overlapping interval elements, so nsfw keeps the wider), and the lab works.
#[test]
fn an_aggregate_host_route_over_a_router_subnet_loads() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "agg.toml",
        &ROUTER.replace(
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }]",
            "routes = [{ to = \"10.20.0.0/16\", via = \"10.10.0.254\" }]",
        ),
    );
    assert!(
        std::fs::read_to_string(&f)
            .expect("file")
            .contains("10.20.0.0/16")
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    assert!(sb.pings("ns3", "10.10.0.2") && sb.pings("ns1", "10.20.0.2"));
}

/// rulesets/router.toml with IPv6 on both segments.
fn dual_stack_router() -> String {
    ROUTER
        .replace(
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }]",
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }, { to = \"fd00:20::/64\", via = \"fd00:10::fe\" }]",
        )
        .replace(
            "address = \"10.10.0.1/24\"\n",
            "address = \"10.10.0.1/24\"\naddress6 = \"fd00:10::1/64\"\n",
        )
        .replace(
            "address = \"10.10.0.2/24\"\n",
            "address = \"10.10.0.2/24\"\naddress6 = \"fd00:10::2/64\"\n",
        )
        .replace(
            "routes = [{ to = \"0.0.0.0/0\", via = \"10.10.0.1\" }]",
            "routes = [{ to = \"0.0.0.0/0\", via = \"10.10.0.1\" }, { to = \"::/0\", via = \"fd00:10::1\" }]",
        )
        .replace(
            "address = \"10.10.0.254/24\"\n",
            "address = \"10.10.0.254/24\"\naddress6 = \"fd00:10::fe/64\"\n",
        )
        .replace(
            "address = \"10.20.0.1/24\"\n",
            "address = \"10.20.0.1/24\"\naddress6 = \"fd00:20::1/64\"\n",
        )
        .replace(
            "gateway = \"10.20.0.1\"",
            "address6 = \"fd00:20::2/64\"\ngateway = \"10.20.0.1\"\ngateway6 = \"fd00:20::1\"",
        )
}

#[test]
fn a_router_forwards_ipv6_to_a_neighbour_it_never_talked_to() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let lab = dual_stack_router();
    assert!(
        lab.contains("gateway6") && lab.contains("fd00:10::fe"),
        "{lab}"
    );
    let f = sb.file("ds.toml", &lab);
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    // Every interface with IPv6 has its EUI-64 link-local address, usable at once.
    for (ns, dev) in [
        ("router", "eth0"),
        ("router", "eth1"),
        ("ns1", "eth0"),
        ("ns3", "eth0"),
    ] {
        let a = sb.ok(&format!("ip -n {ns} -6 -o addr show dev {dev} scope link"));
        assert!(
            a.contains("fe80::") && !a.contains("tentative"),
            "{ns} {dev}: {a}"
        );
    }
    // Cold caches everywhere: the first IPv6 packet ns3 → ns1 makes the router solicit ns1
    // for a packet it forwards (and the host solicit ns1 too). Both ways.
    let cold = "for n in ns1 ns3 router; do ip -n $n neigh flush all; done; ip neigh flush all";
    sb.ok(cold);
    sb.ok(cold);
    let o = sb.sh("ip netns exec ns3 ping -6 -c1 -W2 fd00:10::2");
    assert!(o.status.success(), "ns3 → ns1 first packet: {}", show(&o));
    sb.ok(cold);
    let o = sb.sh("ip netns exec ns1 ping -6 -c1 -W2 fd00:20::2");
    assert!(o.status.success(), "ns1 → ns3 first packet: {}", show(&o));
    // The link-local address is nsfw's like any other: deleted by hand, named and put back.
    let ll = sb.ok("ip -n router -6 -o addr show dev eth1 scope link | awk '{print $4}'");
    sb.ok(&format!("ip -n router addr del {} dev eth1", ll.trim()));
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(d.contains(&format!("+ address {}", ll.trim())), "{d}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    // verify's forwarded checks do not lean on a neighbour entry the router's own probes made.
    sb.ok(cold);
    let out = sb.nsfw_code(&["verify", &f], 0);
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn routing_that_leads_nowhere_is_warned_about_and_still_applied() {
    let Some(sb) = Sandbox::or_skip() else { return };
    // NAT named on the inside interface; a [host] route through an address nobody has.
    let lab = ROUTER
        .replace("forward = true", "forward = true\nmasquerade = \"eth1\"")
        .replace(
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }]",
            "routes = [{ to = \"10.20.0.0/24\", via = \"10.10.0.254\" }, { to = \"10.30.0.0/24\", via = \"10.10.0.77\" }]",
        );
    let f = sb.file("r.toml", &lab);
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("namespaces.router.masquerade = \"eth1\"")
            && err.contains("leaves through eth0"),
        "{err}"
    );
    assert!(
        err.contains("host.routes") && err.contains("10.10.0.77") && err.contains("no namespace"),
        "{err}"
    );
    // The file as shipped says nothing of the kind.
    let good = sb.file("good.toml", ROUTER);
    let o = sb.nsfw(&["apply", &good]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("masquerade") && !err.contains("no namespace"),
        "{err}"
    );
}
