//! `nsfw import` and `apply --adopt` on the guide's lab built by hand with the guide's own
//! commands: the file describes it, adoption keeps every process and connection, the guide's
//! iptables lines go in the batch that loads nsfw's table, and flush leaves the host as it was
//! before the guide's script.

mod common;

use common::Sandbox;

/// The guide's script (bridge, veths, addresses, routes, ip_forward, MASQUERADE, the two
/// FORWARD lines, a resolv.conf), with the sandbox's upstream as its eth0.
const GUIDE: &str = r#"set -e
ip netns add ns1
ip netns add ns2
ip link add br0 type bridge
ip addr add 10.10.0.1/24 dev br0
ip link set br0 up
for ns in ns1 ns2; do
    ip link add "veth-${ns}" type veth peer name "eth0-${ns}"
    ip link set "eth0-${ns}" netns "${ns}"
    ip link set "veth-${ns}" master br0
    ip link set "veth-${ns}" up
done
ip netns exec ns1 ip addr add 10.10.0.2/24 dev eth0-ns1
ip netns exec ns1 ip link set eth0-ns1 up
ip netns exec ns1 ip link set lo up
ip netns exec ns1 ip route add default via 10.10.0.1
ip netns exec ns2 ip addr add 10.10.0.3/24 dev eth0-ns2
ip netns exec ns2 ip link set eth0-ns2 up
ip netns exec ns2 ip link set lo up
ip netns exec ns2 ip route add default via 10.10.0.1
sysctl -qw net.ipv4.ip_forward=1
iptables-nft -t nat -A POSTROUTING -s 10.10.0.0/24 ! -o br0 -j MASQUERADE
iptables-nft -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables-nft -A FORWARD -i br0 -o uplink -j ACCEPT
mkdir -p /etc/netns/ns1
echo "nameserver 192.0.2.53" > /etc/netns/ns1/resolv.conf
"#;

/// The guide's script with its rules in iptables-legacy, as a reader of the guide on a host
/// without iptables-nft runs it.
fn legacy_guide() -> String {
    GUIDE.replace("iptables-nft", "iptables-legacy")
}

/// What the sandbox looks like, for "as before". A flush does not wait for the kernel's
/// namespace teardown, which takes the lab's veth host ends with it a moment later: that
/// moment is waited for (at most 5 s).
fn state(sb: &Sandbox) -> String {
    sb.ok("for i in $(seq 50); do ip -br link | grep -q '^veth-' || break; sleep 0.1; done; ip -br link | awk '{print $1}' | sort; ls /run/netns; ls /etc/netns; cat /proc/sys/net/ipv4/ip_forward; nft list ruleset | grep -v policy | grep -c -e masquerade -e accept -e dnat || true; iptables-legacy-save 2>/dev/null | grep -c -e '-j ' -e ':FORWARD DROP' || true")
}

/// The guide's lines left in iptables-legacy.
fn legacy_lines(sb: &Sandbox) -> String {
    sb.ok("iptables-legacy-save 2>/dev/null | grep -e '-j ' || true")
}

/// Traffic that must survive adoption: a TCP connection ns1 → upstream sending every 50 ms
/// (what arrives is appended to DIR/rx), a 10 ms ping ns2 → upstream (DIR/ping), and a sleep
/// in ns1 (its pid in DIR/sleep). Returns DIR.
fn traffic(sb: &Sandbox) -> String {
    let d = sb.dir().display().to_string();
    // Traffic that must survive: a TCP connection ns1 → upstream sending every 50 ms, a 10 ms
    // ping ns2 → upstream, and a sleep in ns1.
    sb.ok(&format!(
        r#"ip netns exec wan python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(); c, _ = s.accept(); f = open("{d}/rx", "ab", 0)
while True:
    b = c.recv(100)
    if not b: break
    f.write(b)' >/dev/null 2>&1 & echo $! >> {d}/pids; sleep 0.3"#
    ));
    sb.ok(&format!(
        r#"ip netns exec ns1 python3 -c '
import socket, time
c = socket.create_connection(("203.0.113.10", 7000))
while True: c.send(b"x" * 10); time.sleep(0.05)' >/dev/null 2>&1 & echo $! >> {d}/pids"#
    ));
    sb.ok(&format!(
        "ip netns exec ns2 ping -i 0.01 -c 400 203.0.113.10 > {d}/ping 2>&1 & echo $! >> {d}/pids"
    ));
    sb.ok(&format!("ip netns exec ns1 sleep 300 >/dev/null 2>&1 & echo $! > {d}/sleep; cat {d}/sleep >> {d}/pids; sleep 0.5"));
    d
}

#[test]
fn the_guides_lab_is_adopted_without_an_outage() {
    let Some(sb) = Sandbox::or_skip() else { return };
    adopted_without_an_outage(&sb, GUIDE);
}

/// The same lab with the guide's lines in iptables-legacy: read over x_tables' socket
/// options, removed right after the batch.
#[test]
fn the_guides_lab_in_iptables_legacy_is_adopted_without_an_outage() {
    let Some(sb) = Sandbox::or_skip() else { return };
    adopted_without_an_outage(&sb, &legacy_guide());
    assert_eq!(legacy_lines(&sb), "", "the guide's legacy lines are gone");
}

fn adopted_without_an_outage(sb: &Sandbox, guide: &str) {
    sb.upstream(&[]);
    // A host that forwarded before the guide (Docker, a router): flush must leave it on, as
    // nsfw cannot tell the guide turned it on.
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let before = state(sb);
    sb.ok(guide);
    // Before adoption, a plain apply refuses and says --adopt exists.
    let lab0 = sb.file("lab0.toml", common::LAB);
    let o = sb.nsfw(&["apply", &lab0]);
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--adopt"),
        "{}",
        common::show(&o)
    );

    let d = traffic(sb);
    let ino = |sb: &Sandbox| sb.ok(&format!("readlink /proc/$(cat {d}/sleep)/ns/net"));
    let rx = |sb: &Sandbox| -> u64 {
        sb.ok(&format!("sleep 0.5; wc -c < {d}/rx"))
            .trim()
            .parse()
            .unwrap()
    };
    let ino0 = ino(sb);
    assert!(rx(sb) > 0, "the connection carries bytes");

    let toml = sb.ok(&format!("{} import", common::NSFW));
    assert!(
        toml.contains("masquerade = true") && toml.contains("dns = [\"192.0.2.53\"]"),
        "{toml}"
    );
    assert_eq!(
        toml,
        sb.ok(&format!("{} import", common::NSFW)),
        "import twice: the same file"
    );
    let lab = sb.file("lab.toml", &toml);
    sb.nsfw_code(&["diff", "--adopt", &lab], 2);
    sb.nsfw_code(&["apply", "--adopt", &lab], 0);
    let (rx1, rx2) = (rx(sb), rx(sb));
    assert!(
        rx2 > rx1,
        "the TCP connection keeps flowing after adoption ({rx1} → {rx2})"
    );
    assert_eq!(ino(sb), ino0, "the sleep is still in the same namespace");
    let ruleset = sb.ok("nft list ruleset");
    assert!(ruleset.contains("table inet nsfw_lab"), "{ruleset}");
    assert!(
        !ruleset.contains("saddr 10.10.0.0/24 counter")
            && !ruleset.contains("oifname \"uplink\" counter"),
        "the guide's lines are gone:\n{ruleset}"
    );
    assert_eq!(legacy_lines(sb), "", "the guide's legacy lines are gone");
    assert!(sb.pings("ns1", "203.0.113.10"), "NAT still works");
    // Unsolicited inbound from upstream is blocked.
    sb.ok(&format!(r#"ip netns exec ns1 python3 -c '
import socket
s = socket.socket(); s.bind(("0.0.0.0", 8000)); s.listen(); s.accept()' >/dev/null 2>&1 & echo $! >> {d}/pids
ip -n wan route add 10.10.0.0/24 via 198.51.100.1; sleep 0.3"#));
    let inbound = sb.sh(r#"ip netns exec wan python3 -c '
import socket
socket.create_connection(("10.10.0.2", 8000), timeout=1)'"#);
    assert!(!inbound.status.success(), "unsolicited inbound reached ns1");
    sb.ok("ip -n wan route del 10.10.0.0/24");
    sb.nsfw_code(&["diff", &lab], 0);
    let ping = sb.ok(&format!(
        "for i in $(seq 100); do grep -q transmitted {d}/ping && break; sleep 0.2; done; cat {d}/ping"
    ));
    let lost = 400 - ping.lines().filter(|l| l.contains("bytes from")).count();
    assert!(lost <= 1, "{lost} pings lost:\n{ping}");
    sb.ok(&format!("kill $(cat {d}/pids) 2>/dev/null; sleep 0.3"));
    sb.nsfw_code(&["flush", &lab], 0);
    assert_eq!(
        state(sb),
        before,
        "flush leaves the sandbox as before the guide's script"
    );
}

#[test]
fn import_of_an_empty_host_is_a_valid_file_and_odd_things_are_kept_as_comments() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let empty = sb.ok(&format!("{} import", common::NSFW));
    let f = sb.file("empty.toml", &empty);
    sb.nsfw_code(&["show", &f], 0);
    sb.ok(GUIDE);
    sb.ok(
        "iptables-nft -t mangle -A PREROUTING -i br0 -j MARK --set-mark 1
           ip link add br1 type bridge && ip addr add 10.20.0.1/24 dev br1 && ip link set br1 up
           ip link add v2-ns1 type veth peer name eth1 netns ns1
           ip link set v2-ns1 master br1 && ip link set v2-ns1 up
           ip -n ns1 addr add 10.20.0.2/24 dev eth1 && ip -n ns1 link set eth1 up
           tc qdisc add dev veth-ns2 root tbf rate 1mbit burst 32kbit latency 400ms
           tc qdisc add dev veth-ns1 clsact
           tc filter add dev veth-ns1 ingress protocol all prio 1 u32 match u32 0 0",
    );
    let o = sb.nsfw(&["import"]);
    assert!(o.status.success(), "{}", common::show(&o));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        out.contains("#   ip mangle PREROUTING: iifname \"br0\""),
        "{out}"
    );
    assert!(
        err.contains("not translated: ip mangle PREROUTING"),
        "{err}"
    );
    assert!(
        out.contains("#   namespace ns2: tc qdisc tbf on veth-ns2"),
        "{out}"
    );
    assert!(
        out.contains("#   veth-ns1: tc clsact qdisc with filters (u32) not translated"),
        "{out}"
    );
    let json = sb.ok(&format!("{} import --json", common::NSFW));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["namespaces"], serde_json::json!(["ns1", "ns2"]));
    // Two veths on two bridges is something the file can say: it does, and it adopts.
    assert!(out.contains("[namespaces.ns1.interfaces.eth1]"), "{out}");
    let f = sb.file("two.toml", &out);
    sb.nsfw_code(&["apply", "--adopt", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    assert!(sb.pings("ns1", "10.20.0.1") && sb.pings("ns1", "10.10.0.1"));
}

/// The hardened variant (FORWARD policy drop, `-i br0 -o uplink`, the conntrack accept) with a
/// DNAT port forward added by hand, adopted by runs killed at several instants: the next
/// `apply --adopt` finishes the work, the forward still answers (as `publish`), and flush
/// leaves the sandbox as it was.
#[test]
fn a_killed_adoption_converges_and_the_hand_made_port_forward_keeps_answering() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    // Forwarding found on stays on at flush (see above): start from on.
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let before = state(&sb);
    for (round, ms) in [3u64, 15, 40, 80].into_iter().enumerate() {
        sb.ok(GUIDE);
        sb.ok("iptables-nft -P FORWARD DROP
               iptables-nft -t nat -A PREROUTING -d 198.51.100.1 -p tcp --dport 8080 -j DNAT --to-destination 10.10.0.2:80
               iptables-nft -A FORWARD -d 10.10.0.2 -p tcp --dport 80 -j ACCEPT");
        sb.serve(Some("ns1"), "tcp", &[80]);
        let toml = sb.ok(&format!("{} import", common::NSFW));
        // The DNAT names a host address, as publish can (one limited to `-i uplink` is no
        // publish: it stays on the host, unit tests in import::rules).
        assert!(
            toml.contains("publish = [\"198.51.100.1:8080:80/tcp\"]"),
            "{toml}"
        );
        let lab = sb.file("lab.toml", &toml);
        let mut child = sb.spawn_nsfw(&["apply", "--adopt", &lab]);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        if let Some(pid) = common::inner_pid(&child) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        // Killed or not, the lab kept working and the next run finishes the adoption.
        assert!(
            sb.pings("ns1", "203.0.113.10"),
            "round {round}: NAT after the kill"
        );
        sb.nsfw_code(&["apply", "--adopt", &lab], 0);
        sb.nsfw_code(&["diff", &lab], 0);
        let got = sb.ask(Some("wan"), "tcp", "198.51.100.1", 8080);
        assert!(
            got.is_some(),
            "round {round}: the port forward answers after adoption"
        );
        let ruleset = sb.ok("nft list table ip nat; nft list chain ip filter FORWARD");
        assert!(!ruleset.contains("dnat to 10.10.0.2:80"), "{ruleset}");
        assert!(
            ruleset.contains("policy drop"),
            "FORWARD's policy is left as it was"
        );
        // The server holds ns1: it goes first, so flush's deletion frees the namespace.
        sb.ok("ip netns pids ns1 | xargs -r kill; sleep 0.2");
        sb.nsfw_code(&["flush", &lab], 0);
        sb.ok("iptables-nft -P FORWARD ACCEPT; iptables-nft -F FORWARD");
        assert_eq!(state(&sb), before, "round {round}");
    }
}

/// The hardened variant in iptables-legacy (FORWARD policy drop, `-i br0 -o uplink`, the
/// conntrack accept) with a DNAT added by hand, adopted by a run killed -9 after it loaded
/// nsfw's table and before it removed the legacy lines (held there by iptables' own lock):
/// the next run, even a plain apply, removes them; the forward keeps answering (as
/// `publish`); the accepts iptables-legacy's drop policy needs stay; flush leaves the sandbox
/// as it was.
#[test]
fn a_kill_between_the_batch_and_the_legacy_removal_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    sb.ok("sysctl -qw net.ipv4.ip_forward=1");
    let before = state(&sb);
    sb.ok(&legacy_guide());
    sb.ok("iptables-legacy -P FORWARD DROP
           iptables-legacy -t nat -A PREROUTING -d 198.51.100.1 -p tcp --dport 8080 -j DNAT --to-destination 10.10.0.2:80
           iptables-legacy -A FORWARD -d 10.10.0.2 -p tcp --dport 80 -j ACCEPT");
    sb.serve(Some("ns1"), "tcp", &[80]);
    let toml = sb.ok(&format!("{} import", common::NSFW));
    assert!(
        toml.contains("publish = [\"198.51.100.1:8080:80/tcp\"]"),
        "{toml}"
    );
    assert!(toml.contains("FORWARD: policy drop"), "{toml}");
    assert_eq!(
        toml,
        sb.ok(&format!("{} import", common::NSFW)),
        "import twice: the same file"
    );
    let lab = sb.file("lab.toml", &toml);
    // iptables' lock, private to the sandbox, held while the run reaches the legacy part.
    let d = sb.dir().display().to_string();
    sb.ok(&format!(
        "touch {d}/xt.lock /run/xtables.lock && mount --bind {d}/xt.lock /run/xtables.lock
         flock -o /run/xtables.lock sleep 20 >/dev/null 2>&1 & echo $! > {d}/holder; sleep 0.2"
    ));
    let mut child = sb.spawn_nsfw(&["apply", "--adopt", &lab]);
    sb.ok("for i in $(seq 100); do nft list tables | grep -q nsfw_lab && break; sleep 0.05; done; sleep 0.2");
    if let Some(pid) = common::inner_pid(&child) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
    sb.ok(&format!("kill $(cat {d}/holder); sleep 0.2"));
    assert!(
        legacy_lines(&sb).contains("MASQUERADE"),
        "killed between the batch and the legacy removal:\n{}",
        legacy_lines(&sb)
    );
    assert!(sb.pings("ns1", "203.0.113.10"), "NAT after the kill");
    // A plain apply finishes the adoption the record names.
    sb.nsfw_code(&["apply", &lab], 0);
    sb.nsfw_code(&["diff", &lab], 0);
    let left = legacy_lines(&sb);
    assert!(
        !left.contains("MASQUERADE") && !left.contains("DNAT"),
        "{left}"
    );
    assert!(
        left.contains("-i br0 -o uplink -j ACCEPT"),
        "the drop policy's accepts stay: {left}"
    );
    assert!(sb.pings("ns1", "203.0.113.10"), "NAT by nsfw's table");
    assert!(
        sb.ask(Some("wan"), "tcp", "198.51.100.1", 8080).is_some(),
        "the port forward answers after adoption"
    );
    sb.ok("ip netns pids ns1 | xargs -r kill; sleep 0.2");
    sb.nsfw_code(&["flush", &lab], 0);
    sb.ok("iptables-legacy -P FORWARD ACCEPT; iptables-legacy -F FORWARD");
    assert_eq!(state(&sb), before);
}

/// The other usual ways to harden FORWARD (policy accept): `-o br0 -j DROP` and a catch-all
/// REJECT below the guide's accepts, in iptables-legacy or iptables-nft (`ipt`). Adoption
/// removes the NAT line only, keeps the accepts (named), and the lab still reaches upstream.
fn accepts_above_a_kept_drop(ipt: &str) {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    sb.ok(&GUIDE.replace("iptables-nft", ipt));
    sb.ok(&format!(
        "{ipt} -A FORWARD -o br0 -j DROP
         {ipt} -A FORWARD -j REJECT"
    ));
    assert!(
        sb.pings("ns1", "203.0.113.10"),
        "the hand-built lab reaches upstream"
    );
    let toml = sb.ok(&format!("{} import", common::NSFW));
    if ipt == "iptables-legacy" {
        assert!(toml.contains("(xtables target REJECT)"), "{toml}");
    }
    let lab = sb.file("lab.toml", &toml);
    let out = sb.ok(&format!("{} apply --adopt {lab} 2>&1", common::NSFW));
    assert!(out.contains("a rule below it in that chain drops"), "{out}");
    let left = sb.ok(&format!("{ipt}-save | grep -e '-j ' || true"));
    assert!(!left.contains("MASQUERADE"), "{left}");
    for kept in [
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-i br0 -o uplink -j ACCEPT",
    ] {
        assert!(left.contains(kept), "{kept} stays: {left}");
    }
    assert!(
        sb.pings("ns1", "203.0.113.10"),
        "the adopted lab reaches upstream"
    );
    sb.nsfw_code(&["diff", &lab], 0);
}

/// Import notes the catch-all REJECT, which names no bridge.
#[test]
fn legacy_accepts_above_a_kept_drop_stay_and_the_lab_keeps_its_way_out() {
    accepts_above_a_kept_drop("iptables-legacy");
}

#[test]
fn nft_accepts_above_a_kept_drop_stay_and_the_lab_keeps_its_way_out() {
    accepts_above_a_kept_drop("iptables-nft");
}
