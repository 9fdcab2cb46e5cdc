//! IPv6 beside IPv4: addresses (given or handed out), default routes, sysctls, drift; the
//! firewall over IPv6 (routed and NAT66 egress, published ports, hairpin, policy, egress
//! deny) proven with real packets through `try`'s upstream — and no IPv6 at all on segments
//! without it.

mod common;

use common::{LAB, Sandbox, show};

fn dual() -> String {
    LAB.replace(
        "address = \"10.10.0.1/24\"\n",
        "address = \"10.10.0.1/24\"\naddress6 = \"fd00:10::1/64\"\n",
    )
}

#[test]
fn a_dual_stack_lab_comes_up_and_drift_is_repaired() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &dual());
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    for (ns, own, other) in [
        ("ns1", "fd00:10::2", "fd00:10::3"),
        ("ns2", "fd00:10::3", "fd00:10::2"),
    ] {
        let a = sb.ok(&format!("ip -n {ns} -6 -o addr show dev eth0 scope global"));
        assert!(a.contains(&format!("{own}/64")), "{ns}: {a}");
        let r = sb.ok(&format!("ip -n {ns} -6 route show default"));
        assert!(r.contains("via fd00:10::1 dev eth0"), "{ns}: {r}");
        assert_eq!(
            sb.ok(&format!(
                "ip netns exec {ns} cat /proc/sys/net/ipv6/conf/eth0/accept_ra"
            ))
            .trim(),
            "0"
        );
        let o = sb.sh(&format!("ip netns exec {ns} ping -6 -c1 -W2 {other}"));
        assert!(
            o.status.success(),
            "{ns} cannot reach {other} over IPv6\n{}",
            show(&o)
        );
        assert!(
            sb.sh(&format!("ip netns exec {ns} ping -6 -c1 -W2 fd00:10::1"))
                .status
                .success()
        );
    }
    // One link-local address, nsfw's EUI-64 one, usable at once (no duplicate-address
    // detection floods the bridge when namespaces come up); a router needs it to resolve
    // neighbours for what it forwards.
    let ll = sb.ok("ip -n ns1 -6 -o addr show dev eth0 scope link");
    assert_eq!(ll.lines().count(), 1, "{ll}");
    assert!(ll.contains("fe80::") && !ll.contains("tentative"), "{ll}");
    for (what, breakage, expect) in [
        (
            "address",
            "ip -n ns1 addr del fd00:10::2/64 dev eth0",
            "+ address fd00:10::2/64 on ns1:eth0",
        ),
        (
            "route",
            "ip -n ns2 -6 route del default",
            "+ route ns2: default via fd00:10::1 dev eth0",
        ),
        (
            "sysctl",
            "ip netns exec ns1 sysctl -qw net.ipv6.conf.eth0.accept_ra=1",
            "~ sysctl ns1:net.ipv6.conf.eth0.accept_ra: 1 → 0",
        ),
        (
            "extra address",
            "ip -n ns2 addr add fd00:10::99/64 dev eth0 nodad",
            "- address fd00:10::99/64 on ns2:eth0",
        ),
    ] {
        sb.ok(breakage);
        let out = sb.nsfw_code(&["diff", &f], 2);
        assert!(out.contains(expect), "{what}: expected {expect:?}:\n{out}");
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
    }
    assert!(
        sb.sh("ip netns exec ns1 ping -6 -c1 -W2 fd00:10::3")
            .status
            .success()
    );
}

#[test]
fn a_segment_without_ipv6_has_none() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(
        sb.ok("ip netns exec ns1 cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
            .trim(),
        "1"
    );
    assert!(
        sb.ok("ip -n ns1 -6 -o addr show dev eth0")
            .trim()
            .is_empty()
    );
    // The way to the link-local addresses the guide's namespaces use: IPv6 on the bridge.
    let f = sb.file(
        "lab.toml",
        &LAB.replace(
            "address = \"10.10.0.1/24\"",
            "address = \"10.10.0.1/24\"\naddress6 = \"fd00:10::1/64\"",
        ),
    );
    sb.nsfw_code(&["apply", &f], 0);
    let ll = sb.ok("ip -n ns2 -6 -o addr show dev eth0 scope link");
    let ll = ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("ns2 has a link-local address")
        .to_string();
    assert!(
        sb.sh(&format!("ip netns exec ns1 ping -6 -c1 -W2 {ll}%eth0"))
            .status
            .success(),
        "ns1 cannot reach ns2 at {ll}"
    );
}

#[test]
fn ipv6_mistakes_are_refused() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let cases = [
        (
            "address6 on a bridge without IPv6",
            format!("{LAB}\n[namespaces.n3]\nbridge = \"br0\"\naddress6 = \"fd00:10::5/64\"\n"),
            "bridge br0 has no address6",
        ),
        (
            "link-local gateway",
            LAB.replace(
                "masquerade = true",
                "masquerade = true\naddress6 = \"fe80::1/64\"",
            ),
            "link-local",
        ),
        (
            "IPv4 in address6",
            LAB.replace(
                "masquerade = true",
                "masquerade = true\naddress6 = \"10.1.1.1/24\"",
            ),
            "not an IPv6 address",
        ),
        (
            "outside the subnet",
            dual().replace(
                "address = \"10.10.0.2/24\"",
                "address = \"10.10.0.2/24\"\naddress6 = \"fd00:99::2/64\"",
            ),
            "outside bridge br0's subnet",
        ),
        (
            "the gateway's address",
            dual().replace(
                "address = \"10.10.0.2/24\"",
                "address = \"10.10.0.2/24\"\naddress6 = \"fd00:10::1\"",
            ),
            "already bridge br0's gateway",
        ),
        (
            "publish on ::1",
            dual().replace(
                "address = \"10.10.0.2/24\"",
                "address = \"10.10.0.2/24\"\npublish = [\"[::1]:8080:80\"]",
            ),
            "no route_localnet for IPv6",
        ),
        (
            "publish over IPv6 without IPv6",
            LAB.replace(
                "address = \"10.10.0.2/24\"",
                "address = \"10.10.0.2/24\"\npublish = [\"[::]:8080:80\"]",
            ),
            "no IPv6 address",
        ),
        (
            "a small MTU",
            dual().replace("masquerade = true", "masquerade = true\nmtu = 1200"),
            "at least 1280",
        ),
    ];
    for (what, text, want) in cases {
        let f = sb.file("bad.toml", &text);
        let o = sb.nsfw(&["apply", &f]);
        assert_eq!(o.status.code(), Some(1), "{what}\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{what}: expected {want:?} in\n{err}");
        assert!(sb.netns().is_empty(), "{what}: something was made");
    }
}

/// A dual-stack file with every IPv6 feature: routed and NAT66 segments, a v4-only segment,
/// an egress-deny segment, ports published on both families and on IPv6 only, a deny.
const RICH: &str = r#"
name = "six"
[bridges.br0]
address = "10.10.0.1/24"
address6 = "fd00:10::1/64"
masquerade = true
masquerade6 = true
[bridges.br1]
address = "10.20.0.1/24"
address6 = "2001:db8:20::1/64"
masquerade = true
[bridges.old]
address = "10.30.0.1/24"
masquerade = true
[bridges.jail]
address = "10.40.0.1/24"
address6 = "fd00:40::1/64"
masquerade = true
masquerade6 = true
egress = "deny"
[namespaces.ns1]
bridge = "br0"
publish = ["8080:80", "[::]:8081:81"]
[namespaces.ns2]
bridge = "br0"
[namespaces.ns3]
bridge = "br0"
[namespaces.routed]
bridge = "br1"
[namespaces.v4only]
bridge = "old"
[namespaces.jailed]
bridge = "jail"
[[deny]]
from = "ns3"
to = "ns1"
[[allow]]
from = "jailed"
to = "2001:db8:113::/48"
ports = ["tcp/8000"]
"#;

/// The rows of `try`'s table, whitespace-normalised.
fn rows(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_firewall_judges_ipv6_like_ipv4() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("six.toml", RICH);
    let out = sb.nsfw_code(&["try", &f], 0);
    let rows = rows(&out);
    // Each of these rows is written out here, not derived: what the table must show.
    for want in [
        // NAT66: the world sees the uplink's address; routed: the namespace's own.
        "ns1 internet 2001:db8:113::10 v6 tcp/8000 reach as 2001:db8:100::1 reach ok",
        "routed internet 2001:db8:113::10 v6 tcp/8000 reach as 2001:db8:20::2 reach ok",
        // Unsolicited inbound over IPv6 is dropped, routed or not.
        "wan ns1 fd00:10::2 v6 tcp/9000 blocked blocked ok",
        "wan routed 2001:db8:20::2 v6 tcp/9000 blocked blocked ok",
        // No IPv6 on the segment: no IPv6 way out.
        "v4only internet 2001:db8:113::10 v6 tcp/8000 blocked blocked ok",
        // Published over IPv6: from the world (the client's own address seen), hairpin, host.
        "wan ns1:80 at host 2001:db8:100::1 v6 tcp/8080 reach as 2001:db8:100::2 reach ok",
        "wan ns1:81 at host 2001:db8:100::1 v6 tcp/8081 reach as 2001:db8:100::2 reach ok",
        "ns2 ns1:80 at host fd00:10::1 v6 tcp/8080 reach as fd00:10::1 reach ok",
        "host ns1:81 at host fd00:10::1 v6 tcp/8081 reach as fd00:10::1 reach ok",
        // [::]: IPv6 only; IPv4's 8081 is not published.
        "wan ns1:80 at host 198.51.100.1 v4 tcp/8080 reach as 198.51.100.2 reach ok",
        // The deny holds in both families.
        "ns3 ns1 10.10.0.2 v4 icmp blocked blocked ok",
        "ns3 ns1 fd00:10::2 v6 icmp blocked blocked ok",
        // Egress deny over IPv6 too, but for the allowed port.
        "jailed internet 2001:db8:113::10 v6 tcp/8000 reach as 2001:db8:100::1 reach ok",
        "jailed internet 2001:db8:113::10 v6 tcp/9000 blocked blocked ok",
        "jailed internet 203.0.113.10 v4 tcp/8000 blocked blocked ok",
    ] {
        assert!(rows.iter().any(|r| r == want), "missing {want:?} in\n{out}");
    }
    assert!(
        !rows
            .iter()
            .any(|r| r.contains("ns1:81") && r.contains(" v4 ")),
        "{out}"
    );
    assert!(out.contains("checks as expected"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn ipv6_published_ports_live_in_their_own_maps() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("six.toml", RICH);
    sb.nsfw_code(&["apply", &f], 0);
    let table = sb.ok("nft list table inet nsfw_six");
    for want in [
        "map publish6 {",
        // The maps count connections: nft lists each element with its counter.
        "tcp . 8081 counter packets 0 bytes 0 : fd00:10::2 . 81",
        "tcp . 8080 counter packets 0 bytes 0 : fd00:10::2 . 80",
        "dnat ip6 to meta l4proto . th dport map @publish6",
        "ct status dnat oifname . ip6 saddr @src6 counter packets 0 bytes 0 masquerade",
    ] {
        assert!(table.contains(want), "missing {want:?} in\n{table}");
    }
    // The IPv4 map has 8080 but not the IPv6-only 8081.
    let v4map = table
        .split("map publish4 {")
        .nth(1)
        .and_then(|m| m.split('}').next())
        .unwrap_or_default()
        .to_string();
    assert!(v4map.contains("8080") && !v4map.contains("8081"), "{table}");
    sb.nsfw_code(&["diff", &f], 0);
    // Dropping the IPv6-only entry removes exactly its element.
    let fewer = sb.file("fewer.toml", &RICH.replace(", \"[::]:8081:81\"", ""));
    let out = sb.nsfw_code(&["apply", &fewer], 0);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(['+', '-', '~']))
        .collect();
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.contains("- nft element inet nsfw_six publish6")),
        "{out}"
    );
    assert!(!sb.ok("nft list table inet nsfw_six").contains("8081"));
    sb.nsfw_code(&["diff", &fewer], 0);
}

/// IPv6 switched off by hand (`disable_ipv6` = 1, which takes the link's IPv6 addresses and
/// makes the kernel refuse them back) on a bridge and inside a namespace the file gives IPv6:
/// `diff` names it, one `apply` switches it on and puts the addresses back, the next has
/// nothing to do, and packets cross the bridge again. A bridge the file gives no IPv6 keeps
/// it off.
#[test]
fn ipv6_switched_off_by_hand_is_named_and_switched_on_again() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "v6.toml",
        "name = \"v6\"\n\
         [bridges.br0]\naddress = \"198.51.100.1/24\"\naddress6 = \"2001:db8:100::1/64\"\n\
         [bridges.br1]\naddress = \"203.0.113.1/24\"\n\
         [namespaces.ns1]\nbridge = \"br0\"\naddress = \"198.51.100.2/24\"\naddress6 = \"2001:db8:100::2/64\"\n\
         [namespaces.ns2]\nbridge = \"br0\"\naddress = \"198.51.100.3/24\"\naddress6 = \"2001:db8:100::3/64\"\n",
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6
         echo 1 > /proc/sys/net/ipv6/conf/br1/disable_ipv6
         ip netns exec ns1 sh -c 'echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6'");
    let out = sb.nsfw_code(&["diff", &f], 2);
    for want in [
        "~ sysctl net.ipv6.conf.br0.disable_ipv6: 1 → 0 (IPv6 was switched off",
        "+ address 2001:db8:100::1/64 on br0",
        "~ sysctl ns1:net.ipv6.conf.eth0.disable_ipv6: 1 → 0 (IPv6 was switched off",
        "+ address 2001:db8:100::2/64 on ns1:eth0",
    ] {
        assert!(out.contains(want), "{want:?} not named:\n{out}");
    }
    assert!(!out.contains("br1.disable_ipv6"), "{out}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let again = sb.nsfw_code(&["apply", &f], 0);
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(
        sb.ok(
            "cat /proc/sys/net/ipv6/conf/br0/disable_ipv6 /proc/sys/net/ipv6/conf/br1/disable_ipv6"
        ),
        "0\n1\n"
    );
    for to in ["2001:db8:100::1", "2001:db8:100::3"] {
        let o = sb.sh(&format!("ip netns exec ns1 ping -6 -c1 -W2 {to}"));
        assert!(o.status.success(), "ns1 cannot reach {to}\n{}", show(&o));
    }
}

/// A bridge that takes a port's IPv6 addresses (`take_addresses`, no `address6`) needs IPv6 on
/// as much as one with `address6`: made on a host whose `default.disable_ipv6` is 1, and
/// switched off by hand afterwards, apply switches it on before the addresses, in one run
/// (every apply failed with the kernel's refusal, the port enslaved and its addresses gone).
#[test]
fn a_bridge_taking_ipv6_addresses_gets_ipv6_on() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("ip link add lan0 type veth peer name lan0p
         echo 0 > /proc/sys/net/ipv6/conf/lan0/disable_ipv6
         ip link set lan0 up; ip link set lan0p up
         ip addr add 192.0.2.10/24 dev lan0; ip addr add 2001:db8:5::10/64 dev lan0 nodad
         echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
    let f = sb.file(
        "take.toml",
        "name = \"take\"\n[bridges.br0]\nports = [\"lan0\"]\ntake_addresses = true\n\
         [namespaces.ns1]\nbridge = \"br0\"\naddress = \"192.0.2.50/24\"\n",
    );
    sb.nsfw_code(&["apply", &f], 0);
    let has = || sb.ok("ip -6 -br addr show dev br0");
    assert!(has().contains("2001:db8:5::10/64"), "{}", has());
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6");
    let out = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        out.contains("~ sysctl net.ipv6.conf.br0.disable_ipv6: 1 → 0"),
        "{out}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert!(has().contains("2001:db8:5::10/64"), "{}", has());
    sb.nsfw_code(&["diff", &f], 0);
    sb.nsfw_code(&["flush", &f], 0);
    assert!(
        sb.ok("ip -6 -br addr show dev lan0")
            .contains("2001:db8:5::10/64"),
        "the port did not get its address back"
    );
}

/// A lab that gains IPv6 in an edit, with `addr_gen_mode` written by hand in the meantime:
/// the kernel adds a link-local address of its own the moment IPv6 comes on, after the plan
/// was made, and the apply ended "the host still differs" (exit 1). The apply now writes it
/// back before IPv6 comes on; a change of it by hand is drift like any setting.
#[test]
fn ipv6_coming_on_in_an_edit_brings_no_link_local_address_of_the_kernels() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("ip netns exec ns1 sh -c 'echo 3 > /proc/sys/net/ipv6/conf/eth0/addr_gen_mode'");
    sb.file("lab.toml", &dual());
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let ll = sb.ok("ip -n ns1 -6 -o addr show dev eth0 scope link");
    assert_eq!(
        ll.lines().count(),
        1,
        "only nsfw's link-local address:\n{ll}"
    );
    sb.ok("ip netns exec ns1 sh -c 'echo 0 > /proc/sys/net/ipv6/conf/eth0/addr_gen_mode'");
    let out = sb.nsfw_code(&["diff", &f], 2);
    let want = "~ sysctl ns1:net.ipv6.conf.eth0.addr_gen_mode: 0 → 1";
    assert!(out.contains(want), "{want:?} not named:\n{out}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
}

/// One edit takes a segment's IPv6 away and its MTU below IPv6's 1,280: the MTU is set first,
/// the kernel takes IPv6 off its links and their addresses with it, and the removals planned
/// for those addresses found IPv6 gone (ENXIO). The apply ended in an error though the host
/// was as the file says (found by a hostile round); an address already gone is removed.
#[test]
fn ipv6_and_its_mtu_taken_away_in_one_edit_apply_cleanly() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &dual());
    sb.nsfw_code(&["apply", &f], 0);
    let low = LAB.replace("[bridges.br0]\n", "[bridges.br0]\nmtu = 1200\n");
    assert_ne!(
        low, LAB,
        "the lab's bridge moved: the test needs its table's name"
    );
    sb.file("lab.toml", &low);
    let out = sb.nsfw_code(&["apply", &f], 0);
    assert!(
        out.contains("address fd"),
        "no IPv6 address removed:\n{out}"
    );
    sb.nsfw_code(&["diff", &f], 0);
    let v6 = sb.ok("ip -n ns1 -6 -o addr show dev eth0");
    assert!(v6.trim().is_empty(), "IPv6 left on ns1:\n{v6}");
}
