//! The plumbing half: namespaces, bridges, veths, addresses and routes, made and kept right by
//! `nsfw apply`, removed by `nsfw flush`. `ip` and `ping` are the witnesses.

mod common;

use common::{LAB, Sandbox, show};

fn lab(sb: &Sandbox) -> String {
    sb.file("lab.toml", LAB)
}

#[test]
fn lab_comes_up() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = lab(&sb);
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("+ namespace ns1"), "{out}");
    assert_eq!(sb.netns(), ["ns1", "ns2"]);
    for (from, to) in [
        ("ns1", "10.10.0.3"),
        ("ns2", "10.10.0.2"),
        ("ns1", "10.10.0.1"),
        ("ns2", "10.10.0.1"),
    ] {
        assert!(sb.pings(from, to), "{from} cannot reach {to}");
    }
    // The kernel holds what the file says, and nsfw's mark.
    let br = sb.json("ip -d -j link show dev br0");
    assert_eq!(br[0]["ifalias"], "nsfw:lab");
    assert_eq!(br[0]["linkinfo"]["info_kind"], "bridge");
    let veth = sb.json("ip -j link show dev veth-ns1");
    assert_eq!(veth[0]["master"], "br0");
    assert_eq!(veth[0]["ifalias"], "nsfw:lab");
    let addr = sb.ok("ip -n ns1 -4 -o addr show dev eth0");
    assert!(addr.contains("10.10.0.2/24"), "{addr}");
    let route = sb.ok("ip -n ns1 route show default");
    assert!(route.contains("default via 10.10.0.1 dev eth0"), "{route}");
    let lo = sb.json("ip -n ns2 -j link show dev lo");
    assert!(
        lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{lo}"
    );
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    // nsfw manages IPv4: its veths get no IPv6 link-local address (see nl::no_ipv6_link_local).
    for cmd in [
        "ip -6 addr show dev veth-ns1",
        "ip -n ns1 -6 addr show dev eth0",
    ] {
        assert_eq!(sb.ok(cmd).trim(), "", "{cmd}");
    }
}

#[test]
fn options_are_applied_and_dns_is_seen_by_ip_netns_exec() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "opts.toml",
        r#"
name = "opts"
[host]
ip_forward = false
[bridges.lan0]
address = "192.168.77.1/24"
mtu = 1400
mac = "02:00:00:00:00:01"
[namespaces.alpha]
bridge = "lan0"
ifname = "lan"
host_ifname = "h-alpha"
mac = "02:00:00:00:01:01"
mtu = 1400
dns = ["192.0.2.53", "2001:db8::53"]
[namespaces.beta]
bridge = "lan0"
"#,
    );
    sb.nsfw_code(&["apply", &f], 0);
    let br = sb.json("ip -j link show dev lan0");
    assert_eq!(br[0]["mtu"], 1400);
    assert_eq!(br[0]["address"], "02:00:00:00:00:01");
    let a = sb.json("ip -n alpha -j link show dev lan");
    assert_eq!(a[0]["mtu"], 1400);
    assert_eq!(sb.json("ip -j link show dev h-alpha")[0]["mtu"], 1400);
    assert_eq!(a[0]["address"], "02:00:00:00:01:01");
    assert_eq!(sb.json("ip -j link show dev h-alpha")[0]["master"], "lan0");
    // Addresses left out are handed out in file order, from the first after the gateway.
    assert!(sb.ok("ip -n alpha -4 -o addr").contains("192.168.77.2/24"));
    assert!(sb.ok("ip -n beta -4 -o addr").contains("192.168.77.3/24"));
    // One MTU per L2 segment: every port has the bridge's.
    assert_eq!(sb.json("ip -n beta -j link show dev eth0")[0]["mtu"], 1400);
    let resolv = sb.ok("ip netns exec alpha cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    assert!(resolv.contains("nameserver 2001:db8::53"), "{resolv}");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
    assert!(sb.pings("alpha", "192.168.77.3"));
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"));
}

#[test]
fn second_apply_changes_nothing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    let indexes = || -> Vec<u64> {
        [
            (None, "br0"),
            (None, "veth-ns1"),
            (None, "veth-ns2"),
            (Some("ns1"), "eth0"),
            (Some("ns2"), "eth0"),
        ]
        .iter()
        .map(|(ns, d)| sb.ifindex(*ns, d))
        .collect()
    };
    let before = indexes();
    let links_before = sb.ok("ip link; ip -n ns1 link; ip -n ns2 link");
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("nothing to do"), "{out}");
    let after = indexes();
    assert_eq!(before, after);
    assert_eq!(
        links_before,
        sb.ok("ip link; ip -n ns1 link; ip -n ns2 link")
    );
    sb.nsfw_code(&["diff", &f], 0);
}

#[test]
fn drift_is_repaired() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    let ns2_eth = sb.ifindex(None, "veth-ns2");

    // A veth deleted by hand.
    sb.ok("ip link del veth-ns1");
    assert!(!sb.pings("ns1", "10.10.0.3"));
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("+ veth veth-ns1"), "{out}");
    assert!(sb.pings("ns1", "10.10.0.3"));
    assert_eq!(
        sb.ifindex(None, "veth-ns2"),
        ns2_eth,
        "the untouched veth was recreated"
    );

    // The bridge deleted by hand: the ports fall off it and must be put back.
    sb.ok("ip link del br0");
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("+ bridge br0"), "{out}");
    assert!(out.contains("master none → br0"), "{out}");
    assert!(sb.pings("ns1", "10.10.0.3") && sb.pings("ns2", "10.10.0.1"));

    // A namespace deleted by hand.
    sb.ok("ip netns del ns2");
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("+ namespace ns2"), "{out}");
    assert!(sb.pings("ns1", "10.10.0.3") && sb.pings("ns2", "10.10.0.1"));

    // Smaller drifts: address, route, link state, MTU.
    sb.ok("ip -n ns1 addr flush dev eth0; ip -n ns2 route del default; ip link set veth-ns1 nomaster; ip link set br0 mtu 1400");
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(out.contains("+ address 10.10.0.2/24 on ns1:eth0"), "{out}");
    assert!(out.contains("+ route ns2: default via 10.10.0.1"), "{out}");
    assert!(out.contains("~ link br0: mtu 1400 → 1500"), "{out}");
    assert!(sb.pings("ns1", "10.10.0.3") && sb.pings("ns2", "10.10.0.1"));
    assert!(sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"));
}

#[test]
fn namespaces_removed_from_the_file_are_removed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let three = format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\ndns = [\"192.0.2.1\"]\n");
    let f3 = sb.file("three.toml", &three);
    sb.nsfw_code(&["apply", &f3], 0);
    assert_eq!(sb.netns(), ["ns1", "ns2", "ns3"]);
    assert!(sb.ok("ls /etc/netns").contains("ns3"));
    let keep = sb.ifindex(None, "veth-ns1");
    let f2 = lab(&sb);
    let out = sb.nsfw_code(&["apply", &f2], 0);
    assert!(out.contains("- namespace ns3"), "{out}");
    assert_eq!(sb.netns(), ["ns1", "ns2"]);
    assert!(
        !sb.sh("ip link show veth-ns3").status.success(),
        "veth-ns3 is still there"
    );
    assert!(
        !sb.ok("ls /etc/netns").contains("ns3"),
        "resolv.conf of ns3 is still there"
    );
    assert_eq!(sb.ifindex(None, "veth-ns1"), keep);
    assert!(sb.pings("ns1", "10.10.0.3"));
}

#[test]
fn foreign_objects_are_errors_and_left_alone() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = lab(&sb);

    sb.ok("ip link add br0 type bridge; ip link set br0 mtu 1280");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error:") && err.contains("br0") && err.contains("does not own"),
        "{err}"
    );
    assert!(
        sb.netns().is_empty(),
        "apply created namespaces despite the conflict"
    );
    let br = sb.json("ip -j link show dev br0");
    assert_eq!(br[0]["mtu"], 1280);
    assert!(br[0].get("ifalias").is_none());
    sb.nsfw_code(&["flush", &f], 0);
    assert!(
        sb.sh("ip link show br0").status.success(),
        "flush removed a foreign bridge"
    );
    sb.ok("ip link del br0");

    sb.ok("ip netns add ns1; ip -n ns1 link add d0 type bridge");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("namespace ns1") && err.contains("does not own"),
        "{err}"
    );
    assert_eq!(sb.netns(), ["ns1"]);
    assert!(
        !sb.sh("ip link show br0").status.success(),
        "apply created br0 despite the conflict"
    );
    let lo = sb.json("ip -n ns1 -j link show dev lo");
    assert!(lo[0].get("ifalias").is_none());
    sb.nsfw_code(&["flush", "--all"], 0);
    assert!(
        sb.sh("ip -n ns1 link show d0").status.success(),
        "flush touched a foreign namespace"
    );
}

#[test]
fn flush_removes_what_nsfw_owns_and_nothing_else() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "lab.toml",
        &format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\ndns = [\"192.0.2.1\"]\n"),
    );
    let other = sb.file(
        "other.toml",
        "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.o1]\nbridge = \"br1\"\n",
    );
    sb.ok("ip link add keep0 type bridge; ip netns add mine; mkdir -p /etc/netns/mine; echo nameserver 192.0.2.9 > /etc/netns/mine/resolv.conf");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["apply", &other], 0);

    let out = sb.nsfw_code(&["flush", &f], 0);
    assert!(out.contains("- namespace ns1"), "{out}");
    assert_eq!(sb.netns(), ["mine", "o1"]);
    let links = sb.ok("ip -o link");
    for gone in ["br0", "veth-ns1", "veth-ns2", "veth-ns3"] {
        assert!(
            !links.contains(&format!(" {gone}:")) && !links.contains(&format!(" {gone}@")),
            "{gone} left behind:\n{links}"
        );
    }
    assert!(
        links.contains(" keep0:") && links.contains(" br1:"),
        "{links}"
    );
    assert_eq!(sb.ok("ls /etc/netns").trim(), "mine");
    assert!(sb.nsfw_code(&["flush", &f], 0).contains("nothing to flush"));

    sb.nsfw_code(&["flush", "--all"], 0);
    assert_eq!(sb.netns(), ["mine"]);
    let links = sb.ok("ip -o link");
    assert!(
        !links.contains(" br1:") && links.contains(" keep0:"),
        "{links}"
    );
    assert!(
        sb.ok("cat /etc/netns/mine/resolv.conf")
            .contains("192.0.2.9")
    );
}

#[test]
fn verify_reports_the_live_topology() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw_code(&["verify", &f], 0);
    assert!(out.contains("8/8 checks as expected"), "{out}");
    sb.ok("ip link set veth-ns2 down");
    let out = sb.nsfw_code(&["verify", &f], 1);
    assert!(out.contains("FAIL"), "{out}");
}

/// What a host holds that `try` could leave behind: links, namespaces, mounts, files.
fn host_state(sb: &Sandbox) -> String {
    sb.ok("ip -d link; ip -d addr; ip route; ls -la /run/netns /etc/netns; cut -d' ' -f5 /proc/self/mountinfo | sort; cat /proc/sys/net/ipv4/ip_forward")
}

#[test]
fn try_builds_checks_and_leaves_nothing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = host_state(&sb);
    let out = sb.nsfw_code(&["try"], 0);
    assert!(out.contains("12/12 checks as expected"), "{out}");
    assert!(out.contains("ns1") && out.contains("EXPECTED"), "{out}");
    assert_eq!(before, host_state(&sb));

    let f = sb.file("t.toml", "name = \"t\"\n[bridges.b0]\naddress = \"10.1.0.1/24\"\n[namespaces.a]\nbridge = \"b0\"\n[namespaces.b]\nbridge = \"b0\"\n[namespaces.c]\nbridge = \"b0\"\n");
    let out = sb.nsfw_code(&["try", &f], 0);
    // 12 between namespaces, gateway and host; 3 over IPv6 that must fail (no IPv6 here); no masquerade and no ip_forward, so the 3 tries at
    // the internet are expected to fail; 3 blocked inbound.
    assert!(out.contains("21/21 checks as expected"), "{out}");
    let internet: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.contains("internet 203.0.113.10"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(internet.len(), 3, "{out}");
    for cols in internet {
        assert_eq!(
            cols[3..],
            ["v4", "tcp/8000", "blocked", "blocked", "ok"],
            "{out}"
        );
    }
    assert_eq!(before, host_state(&sb));
}
