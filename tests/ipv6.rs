//! IPv6 beside IPv4: addresses (given or handed out), default routes, sysctls, drift — and
//! no IPv6 at all on segments without it.

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
    let sb = Sandbox::new();
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
    // No link-local addresses: nothing floods the bridge when namespaces come up.
    assert!(
        sb.ok("ip -n ns1 -6 -o addr show dev eth0 scope link")
            .trim()
            .is_empty()
    );
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
    let sb = Sandbox::new();
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
}

#[test]
fn ipv6_mistakes_are_refused() {
    let sb = Sandbox::new();
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
