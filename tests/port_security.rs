//! Port security and L2 isolation, with forged raw frames (AF_PACKET, tests/tools/frames.py)
//! sent from a namespace and sniffed where they must not arrive: the neighbour, the host's
//! bridge, the world. Each test also proves its witnesses: with nsfw's bridge table (or the
//! port's isolation) taken away, the same frames do arrive.

mod common;

use common::{Sandbox, show};

fn frames() -> String {
    common::frames_py()
}

fn exec(ns: Option<&str>) -> String {
    ns.map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default()
}

/// Where a sniffer listens: a label, the namespace (None: the host), the interface.
type Spot<'a> = (&'a str, Option<&'a str>, &'a str);

/// Sniffers counting the frames that carry `marker`, started and ready.
struct Sniff {
    logs: Vec<(String, std::path::PathBuf)>,
}

impl Sniff {
    fn start(sb: &Sandbox, spots: &[Spot], secs: f32, marker: &str) -> Sniff {
        let mut logs = Vec::new();
        for (label, ns, dev) in spots {
            let log = sb.dir().join(format!("sniff-{marker}-{label}.log"));
            sb.ok(&format!(
                "{}{} sniff {dev} {secs} {marker} > {log} 2>&1 &
                 for i in $(seq 100); do grep -q ready {log} && break; sleep 0.02; done; grep -q ready {log}",
                exec(*ns),
                frames(),
                log = log.display()
            ));
            logs.push((label.to_string(), log));
        }
        Sniff { logs }
    }

    /// Waits for every sniffer's count: (label, frames seen).
    fn counts(self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (label, log) in self.logs {
            let mut n = None;
            for _ in 0..200 {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                n = text.lines().nth(1).and_then(|l| l.trim().parse().ok());
                if n.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            out.push((label, n.expect("the sniffer's count")));
        }
        out
    }
}

fn send(sb: &Sandbox, ns: &str, kind: &str, marker: &str, args: &[&str]) {
    sb.ok(&format!(
        "ip netns exec {ns} {} send eth0 {kind} {marker} {}",
        frames(),
        args.join(" ")
    ));
}

fn mac(sb: &Sandbox, ns: Option<&str>, dev: &str) -> String {
    sb.json(&format!("{}ip -j link show dev {dev}", exec(ns)))[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string()
}

/// The link-layer address `ns` (None: the host) holds for `ip`, if any.
fn lladdr(sb: &Sandbox, ns: Option<&str>, ip: &str) -> Option<String> {
    let v = sb.json(&format!("{}ip -j neigh show to {ip}", exec(ns)));
    v.as_array()?
        .iter()
        .find_map(|e| e["lladdr"].as_str().map(str::to_string))
}

fn apply(sb: &Sandbox, name: &str, toml: &str) -> String {
    let f = sb.file(name, toml);
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    let d = sb.nsfw(&["diff", &f]);
    assert!(d.status.success(), "diff after apply\n{}", show(&d));
    f
}

const SEGMENT: &str = r#"
name = "ps"
[bridges.br0]
address = "10.10.0.1/24"
address6 = "2001:db8:10::1/64"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
address = "10.10.0.3/24"
"#;

/// The forged frames of ns1 (MAC `m1`) against ns2 (`m2`) and the host (`mb`).
fn forge(sb: &Sandbox, mark: &str, m1: &str, m2: &str, mb: &str) {
    let ll1 = sb
        .ok("ip -n ns1 -6 -br addr show dev eth0 scope link")
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.split('/').next())
        .expect("ns1's link-local address")
        .to_string();
    let bc = "ff:ff:ff:ff:ff:ff";
    let zero = "00:00:00:00:00:00";
    let all_nodes = "33:33:00:00:00:01";
    let sends: Vec<(&str, Vec<&str>)> = vec![
        // The neighbour's IPv4 source, to the world and to the host; the gateway's to ns2.
        ("udp4", vec![m1, mb, "10.10.0.3", "203.0.113.10"]),
        ("udp4", vec![m1, mb, "10.10.0.3", "10.10.0.1"]),
        ("udp4", vec![m1, m2, "10.10.0.1", "10.10.0.3"]),
        // The same in IPv6.
        ("udp6", vec![m1, mb, "2001:db8:10::3", "2001:db8:10::1"]),
        ("udp6", vec![m1, m2, "2001:db8:10::1", "2001:db8:10::3"]),
        // A foreign MAC with its own address: the neighbour's, and a made-up one.
        ("udp4", vec![m2, mb, "10.10.0.2", "10.10.0.1"]),
        (
            "udp4",
            vec!["02:00:00:00:00:99", bc, "10.10.0.2", "10.10.0.255"],
        ),
        // ARP replies for the neighbour's address (to the host) and the gateway's (to ns2).
        ("arp", vec![m1, mb, "2", m1, "10.10.0.3", mb, "10.10.0.1"]),
        ("arp", vec![m1, m2, "2", m1, "10.10.0.1", m2, "10.10.0.3"]),
        // Gratuitous ARP for the neighbour's address; an ARP reply naming another's MAC.
        ("arp", vec![m1, bc, "1", m1, "10.10.0.3", zero, "10.10.0.3"]),
        ("arp", vec![m1, mb, "2", m2, "10.10.0.2", mb, "10.10.0.1"]),
        // Neighbour advertisements (override) for the neighbour's and the gateway's address.
        ("na", vec![m1, all_nodes, &ll1, "ff02::1", "2001:db8:10::3"]),
        ("na", vec![m1, m2, &ll1, "ff02::1", "2001:db8:10::1"]),
        // Its own address, but the host's entry for it pointed at the neighbour's port (NA's
        // target link-layer option) or at no port (NS's source link-layer option).
        (
            "na",
            vec![
                m1,
                mb,
                "2001:db8:10::2",
                "2001:db8:10::1",
                "2001:db8:10::2",
                m2,
            ],
        ),
        (
            "ns",
            vec![
                m1,
                mb,
                "2001:db8:10::2",
                "2001:db8:10::1",
                "2001:db8:10::1",
                "02:00:00:00:00:99",
            ],
        ),
        // `::` as the source of anything but DAD and MLD.
        ("udp6", vec![m1, mb, "::", "2001:db8:10::1"]),
    ];
    for (kind, args) in &sends {
        send(sb, "ns1", kind, mark, args);
    }
}

#[test]
fn a_namespace_speaks_only_as_itself_at_its_bridge_port() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    apply(&sb, "ps.toml", SEGMENT);
    let (m1, m2, mb) = (
        mac(&sb, Some("ns1"), "eth0"),
        mac(&sb, Some("ns2"), "eth0"),
        mac(&sb, None, "br0"),
    );
    // Everyone knows everyone: the entries a forgery would overwrite exist.
    for (ns, to) in [
        (Some("ns2"), "10.10.0.1"),
        (Some("ns2"), "2001:db8:10::1"),
        (Some("ns1"), "10.10.0.3"),
        (None, "10.10.0.3"),
        (None, "2001:db8:10::3"),
        (None, "2001:db8:10::2"),
    ] {
        sb.ok(&format!("{}ping -c1 -W2 {to}", exec(ns)));
    }
    let spots: [Spot; 3] = [
        ("neighbour", Some("ns2"), "eth0"),
        ("host", None, "br0"),
        ("world", Some("wan"), "eth0"),
    ];
    let sniff = Sniff::start(&sb, &spots, 2.5, "NSFWPS1");
    forge(&sb, "NSFWPS1", &m1, &m2, &mb);
    for (label, n) in sniff.counts() {
        assert_eq!(n, 0, "forged frames reached the {label}");
    }
    let entries = |sb: &Sandbox| {
        [
            lladdr(sb, None, "10.10.0.3"),
            lladdr(sb, None, "2001:db8:10::3"),
            lladdr(sb, Some("ns2"), "10.10.0.1"),
            lladdr(sb, Some("ns2"), "2001:db8:10::1"),
            lladdr(sb, None, "2001:db8:10::2"),
        ]
    };
    let want = [Some(&m2), Some(&m2), Some(&mb), Some(&mb), Some(&m1)];
    assert_eq!(
        entries(&sb).each_ref().map(Option::as_ref),
        want,
        "neighbour tables changed"
    );
    // The neighbour's traffic, and ns1's own, still flow.
    for (ns, to) in [
        ("ns2", "10.10.0.1"),
        ("ns2", "2001:db8:10::1"),
        ("ns2", "203.0.113.10"),
        ("ns2", "10.10.0.2"),
        ("ns1", "10.10.0.1"),
        ("ns1", "203.0.113.10"),
    ] {
        assert!(sb.pings(ns, to), "{ns} no longer reaches {to}");
    }

    // The witnesses can see a forgery: without nsfw's bridge table the same frames arrive,
    // and the host's entry for ns2 is overwritten.
    sb.ok("nft delete table bridge nsfw_ps");
    let sniff = Sniff::start(&sb, &spots, 2.5, "NSFWPS2");
    forge(&sb, "NSFWPS2", &m1, &m2, &mb);
    let seen = sniff.counts();
    assert!(
        seen.iter().all(|(_, n)| *n > 0),
        "unguarded, the witnesses saw {seen:?}"
    );
    assert_eq!(lladdr(&sb, None, "10.10.0.3").as_ref(), Some(&m1));
    assert_ne!(lladdr(&sb, None, "2001:db8:10::2").as_ref(), Some(&m1));
    // And apply puts the guard back.
    let f = sb.dir().join("ps.toml").display().to_string();
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
}

const ISOLATED: &str = r#"
name = "iso"
[bridges.br0]
address = "10.10.0.1/24"
address6 = "2001:db8:10::1/64"
masquerade = true
isolate = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
address = "10.10.0.3/24"
"#;

/// Frames from ns1 to ns2 of every kind isolation must stop, each from ns1's own MAC and
/// addresses (what port security lets through): a made-up ethertype, a VLAN-tagged datagram,
/// ARP and neighbour discovery, unicast and broadcast.
fn to_neighbour(sb: &Sandbox, mark: &str, m1: &str, m2: &str) {
    let bc = "ff:ff:ff:ff:ff:ff";
    let sends: Vec<(&str, Vec<&str>)> = vec![
        ("raw", vec![m1, m2, "0x88b5"]),
        ("raw", vec![m1, bc, "0x88b5"]),
        ("vlan", vec![m1, m2, "10.10.0.2", "10.10.0.3"]),
        (
            "arp",
            vec![
                m1,
                bc,
                "1",
                m1,
                "10.10.0.2",
                "00:00:00:00:00:00",
                "10.10.0.3",
            ],
        ),
        ("arp", vec![m1, m2, "2", m1, "10.10.0.2", m2, "10.10.0.3"]),
        (
            "ns",
            vec![m1, m2, "2001:db8:10::2", "2001:db8:10::3", "2001:db8:10::3"],
        ),
        (
            "na",
            vec![m1, m2, "2001:db8:10::2", "2001:db8:10::3", "2001:db8:10::2"],
        ),
        ("udp4", vec![m1, m2, "10.10.0.2", "10.10.0.3"]),
    ];
    for (kind, args) in &sends {
        send(sb, "ns1", kind, mark, args);
    }
}

#[test]
fn isolated_namespaces_exchange_no_frame_of_any_kind_yet_reach_the_gateway_and_the_world() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    let f = apply(&sb, "iso.toml", ISOLATED);
    let (m1, m2) = (mac(&sb, Some("ns1"), "eth0"), mac(&sb, Some("ns2"), "eth0"));
    let flags = sb.ok("ip -d link show veth-ns1; ip -d link show veth-ns2");
    assert_eq!(flags.matches("isolated on").count(), 2, "{flags}");
    let spot: [Spot; 1] = [("neighbour", Some("ns2"), "eth0")];
    let reach = |sb: &Sandbox| {
        for ns in ["ns1", "ns2"] {
            for to in ["10.10.0.1", "2001:db8:10::1", "203.0.113.10"] {
                assert!(sb.pings(ns, to), "{ns} no longer reaches {to}");
            }
        }
    };
    reach(&sb);
    let arrived = |sb: &Sandbox, mark: &str| {
        let sniff = Sniff::start(sb, &spot, 2.0, mark);
        to_neighbour(sb, mark, &m1, &m2);
        sniff.counts()[0].1
    };
    assert_eq!(
        arrived(&sb, "NSFWISO1"),
        0,
        "frames crossed an isolated bridge"
    );
    // The port flag alone stops them, whatever the ethertype: without nsfw's tables too (the
    // inet one judges IP between the ports through br_netfilter).
    sb.ok("nft delete table bridge nsfw_iso; nft delete table inet nsfw_iso");
    assert_eq!(
        arrived(&sb, "NSFWISO2"),
        0,
        "isolation holds only by the table"
    );
    assert!(
        lladdr(&sb, Some("ns2"), "10.10.0.2").is_none(),
        "ns2 learnt ns1 across isolation"
    );
    // The witness: without the flags they arrive (all 8 kinds, 3 copies each).
    sb.ok("ip link set veth-ns1 type bridge_slave isolated off;
           ip link set veth-ns2 type bridge_slave isolated off");
    let seen = arrived(&sb, "NSFWISO3");
    assert!(seen >= 8 * 3, "unisolated, ns2 saw {seen} frames");
    // diff sees the flags and the table gone; apply puts them back.
    let d = sb.nsfw(&["diff", &f]);
    let out = String::from_utf8_lossy(&d.stdout).to_string();
    assert!(out.contains("isolated off → on"), "{}", show(&d));
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    assert_eq!(arrived(&sb, "NSFWISO4"), 0);
    reach(&sb);
}

const ROUTED: &str = r#"
name = "rt"
[host]
routes = [{ to = "10.20.0.0/24", via = "10.10.0.254" }]
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[bridges.br1]
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.router]
forward = true
routes = [{ to = "0.0.0.0/0", via = "10.10.0.1" }]
[namespaces.router.interfaces.eth0]
bridge = "br0"
address = "10.10.0.254/24"
[namespaces.router.interfaces.eth1]
bridge = "br1"
address = "10.20.0.1/24"
[namespaces.a]
bridge = "br1"
address = "10.20.0.2/24"
gateway = "10.20.0.1"
# Its port lets it send as br0's segment: the router must not.
spoof_ok = ["10.10.0.0/24"]
[namespaces.b]
bridge = "br1"
address = "10.20.0.3/24"
gateway = "10.20.0.1"
"#;

/// Datagrams from `a` through the router with sources that are not its own: its neighbour's
/// (`b_too`: stopped at a's port only), another segment's and the world's (stopped by the
/// router itself too).
fn through_router(sb: &Sandbox, mark: &str, ma: &str, mr: &str, b_too: bool) {
    let mut srcs = vec!["10.10.0.2", "198.51.100.77"];
    if b_too {
        srcs.push("10.20.0.3");
    }
    for src in srcs {
        for dst in ["203.0.113.10", "10.10.0.1", "10.10.0.2"] {
            let args = [ma, mr, src, dst];
            sb.ok(&format!(
                "ip netns exec a {} send eth0 udp4 {mark} {}",
                frames(),
                args.join(" ")
            ));
        }
    }
}

#[test]
fn behind_a_router_another_segments_address_never_leaves_it() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    apply(&sb, "rt.toml", ROUTED);
    let (ma, mb, mr) = (
        mac(&sb, Some("a"), "eth0"),
        mac(&sb, Some("b"), "eth0"),
        mac(&sb, Some("router"), "eth1"),
    );
    sb.ok("ip netns exec router ping -c1 -W2 10.20.0.3");
    let spots: [Spot; 3] = [
        ("world", Some("wan"), "eth0"),
        ("host", None, "br0"),
        ("other-segment", Some("ns1"), "eth0"),
    ];
    let sniff = Sniff::start(&sb, &spots, 2.5, "NSFWRT1");
    through_router(&sb, "NSFWRT1", &ma, &mr, true);
    // And an ARP reply to the router for b's address.
    send(
        &sb,
        "a",
        "arp",
        "NSFWRT1",
        &[&ma, &mr, "2", &ma, "10.20.0.3", &mr, "10.20.0.1"],
    );
    for (label, n) in sniff.counts() {
        assert_eq!(
            n, 0,
            "forged datagrams reached the {label} through the router"
        );
    }
    assert_eq!(lladdr(&sb, Some("router"), "10.20.0.3"), Some(mb.clone()));
    // The router's port on br1 lets it send what it routes onto br1, not br1's hosts'
    // addresses: a datagram from a's address to b, from the router's own MAC.
    let sniff = Sniff::start(&sb, &[("b", Some("b"), "eth0")], 1.5, "NSFWRT3");
    let args = [mr.as_str(), mb.as_str(), "10.20.0.2", "10.20.0.3"];
    sb.ok(&format!(
        "ip netns exec router {} send eth1 udp4 NSFWRT3 {}",
        frames(),
        args.join(" ")
    ));
    assert_eq!(sniff.counts()[0].1, 0, "the router spoke as a to b");
    let allowed = |sb: &Sandbox| {
        for (ns, to) in [
            ("b", "203.0.113.10"),
            ("b", "10.10.0.2"),
            ("a", "203.0.113.10"),
        ] {
            assert!(sb.pings(ns, to), "{ns} no longer reaches {to}");
        }
    };
    allowed(&sb);
    // The router's own table holds by itself for what is not its segment's.
    sb.ok("nft delete table bridge nsfw_rt");
    let sniff = Sniff::start(&sb, &spots, 2.5, "NSFWRT2");
    through_router(&sb, "NSFWRT2", &ma, &mr, false);
    for (label, n) in sniff.counts() {
        assert_eq!(
            n, 0,
            "the router let another segment's address out to the {label}"
        );
    }
    allowed(&sb);
    // The witness: without it they leave.
    sb.ok("ip netns exec router nft delete table inet nsfw_rt");
    let sniff = Sniff::start(&sb, &spots, 2.5, "NSFWRT3");
    through_router(&sb, "NSFWRT3", &ma, &mr, false);
    let seen = sniff.counts();
    assert!(
        seen.iter().all(|(_, n)| *n > 0),
        "unguarded, the witnesses saw {seen:?}"
    );
}
