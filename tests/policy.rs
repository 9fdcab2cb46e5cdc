//! Policy with real packets: deny beats allow beats the defaults, whatever the order in the
//! file, with bridge-nf-call-iptables at 0 and at 1; isolation, egress lists, host protection;
//! and the checks derived from the file.

mod common;

use common::{Sandbox, show};

/// Two bridges: a (br0, 10.10.0.0/24) and b (br1, 10.20.0.0/24), in either order.
fn two_bridges(swap: bool, extra: &str) -> String {
    let br0 = "[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n";
    let br1 = "[bridges.br1]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n";
    let (x, y) = if swap { (br1, br0) } else { (br0, br1) };
    format!(
        "name = \"pol\"\n{x}{y}[namespaces.a]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[namespaces.b]\nbridge = \"br1\"\naddress = \"10.20.0.2/24\"\n{extra}"
    )
}

fn tcp(sb: &Sandbox, from: &str, to: &str, port: u16) -> bool {
    sb.ask(Some(from), "tcp", to, port).is_some()
}

#[test]
fn between_bridges_in_both_file_orders() {
    for swap in [false, true] {
        let Some(sb) = Sandbox::or_skip() else { return };
        let f = sb.file("p.toml", &two_bridges(swap, ""));
        sb.nsfw_code(&["apply", &f], 0);
        sb.serve(Some("a"), "tcp", &[80]);
        sb.serve(Some("b"), "tcp", &[80]);
        assert!(
            !tcp(&sb, "a", "10.20.0.2", 80),
            "swap={swap}: a reached b by default"
        );
        assert!(
            !tcp(&sb, "b", "10.10.0.2", 80),
            "swap={swap}: b reached a by default"
        );
        let f = sb.file(
            "p.toml",
            &two_bridges(swap, "[[allow]]\nfrom = \"br0\"\nto = \"br1\"\n"),
        );
        sb.nsfw_code(&["apply", &f], 0);
        assert_eq!(
            sb.ask(Some("a"), "tcp", "10.20.0.2", 80).as_deref(),
            Some("10.10.0.2"),
            "swap={swap}: allowed br0 → br1"
        );
        assert!(
            !tcp(&sb, "b", "10.10.0.2", 80),
            "swap={swap}: br1 → br0 must stay closed"
        );
        let out = sb.nsfw_code(&["try", &f], 0);
        assert!(out.contains("checks as expected"), "{out}");
    }
}

#[test]
fn a_deny_inside_one_bridge_with_bridge_netfilter_off_and_on() {
    let three = "name = \"pol\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n[namespaces.ns3]\nbridge = \"br0\"\naddress = \"10.10.0.4/24\"\n";
    for (order, brnf) in [(0, "0"), (1, "1"), (0, "1"), (1, "0")] {
        let Some(sb) = Sandbox::or_skip() else { return };
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}"
        ));
        let rules = if order == 0 {
            "[[deny]]\nfrom = \"ns3\"\nto = \"ns1\"\n[[allow]]\nfrom = \"ns2\"\nto = \"ns1\"\nports = [\"tcp/80\"]\n"
        } else {
            "[[allow]]\nfrom = \"ns2\"\nto = \"ns1\"\nports = [\"tcp/80\"]\n[[deny]]\nfrom = \"ns3\"\nto = \"ns1\"\n"
        };
        let f = sb.file("p.toml", &format!("{three}{rules}"));
        sb.nsfw_code(&["apply", &f], 0);
        for ns in ["ns1", "ns2", "ns3"] {
            sb.serve(Some(ns), "tcp", &[80]);
        }
        let what = format!("br-nf {brnf}, order {order}");
        assert!(
            !tcp(&sb, "ns3", "10.10.0.2", 80),
            "{what}: ns3 → ns1 was not denied"
        );
        assert!(!sb.pings("ns3", "10.10.0.2"), "{what}: ns3 pings ns1");
        assert!(
            tcp(&sb, "ns1", "10.10.0.4", 80),
            "{what}: ns1 → ns3 (replies pass)"
        );
        assert!(
            tcp(&sb, "ns2", "10.10.0.2", 80) && tcp(&sb, "ns2", "10.10.0.4", 80),
            "{what}: ns2"
        );
        assert!(tcp(&sb, "ns3", "10.10.0.3", 80), "{what}: ns3 → ns2");
        assert_eq!(
            sb.ok("cat /proc/sys/net/bridge/bridge-nf-call-iptables")
                .trim(),
            brnf,
            "the host-wide setting is not nsfw's"
        );
    }
}

#[test]
fn isolation_egress_lists_and_host_protection() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.serve(Some("wan"), "tcp", &[8000, 8001]);
    // Host listeners: on the bridge's address and on the uplink's.
    sb.serve(None, "tcp", &[2222, 22]);
    let base = "name = \"pol\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\nisolate = true\negress = \"deny\"\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n[host]\nprotect = true\n[[allow]]\nfrom = \"ns1\"\nto = \"203.0.113.0/24\"\nports = [\"tcp/8000\"]\n";
    let f = sb.file("p.toml", base);
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns2"), "tcp", &[80]);
    // Isolated: no namespace reaches another; each still pings its gateway.
    assert!(!tcp(&sb, "ns1", "10.10.0.3", 80) && !sb.pings("ns1", "10.10.0.3"));
    assert!(sb.pings("ns1", "10.10.0.1") && sb.pings("ns2", "10.10.0.1"));
    // Egress denied but for exactly one address range and port.
    assert!(
        tcp(&sb, "ns1", "203.0.113.10", 8000),
        "the allowed connection"
    );
    assert!(!tcp(&sb, "ns1", "203.0.113.10", 8001), "another port");
    assert!(!tcp(&sb, "ns1", "198.51.100.2", 8000), "another address");
    assert!(!tcp(&sb, "ns2", "203.0.113.10", 8000), "another namespace");
    assert!(
        sb.ask(Some("ns1"), "udp", "198.51.100.2", 53).is_none(),
        "DNS is not allowed"
    );
    // Protected host: neither the bridge's address nor the uplink's.
    for addr in ["10.10.0.1", "198.51.100.1"] {
        assert!(
            !tcp(&sb, "ns1", addr, 22) && !tcp(&sb, "ns1", addr, 2222),
            "host at {addr}"
        );
    }
    // Allowing exactly tcp/22 to the host opens exactly that.
    let f = sb.file(
        "p.toml",
        &format!("{base}[[allow]]\nfrom = \"ns1\"\nto = \"host\"\nports = [\"tcp/22\"]\n"),
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert!(tcp(&sb, "ns1", "10.10.0.1", 22) && tcp(&sb, "ns1", "198.51.100.1", 22));
    assert!(!tcp(&sb, "ns1", "10.10.0.1", 2222) && !tcp(&sb, "ns2", "10.10.0.1", 22));
    let out = sb.nsfw_code(&["try", &f], 0);
    assert!(out.contains("checks as expected"), "{out}");
}

#[test]
fn the_jail_and_every_shipped_ruleset_meet_their_expectations() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets");
    let mut n = 0;
    for ent in std::fs::read_dir(&dir).expect("rulesets") {
        let p = ent.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let o = sb.nsfw(&["try", &p.display().to_string()]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", p.display(), show(&o));
        for col in ["FROM", "TO", "PORT", "EXPECTED", "GOT"] {
            assert!(out.contains(col), "{out}");
        }
        assert!(!out.contains("FAIL"), "{out}");
    }
    assert!(n >= 4);
}

#[test]
fn verify_reports_a_broken_expectation() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let f = sb.file(
        "p.toml",
        &two_bridges(
            false,
            "[[allow]]\nfrom = \"a\"\nto = \"b\"\nports = [\"tcp/9000\"]\n",
        ),
    );
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw_code(&["verify", &f], 0);
    assert!(out.contains("tcp/9000"), "{out}");
    // Somebody else's table drops what the file allows.
    sb.ok("nft add table inet other; nft add chain inet other f '{ type filter hook forward priority 10; }'; nft add rule inet other f tcp dport 9000 drop");
    let out = sb.nsfw_code(&["verify", &f], 1);
    let bad: Vec<&str> = out.lines().filter(|l| l.ends_with("FAIL")).collect();
    assert!(
        !bad.is_empty() && bad.iter().all(|l| l.contains("tcp/9000")),
        "{out}"
    );
}

#[test]
fn policy_mistakes_are_refused_or_warned_about() {
    let Some(sb) = Sandbox::or_skip() else { return };
    mistakes_are_refused(&sb);
    contradictions_are_warned_about(&sb);
    allows_that_change_nothing_are_warned_about(&sb);
}

/// Entries that cannot mean anything: nothing is applied.
fn mistakes_are_refused(sb: &Sandbox) {
    for (extra, want) in [
        (
            "[[deny]]\nfrom = \"nobody\"\nto = \"a\"\n",
            "deny[0].from = \"nobody\": no namespace or bridge",
        ),
        (
            "[[allow]]\nfrom = \"a\"\nto = \"10.20.0.5/24\"\n",
            "host bits",
        ),
        (
            "[[allow]]\nfrom = \"a\"\nto = \"b\"\nports = [\"icmp/8\"]\n",
            "ICMP has no ports",
        ),
        (
            "[[allow]]\nfrom = \"a\"\nto = \"b\"\nports = [\"tcp/0\"]\n",
            "not a port",
        ),
        ("[[allow]]\nfrom = \"world\"\nto = \"host\"\n", "allow[0]"),
        ("[[allow]]\nfrom = \"a\"\n", "allow[0].to: missing"),
    ] {
        let f = sb.file("p.toml", &two_bridges(false, extra));
        let o = sb.nsfw(&["apply", &f]);
        assert_eq!(o.status.code(), Some(1), "{extra}\n{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{extra}: {}",
            show(&o)
        );
    }
    assert!(sb.netns().is_empty());
}

/// An allow and a deny of the same traffic (the deny wins), and a bridge whose egress deny
/// leaves it nothing.
fn contradictions_are_warned_about(sb: &Sandbox) {
    let f = sb.file(
        "p.toml",
        &two_bridges(
            false,
            "[[allow]]\nfrom = \"a\"\nto = \"b\"\n[[deny]]\nfrom = \"a\"\nto = \"b\"\n",
        ),
    );
    let o = sb.nsfw(&["diff", &f]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning:")
            && String::from_utf8_lossy(&o.stderr).contains("the deny wins"),
        "{}",
        show(&o)
    );
    let f = sb.file(
        "p.toml",
        &two_bridges(false, "").replace(
            "masquerade = true\n[bridges.br1]",
            "masquerade = true\negress = \"deny\"\n[bridges.br1]",
        ),
    );
    let o = sb.nsfw(&["diff", &f]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("can reach nothing outside"),
        "{}",
        show(&o)
    );
}

/// Allows that can change nothing: the world to itself, a namespace to itself, a bridge
/// that is not isolated to itself. An isolated bridge to itself is what reopens it.
fn allows_that_change_nothing_are_warned_about(sb: &Sandbox) {
    for (extra, want) in [
        (
            "[[allow]]\nfrom = \"world\"\nto = \"world\"\n",
            Some("allow[0]: from = \"world\", to = \"world\""),
        ),
        (
            "[[allow]]\nfrom = \"a\"\nto = \"a\"\n",
            Some("allow[0]: from = \"a\", to = \"a\""),
        ),
        (
            "[[allow]]\nfrom = \"br0\"\nto = \"br0\"\n",
            Some("allow[0]: from = \"br0\", to = \"br0\""),
        ),
        ("[[allow]]\nfrom = \"br1\"\nto = \"br1\"\n", None),
    ] {
        let text = two_bridges(false, extra).replace(
            "[bridges.br1]\naddress = \"10.20.0.1/24\"\n",
            "[bridges.br1]\naddress = \"10.20.0.1/24\"\nisolate = true\n",
        );
        let f = sb.file("p.toml", &text);
        let o = sb.nsfw(&["diff", &f]);
        let err = String::from_utf8_lossy(&o.stderr);
        match want {
            Some(w) => assert!(
                err.lines().any(|l| l.starts_with("warning:")
                    && l.contains(w)
                    && l.contains("changes nothing")),
                "{extra}: {}",
                show(&o)
            ),
            None => assert!(!err.contains("changes nothing"), "{extra}: {}", show(&o)),
        }
    }
}

/// Counts proto-253 packets arriving in namespace `ns` (a counter rule there), after `send`
/// sent 3 of them with a 2-byte payload (too short for `th dport` to be loaded) from `from`.
fn short_packets(sb: &Sandbox, from: &str, to_ns: &str, to_addr: &str) -> u64 {
    sb.ok(&format!(
        "ip netns exec {to_ns} nft add table ip p253
         ip netns exec {to_ns} nft add chain ip p253 input '{{ type filter hook input priority 0; }}'
         ip netns exec {to_ns} nft flush chain ip p253 input
         ip netns exec {to_ns} nft add rule ip p253 input ip protocol 253 counter"
    ));
    sb.ok(&format!(
        "ip netns exec {from} /usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253); [s.sendto(b\"ab\", (\"{to_addr}\", 0)) for _ in range(3)]'"
    ));
    let seen = sb.ok(&format!(
        "sleep 0.3; ip netns exec {to_ns} nft list chain ip p253 input"
    ));
    seen.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("counter")
}

/// A `[[deny]]` without ports denies every protocol, however short the packet: to the world,
/// and between two namespaces of one bridge (with bridge-nf-call-iptables at 0 and 1). ns3,
/// denied nothing, gets its short packets through, so the witness can see them.
#[test]
fn a_deny_without_ports_stops_short_packets() {
    for brnf in ["0", "1"] {
        let Some(sb) = Sandbox::or_skip() else { return };
        sb.upstream(&["10.10.0.0/24"]);
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}"
        ));
        let f = sb.file(
            "d.toml",
            "name = \"d\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n[namespaces.ns3]\nbridge = \"br0\"\naddress = \"10.10.0.4/24\"\n[[deny]]\nfrom = \"ns1\"\nto = \"world\"\n[[deny]]\nfrom = \"ns1\"\nto = \"ns2\"\n[[deny]]\nfrom = \"ns3\"\nto = \"ns2\"\nports = [\"icmp\"]\n",
        );
        sb.nsfw_code(&["apply", &f], 0);
        assert_eq!(
            short_packets(&sb, "ns3", "wan", "203.0.113.10"),
            3,
            "br-nf {brnf}: the witness saw no short packet from ns3, which nothing denies"
        );
        assert_eq!(
            short_packets(&sb, "ns1", "wan", "203.0.113.10"),
            0,
            "br-nf {brnf}: proto 253 with a 2-byte payload passed ns1 → world's deny"
        );
        assert_eq!(
            short_packets(&sb, "ns3", "ns2", "10.10.0.3"),
            3,
            "br-nf {brnf}: ns3 → ns2 is denied icmp only"
        );
        assert_eq!(
            short_packets(&sb, "ns1", "ns2", "10.10.0.3"),
            0,
            "br-nf {brnf}: proto 253 with a 2-byte payload passed ns1 → ns2's deny"
        );
        assert!(
            !sb.pings("ns3", "10.10.0.3"),
            "br-nf {brnf}: ns3 → ns2 icmp is denied"
        );
        let out = sb.nsfw_code(&["show", &f], 0);
        assert!(
            out.contains("ip saddr . ip daddr . meta l4proto @deny_proto4 counter"),
            "{out}"
        );
        sb.nsfw_code(&["diff", &f], 0);
    }
}

/// Entries whose address and port ranges overlap (an allow to 203.0.0.0/8 beside one to
/// 203.0.113.0/24, a deny nested in a wider one) load — the kernel refuses overlapping
/// elements in an interval set, so nsfw cuts them apart — and keep their union's meaning.
#[test]
fn overlapping_entries_load_and_mean_their_union() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.serve(Some("wan"), "tcp", &[80, 95, 101]);
    let f = sb.file(
        "ov.toml",
        "name = \"ov\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\negress = \"deny\"\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[[allow]]\nfrom = \"ns1\"\nto = \"203.0.0.0/8\"\nports = [\"tcp/80-90\"]\n[[allow]]\nfrom = \"ns1\"\nto = \"203.0.113.0/24\"\nports = [\"tcp/85-100\"]\n[[deny]]\nfrom = \"br0\"\nto = \"203.0.113.10/32\"\nports = [\"tcp/95\"]\n[[deny]]\nfrom = \"ns1\"\nto = \"203.0.113.0/24\"\nports = [\"tcp/95-96\"]\n",
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    assert!(tcp(&sb, "ns1", "203.0.113.10", 80), "allowed by the /8");
    assert!(!tcp(&sb, "ns1", "203.0.113.10", 95), "denied twice over");
    assert!(!tcp(&sb, "ns1", "203.0.113.10", 101), "allowed by neither");
    sb.nsfw_code(&["try", &f], 0);
}

/// 20,000 `[[allow]]` entries load as runs joined into few elements (the kernel's pipapo set
/// grows quadratically in elements inserted at once): the kernel holds exactly the joined
/// boxes, nsfw sees nothing to do, and packets follow the entries, gaps included.
#[test]
fn twenty_thousand_allows_load_as_joined_runs() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.serve(Some("wan"), "tcp", &[20002, 20003]);
    let mut text = String::from(
        "name = \"many\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\negress = \"deny\"\n",
    );
    for i in 0..4 {
        text += &format!(
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.10.0.{}/24\"\n",
            i + 2
        );
    }
    // Every namespace to 203.0.113.1-200 on the even ports 20000-20048: one box per port.
    for e in 0..20_000 {
        text += &format!(
            "[[allow]]\nfrom = \"ns{}\"\nto = \"203.0.113.{}/32\"\nports = [\"tcp/{}\"]\n",
            e % 4,
            (e / 4) % 200 + 1,
            20_000 + 2 * (e / 800)
        );
    }
    // One entry with no neighbour: a single key, in the hash set beside the runs.
    sb.ok("ip -n wan addr add 203.0.113.250/32 dev lo");
    text += "[[allow]]\nfrom = \"ns0\"\nto = \"203.0.113.250/32\"\nports = [\"tcp/20002\"]\n";
    let f = sb.file("many.toml", &text);
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let exact = sb.ok("nft list set inet nsfw_many allow_exact4");
    assert!(
        exact.contains("elements = { 10.10.0.2 . 203.0.113.250 . tcp . 20002 }"),
        "{exact}"
    );
    assert!(tcp(&sb, "ns0", "203.0.113.250", 20002), "the single key");
    assert!(!tcp(&sb, "ns1", "203.0.113.250", 20002), "only from ns0");
    let listed = sb.ok("nft list set inet nsfw_many allow4");
    let mut held: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains(" . tcp . "))
        .map(|l| {
            let l = l.trim().trim_start_matches("elements = { ");
            l.trim_end_matches([',', ' ', '}'])
        })
        .collect();
    held.sort_unstable();
    let mut want: Vec<String> = (0..25)
        .map(|p| {
            format!(
                "10.10.0.2-10.10.0.5 . 203.0.113.1-203.0.113.200 . tcp . {}",
                20_000 + 2 * p
            )
        })
        .collect();
    want.sort_unstable();
    assert_eq!(held, want, "{listed}");
    assert!(tcp(&sb, "ns1", "203.0.113.10", 20002), "allowed");
    assert!(
        !tcp(&sb, "ns1", "203.0.113.10", 20003),
        "in a gap between runs"
    );
}

/// A jail (`egress = "deny"`, `protect = true`) opens connections only where an allow says:
/// not to another namespace's published port through the host's addresses (the DNAT turns it
/// into a forwarded connection, which the egress deny judges first), unless an allow names
/// that namespace; the world still reaches the published port.
#[test]
fn a_jail_reaches_published_ports_only_where_allowed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24", "10.20.0.0/24"]);
    let base = "name = \"jail\"\n[host]\nprotect = true\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\negress = \"deny\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n[namespaces.jail]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n[namespaces.web]\nbridge = \"br1\"\naddress = \"10.20.0.2/24\"\npublish = [\"8080:80/tcp\"]\n";
    let f = sb.file("j.toml", base);
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("web"), "tcp", &[80]);
    assert!(
        tcp(&sb, "wan", "198.51.100.1", 8080),
        "the world reaches it"
    );
    for addr in ["198.51.100.1", "10.10.0.1", "10.20.0.1"] {
        assert!(!tcp(&sb, "jail", addr, 8080), "jail via {addr}");
    }
    assert!(!tcp(&sb, "jail", "10.20.0.2", 80), "jail directly");
    let f = sb.file(
        "j.toml",
        &format!("{base}[[allow]]\nfrom = \"jail\"\nto = \"web\"\nports = [\"tcp/80\"]\n"),
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert!(
        tcp(&sb, "jail", "198.51.100.1", 8080),
        "allowed, via the host"
    );
    assert!(tcp(&sb, "jail", "10.20.0.2", 80), "allowed, directly");
}

/// `egress_via`: a second NIC's LAN (a veth stand-in, `lan0` ⇄ namespace `lan`) is out of
/// reach of the namespaces, the world behind `up0` is not, with and without `egress = "deny"`
/// and `[[allow]] to = "world"`, at bridge-nf-call-iptables 0 and 1.
#[test]
fn egress_via_keeps_namespaces_off_a_second_nic_s_lan() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    sb.ok("set -e
         ip link set uplink down; ip link set uplink name up0; ip link set up0 up
         ip route replace default via 198.51.100.2
         ip netns add lan
         ip link add lan0 type veth peer name eth0 netns lan
         ip addr add 192.0.2.1/24 dev lan0; ip link set lan0 up
         ip -n lan link set lo up; ip -n lan link set eth0 up
         ip -n lan addr add 192.0.2.10/24 dev eth0
         ip -n lan route add default via 192.0.2.1");
    let base = "name = \"eg\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n";
    let ns = "[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\n";
    let world = "203.0.113.10";
    let lan = "192.0.2.10";
    // Without it, the LAN is "the world" too: the test can fail.
    let f = sb.file("eg.toml", &format!("{base}{ns}"));
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.pings("ns1", world) && sb.pings("ns1", lan));
    for brnf in ["0", "1"] {
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}"
        ));
        for extra in ["", "egress = \"deny\"\n"] {
            let allow = if extra.is_empty() {
                ""
            } else {
                "[[allow]]\nfrom = \"br0\"\nto = \"world\"\n"
            };
            let text = format!("{base}egress_via = [\"up0\"]\n{extra}{ns}{allow}");
            let f = sb.file("eg.toml", &text);
            sb.nsfw_code(&["apply", &f], 0);
            let what = format!("br_netfilter {brnf}, {extra:?}");
            assert!(sb.pings("ns1", world), "{what}: ns1 → world blocked");
            assert!(!sb.pings("ns1", lan), "{what}: ns1 reached the LAN on lan0");
            assert!(sb.pings("ns1", "10.10.0.1"), "{what}: ns1 → its gateway");
        }
    }
    // `nsfw try` rehearses it with the world behind an uplink named as the file says.
    let out = sb.nsfw_code(&["try", &f], 0);
    assert!(out.contains("checks as expected"), "{out}");
    // A typo cuts the bridge off from the world: said, not silent.
    let f = sb.file("eg.toml", &format!("{base}egress_via = [\"upO\"]\n{ns}"));
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("bridges.br0.egress_via = \"upO\": the host has no interface upO"),
        "{}",
        show(&o)
    );
    assert!(!sb.pings("ns1", world));
}
