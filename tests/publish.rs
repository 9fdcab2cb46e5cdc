//! Published ports with real connections: from the world (the namespace sees the client's own
//! address), restricted to one host address, UDP, ranges, hairpin from a neighbour, from the
//! host itself (its own addresses and 127.0.0.1); what is not published stays closed.

mod common;

use common::{Sandbox, show};

const WAN: &str = "198.51.100.2";
const HOST: &str = "198.51.100.1";
const GW: &str = "10.10.0.1";

fn lab(publish: &str) -> String {
    format!(
        "name = \"pub\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\npublish = [{publish}]\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n"
    )
}

const ALL: &str = r#""8080:80", "198.51.100.1:8081:81", "127.0.0.1:8443:443", "5353:53/udp", "9000-9002:9100-9102""#;

fn up() -> Option<(Sandbox, String)> {
    let sb = Sandbox::or_skip()?;
    sb.upstream(&["10.10.0.0/24"]);
    let f = sb.file("pub.toml", &lab(ALL));
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "tcp", &[80, 81, 443, 9100, 9101, 9102, 22]);
    sb.serve(Some("ns1"), "udp", &[53]);
    Some((sb, f))
}

#[test]
fn published_ports_answer_every_way_they_are_published() {
    let Some((sb, f)) = up() else { return };
    let wan = Some("wan");
    // From the world: the namespace sees the client's own address, no SNAT on the way in.
    assert_eq!(sb.ask(wan, "tcp", HOST, 8080).as_deref(), Some(WAN));
    assert_eq!(sb.ask(wan, "udp", HOST, 5353).as_deref(), Some(WAN));
    assert_eq!(
        sb.ask(wan, "tcp", HOST, 9001).as_deref(),
        Some(WAN),
        "the middle of a range"
    );
    // Restricted to one address: that one answers, another of the host's refuses.
    assert_eq!(sb.ask(wan, "tcp", HOST, 8081).as_deref(), Some(WAN));
    assert_eq!(
        sb.ask(wan, "tcp", GW, 8081),
        None,
        "published on 198.51.100.1 only"
    );
    // 127.0.0.1 only: not from the world.
    assert_eq!(sb.ask(wan, "tcp", HOST, 8443), None);
    // Hairpin: a neighbour on the same bridge, through the host's addresses; masqueraded so
    // the reply comes back the same way.
    for addr in [HOST, GW] {
        assert_eq!(
            sb.ask(Some("ns2"), "tcp", addr, 8080).as_deref(),
            Some(GW),
            "hairpin via {addr}"
        );
    }
    // From the host itself: its own addresses and localhost.
    assert_eq!(sb.ask(None, "tcp", GW, 8080).as_deref(), Some(GW));
    assert_eq!(sb.ask(None, "tcp", "127.0.0.1", 8443).as_deref(), Some(GW));
    assert_eq!(
        sb.ask(None, "tcp", "127.0.0.1", 8080).as_deref(),
        Some(GW),
        "a plain publish is on localhost too"
    );
    // Unpublished: closed from the world, directly or through the host.
    assert_eq!(sb.ask(wan, "tcp", "10.10.0.2", 22), None);
    assert_eq!(
        sb.ask(wan, "tcp", "10.10.0.2", 80),
        None,
        "the namespace's own port, not through the map"
    );
    assert_eq!(sb.ask(wan, "tcp", HOST, 22), None);
    assert_eq!(
        sb.ok("cat /proc/sys/net/ipv4/conf/br0/route_localnet")
            .trim(),
        "1",
        "route_localnet on the bridge that needs it"
    );
    // Removing an entry and applying closes it; the rest stays open.
    let fewer = sb.file("fewer.toml", &lab(r#""8080:80""#));
    let out = sb.nsfw_code(&["apply", &fewer], 0);
    assert!(
        out.contains("- nft element inet nsfw_pub publish4: udp . 5353"),
        "{out}"
    );
    assert_eq!(sb.ask(wan, "udp", HOST, 5353), None);
    assert_eq!(sb.ask(wan, "tcp", HOST, 9001), None);
    assert_eq!(sb.ask(wan, "tcp", HOST, 8080).as_deref(), Some(WAN));
    assert_eq!(
        sb.ok("cat /proc/sys/net/ipv4/conf/br0/route_localnet")
            .trim(),
        "1"
    );
    let none = sb.file("none.toml", &lab(""));
    sb.nsfw_code(&["apply", &none], 0);
    assert_eq!(sb.ask(wan, "tcp", HOST, 8080), None);
    assert_eq!(
        sb.ok("cat /proc/sys/net/ipv4/conf/br0/route_localnet")
            .trim(),
        "0"
    );
    sb.nsfw_code(&["diff", &none], 0);
    let _ = f;
}

#[test]
fn a_change_of_one_port_sends_only_map_elements() {
    let Some((sb, _)) = up() else { return };
    let moved = sb.file("moved.toml", &lab(&ALL.replace("8080:80", "8088:80")));
    let out = sb.nsfw_code(&["apply", &moved], 0);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(['+', '-', '~']))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("nft element inet nsfw_pub publish4")),
        "{out}"
    );
    assert_eq!(sb.ask(Some("wan"), "tcp", HOST, 8088).as_deref(), Some(WAN));
    assert_eq!(sb.ask(Some("wan"), "tcp", HOST, 8080), None);
}

#[test]
fn bad_publish_entries_are_refused() {
    let Some(sb) = Sandbox::or_skip() else { return };
    for (entry, want) in [
        (r#""0:80""#, "port 0"),
        (r#""70000:80""#, "above 65535"),
        (r#""8080""#, "one port only"),
        (r#""9000-9010:80-85""#, "different lengths"),
        (r#""8080:80/sctp""#, "not tcp or udp"),
        (r#""8080:80", "127.0.0.1:8080:81""#, "already published"),
        (
            r#""[127.0.0.1]:8080:80""#,
            "brackets are for IPv6 addresses",
        ),
        (r#""+8080:80""#, "host port `+8080` is not a number"),
    ] {
        let f = sb.file("bad.toml", &lab(entry));
        let o = sb.nsfw(&["apply", &f]);
        assert_eq!(o.status.code(), Some(1), "{entry}\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("namespaces.ns1.publish") && err.contains(want),
            "{entry}: {err}"
        );
    }
    assert!(sb.netns().is_empty());
}

#[test]
fn a_port_the_host_already_listens_on_is_a_warning() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.serve(None, "tcp", &[8080]);
    let f = sb.file("pub.toml", &lab(r#""8080:80", "8081:81""#));
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("already listens"))
        .collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(
        warned[0].contains("namespaces.ns1.publish") && warned[0].contains(":8080/tcp"),
        "{err}"
    );
}

/// A range names every listener it shadows; a publish restricted to an address the host does
/// not have (or to a namespace's address) is a dead entry: a warning, as the host may gain it.
#[test]
fn dead_and_shadowing_publishes_are_warnings() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.serve(None, "tcp", &[2022]);
    sb.ok("/usr/bin/python3 -c 'import socket,time
s=socket.socket(); s.bind((\"127.0.0.1\",5432)); s.listen(); time.sleep(120)' >/dev/null 2>&1 &
           for i in $(seq 50); do ss -ltn | grep -q 127.0.0.1:5432 && break; sleep 0.1; done");
    let f = sb.file(
        "pub.toml",
        &lab(r#""2000-6000:2000-6000", "192.0.2.99:8080:80", "10.10.0.3:8081:80", "198.51.100.1:8082:80", "10.10.0.1:8083:80""#),
    );
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = |what: &str| {
        err.lines()
            .find(|l| l.starts_with("warning:") && l.contains(what))
            .unwrap_or_else(|| panic!("no warning about {what}:\n{err}"))
            .to_string()
    };
    let l = line("2000-6000");
    assert!(
        l.contains("0.0.0.0:2022/tcp") && l.contains("127.0.0.1:5432/tcp"),
        "{l}"
    );
    assert!(line("192.0.2.99:8080:80").contains("the host has no such address"));
    assert!(line("10.10.0.3:8081:80").contains("namespace ns2's address"));
    // The uplink's address and the bridge's (which this very apply adds) are the host's.
    assert!(
        !err.contains("8082:80") && !err.contains("8083:80"),
        "{err}"
    );
    sb.nsfw_code(&["diff", &f], 0);
}

/// Two topologies publishing one host port: the second is refused (naming the first, its
/// entry and the file) and nothing of it is made, whether the clash is plain against plain or
/// plain against address-restricted; two different addresses of one port do not clash.
#[test]
fn a_host_port_another_topology_publishes_is_a_conflict() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24", "10.20.0.0/24"]);
    let a = sb.file(
        "a.toml",
        "name = \"alpha\"\n[bridges.bra]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.na]\nbridge = \"bra\"\naddress = \"10.10.0.2/24\"\npublish = [\"8080:80\", \"127.0.0.1:9090:80\"]\n",
    );
    let beta = |publish: &str| {
        format!(
            "name = \"beta\"\n[bridges.brb]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n[namespaces.nb]\nbridge = \"brb\"\naddress = \"10.20.0.2/24\"\npublish = [{publish}]\n"
        )
    };
    sb.nsfw_code(&["apply", &a], 0);
    sb.serve(Some("na"), "tcp", &[80]);
    for (publish, port) in [(r#""8080:80""#, 8080), (r#""9090:80""#, 9090)] {
        let b = sb.file("b.toml", &beta(publish));
        for cmd in ["diff", "apply"] {
            let o = sb.nsfw(&[cmd, &b]);
            assert_eq!(o.status.code(), Some(1), "{cmd} {publish}: {}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("b.toml: namespaces.nb.publish")
                    && err.contains(&format!(
                        "host port {port}/tcp is already published by topology alpha"
                    )),
                "{cmd} {publish}: {err}"
            );
        }
        assert_eq!(
            sb.netns(),
            vec!["na".to_string(), "wan".to_string()],
            "{publish}"
        );
        assert!(!sb.ok("nft list tables").contains("nsfw_beta"), "{publish}");
    }
    assert_eq!(sb.ask(Some("wan"), "tcp", HOST, 8080).as_deref(), Some(WAN));
    assert_eq!(sb.ask(None, "tcp", "127.0.0.1", 9090).as_deref(), Some(GW));
    // Restricted to two different addresses: both stand.
    let b = sb.file("b.toml", &beta(r#""127.0.0.2:9090:80", "8081:80""#));
    sb.nsfw_code(&["apply", &b], 0);
    sb.nsfw_code(&["diff", &a], 0);
    sb.nsfw_code(&["diff", &b], 0);
    sb.serve(Some("nb"), "tcp", &[80]);
    assert_eq!(sb.ask(None, "tcp", "127.0.0.1", 9090).as_deref(), Some(GW));
    assert_eq!(
        sb.ask(None, "tcp", "127.0.0.2", 9090).as_deref(),
        Some("10.20.0.1")
    );
    // And alpha, re-applied with a port beta now holds, is refused in turn.
    let a2 = sb.file(
        "a.toml",
        "name = \"alpha\"\n[bridges.bra]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.na]\nbridge = \"bra\"\naddress = \"10.10.0.2/24\"\npublish = [\"8080:80\", \"127.0.0.1:9090:80\", \"8081:80\"]\n",
    );
    let o = sb.nsfw(&["apply", &a2]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("host port 8081/tcp is already published by topology beta"),
        "{}",
        show(&o)
    );
}

/// A namespace reaches its own published port through the host's addresses (as with Docker),
/// with bridge-nf-call-iptables at 0 and 1, and with a policy entry (which turns on the
/// bridge's own nf_call_iptables): the frame DNATed inside the bridge leaves by the port it
/// came in, which needs hairpin mode on that port. The mode is nsfw's to keep: a drift shows
/// in diff, apply puts it back, and `try` checks the path.
#[test]
fn a_namespace_reaches_its_own_published_port() {
    let deny = "[[deny]]\nfrom = \"ns2\"\nto = \"ns1\"\nports = [\"tcp/22\"]\n";
    for (sysctl, extra) in [("0", ""), ("1", ""), ("0", deny)] {
        let what = format!("sysctl {sysctl}, policy {}", !extra.is_empty());
        let Some(sb) = Sandbox::or_skip() else { return };
        sb.upstream(&["10.10.0.0/24"]);
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={sysctl}"
        ));
        let f = sb.file(
            "pub.toml",
            &format!("{}{extra}", lab(r#""8080:80", "5353:53/udp""#)),
        );
        sb.nsfw_code(&["apply", &f], 0);
        sb.serve(Some("ns1"), "tcp", &[80]);
        sb.serve(Some("ns1"), "udp", &[53]);
        assert_eq!(
            sb.ask(Some("ns2"), "tcp", GW, 8080).as_deref(),
            Some(GW),
            "neighbour, {what}"
        );
        for addr in [GW, HOST] {
            assert_eq!(
                sb.ask(Some("ns1"), "tcp", addr, 8080).as_deref(),
                Some(GW),
                "ns1 to its own port via {addr}, {what}"
            );
            assert_eq!(
                sb.ask(Some("ns1"), "udp", addr, 5353).as_deref(),
                Some(GW),
                "ns1 to its own udp port via {addr}, {what}"
            );
        }
        // Only the published namespace's port is in hairpin mode.
        let links = sb.ok("ip -d link show");
        let hairpin = |dev: &str| {
            let block: String = links
                .split("\n")
                .skip_while(|l| !l.contains(&format!(" {dev}@")))
                .take(4)
                .collect();
            block.contains("hairpin on")
        };
        assert!(
            hairpin("veth-ns1") && !hairpin("veth-ns2"),
            "{what}:\n{links}"
        );
        sb.ok("ip link set veth-ns1 type bridge_slave hairpin off");
        let d = sb.nsfw_code(&["diff", &f], 2);
        assert!(d.contains("veth-ns1: hairpin off → on"), "{d}");
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        assert_eq!(
            sb.ask(Some("ns1"), "tcp", GW, 8080).as_deref(),
            Some(GW),
            "again, {what}"
        );
        let out = sb.nsfw_code(&["verify", &f], 0);
        assert!(
            out.lines().any(|l| l.starts_with("ns1 ")
                && l.contains("ns1:80 at host 10.10.0.1")
                && l.ends_with(" ok")),
            "{out}"
        );
    }
}

/// The datagrams to udp/53 namespace `ns` has received so far (a counter there).
fn udp53(sb: &Sandbox, ns: &str) -> u64 {
    sb.ok(&format!("ip netns exec {ns} nft list chain ip c53 input"))
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("counter")
}

/// A counter of the UDP datagrams to port 53 that namespace `ns` receives (read by `udp53`).
fn count_udp53(sb: &Sandbox, ns: &str) {
    sb.ok(&format!(
        "ip netns exec {ns} nft add table ip c53
         ip netns exec {ns} nft add chain ip c53 input '{{ type filter hook input priority 0; }}'
         ip netns exec {ns} nft add rule ip c53 input udp dport 53 counter"
    ));
}

/// Ten datagrams a second from 198.51.100.2:`port` to the host's 5353, for 20 s, in the
/// background.
fn udp_client(sb: &Sandbox, port: u16) -> std::process::Child {
    sb.spawn_sh(&format!(
        "exec ip netns exec wan /usr/bin/python3 -c 'import socket,time
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"0.0.0.0\", {port})); s.settimeout(0.05)
for _ in range(200):
    s.sendto(b\"x\", (\"{HOST}\", 5353)); time.sleep(0.1)'"
    ))
}

/// A UDP client that keeps sending from one source port follows a published port that moves
/// to another namespace, and stops reaching any when the publish goes: apply deletes the
/// conntrack entries of the old translation (a new datagram is a new connection).
#[test]
fn a_running_udp_flow_follows_its_published_port() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let two = |ns1: &str, ns2: &str| {
        format!(
            "name = \"pub\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\npublish = [{ns1}]\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\npublish = [{ns2}]\n"
        )
    };
    let f = sb.file("pub.toml", &two(r#""5353:53/udp""#, ""));
    sb.nsfw_code(&["apply", &f], 0);
    for ns in ["ns1", "ns2"] {
        sb.serve(Some(ns), "udp", &[53]);
        count_udp53(&sb, ns);
    }
    let mut client = udp_client(&sb, 40000);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        udp53(&sb, "ns1") > 0,
        "the flow does not reach ns1 at first"
    );
    let growing = |ns: &str| {
        let a = udp53(&sb, ns);
        std::thread::sleep(std::time::Duration::from_millis(800));
        udp53(&sb, ns) > a
    };
    // The port moves to ns2: the running flow goes there, and no longer to ns1.
    let f = sb.file("pub.toml", &two("", r#""5353:53/udp""#));
    sb.nsfw_code(&["apply", &f], 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !growing("ns1"),
        "the running flow still reaches ns1 after the port moved"
    );
    assert!(
        growing("ns2"),
        "the running flow does not reach ns2 after the port moved"
    );
    // The publish goes: the flow reaches no namespace.
    let f = sb.file("pub.toml", &two("", ""));
    sb.nsfw_code(&["apply", &f], 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !growing("ns2") && !growing("ns1"),
        "the flow outlived its publish"
    );
    let _ = client.kill();
    let _ = client.wait();
}

/// The other way round (kube-proxy's lesson): a UDP client already sending to a host port
/// that is not published yet has an untranslated conntrack entry to the host, which its
/// datagrams keep following after the port is published — unless apply deletes it.
#[test]
fn a_running_udp_flow_reaches_a_port_published_after_it_started() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let one = |publish: &str| {
        format!(
            "name = \"pub\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\npublish = [{publish}]\n"
        )
    };
    let f = sb.file("pub.toml", &one(""));
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "udp", &[53]);
    count_udp53(&sb, "ns1");
    let mut client = udp_client(&sb, 40001);
    // The flow runs (to the host, which has nothing on 5353) before the port is published.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        udp53(&sb, "ns1"),
        0,
        "the flow reached ns1 before the publish"
    );
    let f = sb.file("pub.toml", &one(r#""5353:53/udp""#));
    sb.nsfw_code(&["apply", &f], 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let a = udp53(&sb, "ns1");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        udp53(&sb, "ns1") > a,
        "the running flow does not reach ns1 after its port was published"
    );
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn a_spoofed_source_never_reaches_the_upstream() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.ok("ip netns exec wan nft add rule ip seen input ip saddr 192.168.99.5 counter comment spoofed");
    let f = sb.file("pub.toml", &lab(""));
    sb.nsfw_code(&["apply", &f], 0);
    let py = common::net_py();
    // A source outside the bridge's subnet (another network's, the upstream router's own).
    for src in ["192.168.99.5", "198.51.100.2"] {
        sb.ok(&format!(
            "ip netns exec ns1 {py} spoof {src} 203.0.113.10 7"
        ));
    }
    // The same sender with its own address, sent after them on the same path, does get
    // through (the check can fail); once it has, the spoofed ones had their chance too. It
    // is waited for (a loaded machine resolves the upstream's neighbour late), not slept on.
    let before = sb.seen_from("uplink");
    sb.ok(&format!(
        "ip netns exec ns1 {py} spoof 10.10.0.2 203.0.113.10 7"
    ));
    let t0 = std::time::Instant::now();
    while sb.seen_from("uplink") <= before && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        sb.seen_from("uplink") > before,
        "an honest packet did not get through"
    );
    assert_eq!(
        sb.seen_from("spoofed"),
        0,
        "a spoofed packet reached the upstream"
    );
}

#[test]
fn next_to_docker_namespaces_reach_only_what_an_outside_host_could() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    // A Docker-like host: docker0 with a container, FORWARD drop, Docker's chains, one
    // published container port (80).
    sb.ok(
        "set -e
         ip link add docker0 type bridge; ip addr add 172.17.0.1/16 dev docker0; ip link set docker0 up
         ip netns add c1; ip link add vc1 type veth peer name eth0 netns c1
         ip link set vc1 master docker0 up; ip -n c1 link set eth0 up; ip -n c1 link set lo up
         ip -n c1 addr add 172.17.0.2/16 dev eth0; ip -n c1 route add default via 172.17.0.1
         iptables -P FORWARD DROP
         iptables -N DOCKER; iptables -N DOCKER-USER
         iptables -A FORWARD -j DOCKER-USER
         iptables -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
         iptables -A FORWARD -o docker0 -j DOCKER
         iptables -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
         iptables -A FORWARD -i docker0 -o docker0 -j ACCEPT
         iptables -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
         iptables -A DOCKER-USER -j RETURN",
    );
    sb.serve(Some("c1"), "tcp", &[80, 22]);
    let f = sb.file("pub.toml", &lab(""));
    sb.nsfw_code(&["apply", &f], 0);
    let rules = sb.ok("iptables -S DOCKER-USER");
    assert!(
        rules.contains(
            "-A DOCKER-USER -i br0 -o docker0 -m comment --comment \"nsfw:pub\" -j RETURN"
        ),
        "{rules}"
    );
    assert!(
        sb.ask(Some("ns1"), "tcp", "172.17.0.2", 80).is_some(),
        "a published container port"
    );
    assert_eq!(
        sb.ask(Some("ns1"), "tcp", "172.17.0.2", 22),
        None,
        "an unpublished container port"
    );
    assert!(
        sb.pings("ns1", "203.0.113.10"),
        "the world is still reachable"
    );
    sb.nsfw_code(&["diff", &f], 0);
    sb.nsfw_code(&["flush", &f], 0);
    assert!(!sb.ok("iptables -S DOCKER-USER").contains("nsfw"));
}

/// From the host, a port published on every address answers at 127.0.0.1 and at the host's
/// IPv6 addresses; at [::1] it is refused at once (a client trying `localhost` moves on to
/// 127.0.0.1), never left hanging: Linux sends nothing from ::1 out of an interface, with or
/// without NAT (docs/topology.md, Published ports).
#[test]
fn a_port_published_everywhere_answers_at_127_0_0_1_and_is_refused_at_1() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let text = "name = \"pub\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\naddress6 = \"fd00:10::1/64\"\n[namespaces.ns1]\nbridge = \"br0\"\npublish = [\"8080:80\"]\n";
    let f = sb.file("pub.toml", text);
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "tcp6", &[80]);
    assert!(sb.ask(None, "tcp", "127.0.0.1", 8080).is_some());
    assert!(sb.ask(None, "tcp", "fd00:10::1", 8080).is_some());
    let got = sb.ok("python3 -c '
import socket
s = socket.socket(socket.AF_INET6); s.settimeout(5)
try:
    s.connect((\"::1\", 8080)); print(\"connected\")
except ConnectionRefusedError: print(\"refused\")
except OSError as e: print(\"other\", e)
'");
    assert_eq!(got.trim(), "refused");
}
