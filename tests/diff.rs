//! `nsfw diff`: a plan read from the kernel's own state. Every kind of drift is detected and
//! named, apply makes the diff empty again, and diff itself changes nothing.

mod common;

use common::{LAB, Sandbox, show};

/// Applies, checks the diff is clean, breaks something, and checks that the diff names it
/// (text and JSON), that apply repairs it, and that the diff is clean again.
fn drift(sb: &Sandbox, f: &str, what: &str, breakage: &str, expect: &[&str]) {
    sb.nsfw_code(&["apply", f], 0);
    sb.nsfw_code(&["diff", f], 0);
    sb.ok(breakage);
    let out = sb.nsfw_code(&["diff", f], 2);
    for e in expect {
        assert!(
            out.contains(e),
            "{what}: expected {e:?} in the diff:\n{out}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&sb.nsfw_code(&["diff", "--json", f], 2)).expect("json");
    assert_eq!(json["in_sync"], false, "{what}");
    let texts: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    for e in expect {
        assert!(
            texts.iter().any(|t| t.contains(e)),
            "{what}: {e:?} missing from the JSON:\n{json:#}"
        );
    }
    sb.nsfw_code(&["apply", f], 0);
    let out = sb.nsfw_code(&["diff", f], 0);
    assert!(out.contains("in sync"), "{what}: {out}");
}

/// (what, the breakage, what the diff must say)
type Drift = (&'static str, &'static str, &'static [&'static str]);

/// Drift of namespaces, links, addresses, routes and sysctls.
const PLUMBING_DRIFT: &[Drift] = &[
    (
        "missing namespace",
        "ip netns del ns2",
        &["+ namespace ns2", "+ veth veth-ns2"],
    ),
    (
        "missing veth",
        "ip link del veth-ns1",
        &["+ veth veth-ns1 (on br0) ⇄ ns1:eth0"],
    ),
    (
        // What a run killed between making a veth and `addrgenmode none` leaves.
        "host veth with link-local addressing",
        "ip link set veth-ns1 down addrgenmode eui64 && ip link set veth-ns1 up && ip -6 addr show dev veth-ns1 | grep -q fe80",
        &[
            "~ sysctl net.ipv6.conf.veth-ns1.addr_gen_mode: 0 → 1",
            "- address fe80:",
        ],
    ),
    (
        "extra veth marked as nsfw's",
        "ip link add veth-x type veth peer name vx; ip link set veth-x alias nsfw:lab master br0 up",
        &["- link veth-x (veth)"],
    ),
    (
        "address removed",
        "ip -n ns1 addr flush dev eth0",
        &["+ address 10.10.0.2/24 on ns1:eth0"],
    ),
    (
        "address added",
        "ip -n ns1 addr add 10.10.0.99/24 dev eth0; ip addr add 192.0.2.1/24 dev br0",
        &[
            "- address 10.10.0.99/24 on ns1:eth0",
            "- address 192.0.2.1/24 on br0",
        ],
    ),
    (
        // Removed with its own address named: a message naming none removes the link's first
        // address, nsfw's (hostile round att19).
        "a multicast address added",
        "ip -n ns1 addr add 239.1.1.1/32 dev eth0",
        &["- address 239.1.1.1/32 on ns1:eth0"],
    ),
    (
        "MTU changed",
        "ip -n ns2 link set eth0 mtu 1400",
        &["~ link ns2:eth0: mtu 1400 → 1500"],
    ),
    (
        "MAC changed",
        "ip link set br0 address 02:00:00:00:aa:bb",
        &["~ link br0: mac 02:00:00:00:aa:bb → 02:"],
    ),
    (
        "link taken off the bridge",
        "ip link set veth-ns2 nomaster",
        &["~ link veth-ns2: master none → br0"],
    ),
    (
        "default route deleted",
        "ip -n ns1 route del default",
        &["+ route ns1: default via 10.10.0.1 dev eth0"],
    ),
    (
        "a second default route",
        "ip -n ns1 route add default via 10.10.0.3 metric 5",
        &["- route ns1: default via 10.10.0.3 dev eth0 metric 5"],
    ),
    (
        "a blackhole route",
        "ip -n ns2 route add blackhole 10.10.0.1/32",
        &["- route ns2: blackhole 10.10.0.1/32"],
    ),
    (
        "arp switched off",
        "ip -n ns1 link set eth0 arp off",
        &["~ link ns1:eth0: arp off → on"],
    ),
    (
        "ip_forward off",
        "sysctl -qw net.ipv4.ip_forward=0",
        &["~ sysctl net.ipv4.ip_forward: 0 → 1"],
    ),
];

/// Drift of nsfw's table and of its accepts in iptables-nft's chains.
const NFT_DRIFT: &[Drift] = &[
    (
        "rule deleted",
        "nft delete rule inet nsfw_lab judge handle $(nft -a list chain inet nsfw_lab judge | awk '$1 == \"oifname\" && / goto drop_closed # handle / {print $NF}')",
        &[
            "+ nft rule inet nsfw_lab judge: oifname @bridges counter packets 0 bytes 0 goto drop_closed",
        ],
    ),
    (
        "rule added by hand",
        "nft add rule inet nsfw_lab forward tcp dport 22 drop",
        &["- nft rule inet nsfw_lab forward: tcp dport 22 drop (handle"],
    ),
    (
        "chain policy changed",
        "nft add chain inet nsfw_lab forward '{ policy drop; }'",
        &[
            "~ nft chain inet nsfw_lab forward: type filter hook forward priority filter; policy drop; → type filter hook forward priority filter; policy accept;",
        ],
    ),
    (
        "table made dormant",
        "nft add table inet nsfw_lab '{ flags dormant; }'",
        &["~ nft table inet nsfw_lab"],
    ),
    (
        "a set nsfw did not put there",
        "nft add set inet nsfw_lab extra '{ type ipv4_addr; }'",
        &["- nft set inet nsfw_lab extra"],
    ),
    (
        "an element added to one of nsfw's sets",
        "nft add element inet nsfw_lab bridges '{ \"eth7\" }'",
        &["- nft element inet nsfw_lab bridges: \"eth7\""],
    ),
    (
        "a chain's type changed",
        "nft delete chain inet nsfw_lab forward; nft add chain inet nsfw_lab forward '{ type filter hook forward priority 10; policy accept; }'",
        &["inet nsfw_lab forward"],
    ),
    (
        "DOCKER-USER accept removed",
        "iptables -D DOCKER-USER -i br0 -m comment --comment nsfw:lab -j ACCEPT",
        &["+ nft rule ip filter DOCKER-USER: iifname \"br0\" accept comment \"nsfw:lab\""],
    ),
    (
        "all tables gone",
        "nft flush ruleset",
        &[
            "+ nft table inet nsfw_lab",
            "+ nft rule inet nsfw_lab postrouting: ip saddr 10.10.0.0/24 oifname != @bridges counter packets 0 bytes 0 masquerade",
        ],
    ),
];

#[test]
fn every_kind_of_drift_is_named_and_repaired() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("iptables -P FORWARD DROP; iptables -N DOCKER-USER; iptables -A DOCKER-USER -j RETURN; iptables -I FORWARD -j DOCKER-USER");
    let f = sb.file("lab.toml", LAB);
    for (what, breakage, expect) in PLUMBING_DRIFT.iter().chain(NFT_DRIFT) {
        drift(&sb, &f, what, breakage, expect);
    }
}

/// Everything diff could change, minus what changes by itself (bridge timers, the end of IPv6
/// duplicate address detection on the bridge).
fn snapshot(sb: &Sandbox) -> String {
    let raw = sb.ok(
        "for n in '' $(ls /run/netns); do
           if [ -z \"$n\" ]; then p=''; else p=\"ip netns exec $n\"; fi
           echo \"== $n\"; $p ip -d link; $p ip addr; $p ip route
           $p cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables
         done
         nft list ruleset; ls -laR /run/netns /etc/netns; cat /etc/netns/*/resolv.conf 2>/dev/null || true",
    );
    raw.lines()
        .map(|l| {
            let mut out = Vec::new();
            let mut skip = false;
            for w in l.split_whitespace() {
                if skip {
                    skip = false;
                } else if w == "tentative" {
                    // IPv6 duplicate address detection finishing on its own.
                } else if w.ends_with("_timer") {
                    skip = true;
                } else {
                    out.push(w);
                }
            }
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Named stateful objects someone adds to nsfw's table (nsfw declares none) are named by the
/// diff and gone after apply, each kind the kernel here can make; flush leaves none behind.
#[test]
fn named_objects_in_nsfws_table_are_named_and_removed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let t = "inet nsfw_lab";
    let objects = [
        (format!("counter {t} cnt"), "counter cnt"),
        (format!("quota {t} q '{{ over 1 mbytes }}'"), "quota q"),
        (format!("limit {t} lim '{{ rate 10/second }}'"), "limit lim"),
        (
            format!("ct helper {t} h '{{ type \"ftp\" protocol tcp; }}'"),
            "ct helper h",
        ),
        (
            format!("ct timeout {t} to '{{ protocol tcp; policy = {{ established: 100 }}; }}'"),
            "ct timeout to",
        ),
        (
            format!("synproxy {t} sp '{{ mss 1460; wscale 7; }}'"),
            "synproxy sp",
        ),
    ];
    let mut made = 0;
    for (add, named) in &objects {
        sb.nsfw_code(&["apply", &f], 0);
        // A kind this kernel cannot make (a module missing) is skipped, not failed.
        if !sb.sh(&format!("nft add {add}")).status.success() {
            continue;
        }
        made += 1;
        let out = sb.nsfw_code(&["diff", &f], 2);
        assert!(
            out.contains(&format!("- nft object {t}")) && out.contains(named),
            "{named}: {out}"
        );
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        let listed = sb.ok(&format!("nft list table {t}"));
        assert!(!listed.contains(named), "{named} survived apply:\n{listed}");
    }
    assert!(made >= 3, "only {made} kinds of object could be made");
    // Several at once, then flush.
    sb.ok(&format!(
        "nft add counter {t} c1; nft add counter {t} c2; nft add quota {t} q1 '{{ over 1 mbytes }}'"
    ));
    let out = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        out.contains("counter c1") && out.contains("counter c2") && out.contains("quota q1"),
        "{out}"
    );
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(sb.leftovers(&[]), Vec::<String>::new());
}

#[test]
fn diff_changes_nothing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file(
        "lab.toml",
        &format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\ndns = [\"192.0.2.53\"]\n"),
    );
    // Before anything, after apply, and after drift of every kind.
    let before = snapshot(&sb);
    sb.nsfw_code(&["diff", &f], 2);
    sb.nsfw_code(&["diff", "--json", &f], 2);
    assert_eq!(before, snapshot(&sb), "diff changed an empty host");
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("ip netns del ns3; ip link set br0 mtu 1300; ip -n ns1 route del default; sysctl -qw net.ipv4.ip_forward=0; nft add rule inet nsfw_lab forward accept; rm /etc/netns/ns3/resolv.conf
           # The kernel frees a deleted namespace's veths asynchronously: wait, so the snapshot
           # does not race it.
           for i in $(seq 100); do ip link show veth-ns3 >/dev/null 2>&1 || break; sleep 0.05; done");
    let before = snapshot(&sb);
    sb.nsfw_code(&["diff", &f], 2);
    sb.nsfw_code(&["diff", "--json", &f], 2);
    assert_eq!(before, snapshot(&sb), "diff changed the host");
}

#[test]
fn diff_on_an_empty_host_and_after_flush_lists_every_creation() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let fresh = sb.nsfw_code(&["diff", &f], 2);
    for e in [
        "+ namespace ns1",
        "+ namespace ns2",
        "+ bridge br0",
        "+ address 10.10.0.1/24 on br0",
        "+ veth veth-ns1",
        "+ veth veth-ns2",
        "+ address 10.10.0.2/24 on ns1:eth0",
        "+ route ns2: default via 10.10.0.1",
        "~ sysctl net.ipv4.ip_forward: 0 → 1",
        "+ nft table inet nsfw_lab",
        "+ nft rule inet nsfw_lab judge: oifname @bridges counter packets 0 bytes 0 goto drop_closed",
    ] {
        assert!(fresh.contains(e), "missing {e:?}:\n{fresh}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&sb.nsfw_code(&["diff", "--json", &f], 2)).unwrap();
    assert_eq!(json["schema"], 1);
    assert!(
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["op"] == "create" || c["kind"] == "sysctl"),
        "{json:#}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["flush", &f], 0);
    // A flush does not wait for the kernel to free the deleted namespaces' veths (as `ip netns
    // del` does not): wait here, so the diff does not race their teardown.
    sb.ok("for i in $(seq 100); do ip link show veth-ns1 >/dev/null 2>&1 || ip link show veth-ns2 >/dev/null 2>&1 || break; sleep 0.05; done");
    // ip_forward stays on after flush (nsfw cannot know what it was before), so that line goes.
    let after = sb.nsfw_code(&["diff", &f], 2);
    let without_sysctl = |s: &str| {
        s.lines()
            .filter(|l| {
                !l.contains("ip_forward")
                    && !l.contains("host sysctls")
                    && !l.contains("change(s) pending")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_sysctl(&fresh), without_sysctl(&after));
}

#[test]
fn errors_name_the_object_and_non_root_is_one_line() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    // A leftover file in /run/netns that is not a namespace.
    sb.ok("touch /run/netns/ns1");
    let o = sb.nsfw(&["diff", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error:")
            && err.contains("namespaces.ns1")
            && err.contains("/run/netns/ns1"),
        "{err}"
    );
    sb.ok("rm /run/netns/ns1");

    let o = sb.sh(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {} diff {f}",
        common::NSFW
    ));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // A read-only command: not "needs root" but what the kernel refused and the capability
    // that would let it read (issue 22), in one line.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: nsfw diff may not read") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

/// A link the run makes whose name is a word of every per-interface key (`conf`, `ipv6`) is
/// not taken for the link of every such key: drift of other links' settings in the same run
/// is still compared with what they hold, and repaired (found by a hostile round: the apply
/// ended "the host still differs", the bridge's step had no old value).
#[test]
fn a_new_link_called_conf_leaves_the_other_links_settings_compared() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let one = "name = \"cf\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[namespaces.a1]\nbridge = \"br0\"\n";
    let f1 = sb.file("cf1.toml", one);
    let f2 = sb.file(
        "cf2.toml",
        &format!("{one}[namespaces.a2]\nbridge = \"br0\"\nhost_ifname = \"conf\"\n"),
    );
    sb.nsfw_code(&["apply", &f1], 0);
    sb.ok(
        "sysctl -qw net.ipv4.conf.br0.promote_secondaries=0 net.ipv6.conf.veth-a1.addr_gen_mode=0",
    );
    let out = sb.nsfw_code(&["diff", &f2], 2);
    for e in [
        "~ sysctl net.ipv4.conf.br0.promote_secondaries: 0 → 1",
        "~ sysctl net.ipv6.conf.veth-a1.addr_gen_mode: 0 → 1",
    ] {
        assert!(out.contains(e), "expected {e:?} in the diff:\n{out}");
    }
    sb.nsfw_code(&["apply", &f2], 0);
    let out = sb.nsfw_code(&["diff", &f2], 0);
    assert!(out.contains("in sync"), "{out}");
}
