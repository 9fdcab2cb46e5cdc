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
    // Its veth goes with it, in the kernel's own time (`ip netns del` does not wait either).
    let gone = "for i in $(seq 200); do ip link show veth-ns3 || exit 0; sleep 0.05; done; exit 1";
    assert!(sb.sh(gone).status.success(), "veth-ns3 is still there");
    assert!(
        !sb.ok("ls /etc/netns").contains("ns3"),
        "resolv.conf of ns3 is still there"
    );
    assert_eq!(sb.ifindex(None, "veth-ns1"), keep);
    assert!(sb.pings("ns1", "10.10.0.3"));
}

/// A namespace a process still holds is removed without the run waiting for it: its name and
/// veth go at once, the warning names the process, and the next diff is in sync.
#[test]
fn a_busy_namespace_is_removed_without_waiting_and_its_holders_named() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let three = format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\n");
    let f3 = sb.file("three.toml", &three);
    sb.nsfw_code(&["apply", &f3], 0);
    let mut holder = sb.spawn_sh("exec ip netns exec ns3 sleep 60");
    sb.ok("for i in $(seq 100); do pgrep -x sleep && break; sleep 0.05; done");
    let pid = sb.ok("pgrep -x sleep").trim().to_string();
    let f2 = lab(&sb);
    let t = std::time::Instant::now();
    let o = sb.nsfw(&["apply", &f2]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "namespace ns3 is still held by process {pid} (sleep)"
        )),
        "{err}"
    );
    // Not the 5 s the kernel used to be waited on before the veth was deleted (a loose bound:
    // the apply itself takes a fraction of a second).
    assert!(took < std::time::Duration::from_millis(4500), "{took:?}");
    assert_eq!(sb.netns(), ["ns1", "ns2"]);
    assert!(!sb.sh("ip link show veth-ns3").status.success());
    sb.nsfw_code(&["diff", &f2], 0);
    holder.kill().ok();
    holder.wait().ok();
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
    // Flush does not wait for the kernel to free a deleted namespace's veths (`ip netns del`
    // does not either): their host ends linger a moment, then go.
    let at = |l: &str, g: &str| l.contains(&format!(" {g}:")) || l.contains(&format!(" {g}@"));
    let (t, mut links) = (std::time::Instant::now(), sb.ok("ip -o link"));
    while ["veth-ns1", "veth-ns2", "veth-ns3"]
        .iter()
        .any(|g| at(&links, g))
        && t.elapsed().as_secs() < 10
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        links = sb.ok("ip -o link");
    }
    for gone in ["br0", "veth-ns1", "veth-ns2", "veth-ns3"] {
        assert!(!at(&links, gone), "{gone} left behind:\n{links}");
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

/// The guide's DNS quick fix inside one namespace (`echo nameserver … > /etc/resolv.conf` under
/// `ip netns exec`) overwrites nsfw's file: that file alone is left out, everything else is
/// applied (exit 4, naming it), at boot too; `--force` takes it back.
#[test]
fn a_hand_edited_resolv_conf_is_left_out_alone_and_force_takes_it_back() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let two = LAB.replace(
        "address = \"10.10.0.2/24\"",
        "address = \"10.10.0.2/24\"\ndns = [\"192.0.2.53\"]",
    );
    let three = format!(
        "{two}[namespaces.ns3]\nbridge = \"br0\"\naddress = \"10.10.0.4/24\"\ndns = [\"192.0.2.53\"]\n"
    );
    let f = sb.file("lab.toml", &two);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("ip netns exec ns1 sh -c 'echo nameserver 192.0.2.99 > /etc/resolv.conf'");
    let hand = "nameserver 192.0.2.99\n";
    assert_eq!(sb.ok("cat /etc/netns/ns1/resolv.conf"), hand);

    // The file grows a namespace: it comes up, ns1's file stays as the user left it.
    std::fs::write(&f, &three).expect("write");
    let o = sb.nsfw(&["apply", &f]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(
        err.contains("/etc/netns/ns1/resolv.conf exists and was not written by nsfw")
            && err.contains("partially applied"),
        "{err}"
    );
    assert_eq!(sb.netns(), ["ns1", "ns2", "ns3"]);
    assert!(sb.pings("ns3", "10.10.0.2"));
    assert!(
        sb.ok("cat /etc/netns/ns3/resolv.conf")
            .contains("192.0.2.53")
    );
    assert_eq!(sb.ok("cat /etc/netns/ns1/resolv.conf"), hand);
    let o = sb.nsfw(&["diff", &f]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/etc/netns/ns1/resolv.conf"));
    let o = sb.nsfw(&["apply", "--json", &f]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!((&v["applied"], &v["partial"]), (&true.into(), &true.into()));
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(1), "{v}");

    // A reboot: the namespaces are gone, the file in /etc survives. flush names the file and
    // leaves it; the boot unit's own command brings every namespace back up.
    let out = sb.nsfw(&["flush", &f]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/etc/netns/ns1/resolv.conf was not written by nsfw: left as it is"),
        "{}",
        show(&out)
    );
    assert_eq!(sb.ok("cat /etc/netns/ns1/resolv.conf"), hand);
    assert!(sb.netns().is_empty());
    let unit = sb.ok(&format!("{} systemd {f}", common::NSFW));
    assert!(unit.contains("SuccessExitStatus=4"), "{unit}");
    let start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let o = sb.sh(start);
    assert_eq!(o.status.code(), Some(4), "{start}\n{}", show(&o));
    assert_eq!(sb.netns(), ["ns1", "ns2", "ns3"]);
    for (from, to) in [
        ("ns1", "10.10.0.3"),
        ("ns2", "10.10.0.4"),
        ("ns3", "10.10.0.1"),
    ] {
        assert!(sb.pings(from, to), "{from} cannot reach {to}");
    }

    // --force writes nsfw's file over the hand-edited one; then all is in sync.
    let out = sb.nsfw_code(&["apply", "--force", &f], 0);
    assert!(out.contains("+ file /etc/netns/ns1/resolv.conf"), "{out}");
    let now = sb.ok("cat /etc/netns/ns1/resolv.conf");
    assert!(
        now.starts_with("# written by nsfw for topology lab") && now.contains("192.0.2.53"),
        "{now}"
    );
    sb.nsfw_code(&["diff", &f], 0);
}

/// `dns_policy = "replace"`: that namespace's resolv.conf is nsfw's whoever wrote it last.
#[test]
fn dns_policy_replace_writes_over_a_hand_edited_resolv_conf() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let text = LAB.replace(
        "address = \"10.10.0.2/24\"",
        "address = \"10.10.0.2/24\"\ndns = [\"192.0.2.53\"]\ndns_policy = \"replace\"",
    );
    let f = sb.file("lab.toml", &text);
    sb.ok("mkdir -p /etc/netns/ns1; echo nameserver 192.0.2.99 > /etc/netns/ns1/resolv.conf");
    sb.nsfw_code(&["apply", &f], 0);
    assert!(
        sb.ok("cat /etc/netns/ns1/resolv.conf")
            .contains("192.0.2.53")
    );
}

/// On an L2-only segment the pairs are all `verify` can check: every pair, past the 8
/// namespaces where a routed segment checks a ring.
#[test]
fn verify_checks_every_pair_on_an_l2_only_segment() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let mut text = String::from(
        "name = \"l2\"\n[bridges.br1]\n[namespaces.n0]\nbridge = \"br1\"\naddress = \"10.20.0.2/24\"\n",
    );
    for i in 1..9 {
        text.push_str(&format!("[namespaces.n{i}]\nbridge = \"br1\"\n"));
    }
    let f = sb.file("l2.toml", &text);
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw_code(&["verify", &f], 0);
    assert!(out.contains("72/72 checks as expected"), "{out}");
    sb.ok("ip link set veth-n8 down");
    let out = sb.nsfw_code(&["verify", &f], 1);
    assert!(out.contains("56/72 checks as expected"), "{out}");
}

/// `host_mac` sets the host end's MAC (kept across a re-apply, changed by an edit); a
/// universally administered MAC draws a warning naming the key, a locally administered one
/// none.
#[test]
fn host_mac_is_set_and_a_vendor_mac_is_warned_about() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let with = |host_mac: &str| {
        LAB.replace(
            "address = \"10.10.0.2/24\"",
            &format!("address = \"10.10.0.2/24\"\nhost_mac = \"{host_mac}\""),
        )
    };
    let f = sb.file("lab.toml", &with("02:aa:00:00:00:01"));
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("universally"));
    let mac = |sb: &Sandbox| sb.json("ip -j link show dev veth-ns1")[0]["address"].clone();
    assert_eq!(mac(&sb), "02:aa:00:00:00:01");
    sb.nsfw_code(&["diff", &f], 0);
    std::fs::write(&f, with("00:16:3e:00:00:07")).expect("write");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "namespaces.ns1.host_mac = \"00:16:3e:00:00:07\": a universally administered MAC"
        ),
        "{err}"
    );
    assert_eq!(mac(&sb), "00:16:3e:00:00:07");
    assert!(sb.pings("ns1", "10.10.0.3"));
    sb.nsfw_code(&["diff", &f], 0);
}

/// An edit that keeps nsfw's first line (`echo >>`) is a hand edit: skipped (exit 4), and
/// named even when another step then really fails (a bind-mounted resolv.conf: EBUSY, exit
/// 1). A flush leaves a /etc/netns/NS that holds `hosts`, names it, and is done.
#[test]
fn an_appended_resolv_conf_is_a_hand_edit_and_flush_leaves_hosts() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let dns = LAB.replace(
        "address = \"10.10.0.2/24\"",
        "address = \"10.10.0.2/24\"\ndns = [\"192.0.2.53\"]",
    );
    let f = sb.file("lab.toml", &dns);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("ip netns exec ns1 sh -c 'echo nameserver 192.0.2.9 >> /etc/resolv.conf'");
    let edited = sb.ok("cat /etc/netns/ns1/resolv.conf");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("edited by hand since"));
    assert_eq!(sb.ok("cat /etc/netns/ns1/resolv.conf"), edited);

    // ns2's file replaced by policy, but bind-mounted: that step fails; ns1's is still named.
    let both = dns.replace(
        "address = \"10.10.0.3/24\"",
        "address = \"10.10.0.3/24\"\ndns = [\"192.0.2.53\"]\ndns_policy = \"replace\"",
    );
    std::fs::write(&f, &both).expect("write");
    let b = sb.file("bound", "y\n");
    sb.ok(&format!(
        "mkdir -p /etc/netns/ns2; echo x > /etc/netns/ns2/resolv.conf; mount --bind {b} /etc/netns/ns2/resolv.conf"
    ));
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/etc/netns/ns1/resolv.conf"),
        "{}",
        show(&o)
    );
    sb.ok("umount /etc/netns/ns2/resolv.conf; rm -f /etc/netns/ns2/resolv.conf");

    // hosts beside nsfw's resolv.conf: flush removes only the file and is done.
    sb.ok("mkdir -p /etc/netns/ns2; echo '192.0.2.1 h' > /etc/netns/ns2/hosts");
    sb.nsfw_code(&["apply", "--force", &f], 0);
    let o = sb.nsfw(&["flush", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/etc/netns/ns2 holds hosts"),
        "{}",
        show(&o)
    );
    sb.ok("test -f /etc/netns/ns2/hosts && ! test -e /etc/netns/ns2/resolv.conf");
    sb.nsfw_code(&["flush", &f], 0);

    // /etc/netns/ns2 a bind mount of a directory elsewhere: never written through, forced
    // or not (exit 4, as a symlink), and a flush leaves what is there.
    let dir = std::path::Path::new(&b).with_file_name("elsewhere");
    let dir = dir.display();
    sb.ok(&format!(
        "rm -rf /etc/netns/ns2; mkdir -p /etc/netns/ns2 {dir}; echo z > {dir}/resolv.conf; mount --bind {dir} /etc/netns/ns2"
    ));
    sb.nsfw_code(&["apply", "--force", &f], 4);
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(sb.ok(&format!("cat {dir}/resolv.conf")), "z\n");
    sb.ok("umount /etc/netns/ns2");
}
