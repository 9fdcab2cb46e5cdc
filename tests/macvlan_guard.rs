//! A macvlan child's guard (nsfw's netdev table inside its namespace, on its own egress): a
//! sender in the child holding only CAP_NET_RAW forges raw frames under every MAC the uplink's
//! chain must let out (the host's, a sibling's, a foreign child's), and none reaches the LAN;
//! the child's own traffic flows. The guard deleted by hand is named by `diff` and put back
//! by `apply`. Same simulated LAN as tests/macvlan.rs: `up0` is a veth whose peer `eth0` sits
//! in namespace `lan` (192.0.2.1, 2001:db8::1); the host is 192.0.2.2 on it.

mod common;

use common::{Sandbox, show};

const FILE: &str = r#"
name = "gd"
[namespaces.m1]
macvlan = "up0"
address = "192.0.2.11/24"
address6 = "2001:db8::11/64"
gateway = "192.0.2.1"
[namespaces.m2]
macvlan = "up0"
address = "192.0.2.12/24"
address6 = "2001:db8::12/64"
"#;

/// The LAN, and a foreign child `fx0` (192.0.2.50, nobody's nsfw knows) in namespace `fx`.
fn lan(sb: &Sandbox) {
    sb.ok("ip netns add lan
           ip link add up0 type veth peer name eth0 netns lan
           ip link set up0 up && ip addr add 192.0.2.2/24 dev up0
           ip -n lan link set lo up && ip -n lan link set eth0 up
           ip -n lan addr add 192.0.2.1/24 dev eth0
           ip -n lan addr add 2001:db8::1/64 dev eth0 nodad
           ip netns add fx
           ip link add fx0 link up0 type macvlan mode bridge
           ip link set fx0 netns fx
           ip -n fx addr add 192.0.2.50/24 dev fx0
           ip -n fx link set fx0 up");
}

fn mac(sb: &Sandbox, ns: Option<&str>, dev: &str) -> String {
    let n = ns.map(|n| format!("-n {n}")).unwrap_or_default();
    sb.json(&format!("ip {n} -j link show dev {dev}"))[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string()
}

/// The link-local address of `eth0` in `ns`, once it has one.
fn link_local(sb: &Sandbox, ns: &str) -> String {
    sb.ok(&format!(
        "for i in $(seq 50); do
           a=$(ip -n {ns} -6 -br addr show dev eth0 | grep -o 'fe80::[^/]*')
           [ -n \"$a\" ] && echo $a && exit 0; sleep 0.1; done; exit 1"
    ))
    .trim()
    .to_string()
}

/// What a process of `nobody` holding only CAP_NET_RAW (no CAP_NET_ADMIN, no CAP_SYS_ADMIN)
/// runs in namespace `ns`.
fn raw_only(ns: &str, cmd: &str) -> String {
    format!(
        "ip netns exec {ns} setpriv --reuid=65534 --regid=65534 --clear-groups \
         --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw -- {cmd}"
    )
}

/// How many copies of `frame` (frames.py's words; the marker goes after the kind), sent from
/// m1's `eth0` by a CAP_NET_RAW-only process, the LAN host sees.
fn sent(sb: &Sandbox, marker: &str, frame: &str) -> u64 {
    sent_all(sb, marker, &[frame])
}

/// The same for several frames, all with one marker: how many of them all arrive.
fn sent_all(sb: &Sandbox, marker: &str, frames: &[&str]) -> u64 {
    let py = common::frames_py();
    let send: Vec<String> = frames
        .iter()
        .map(|f| {
            // Options (`--bypass`, `--proto P`) go before the interface.
            let (mut opt, mut f) = (String::new(), *f);
            while f.starts_with("--") {
                let n = if f.starts_with("--proto ") { 2 } else { 1 };
                let mut w = f.splitn(n + 1, ' ');
                for _ in 0..n {
                    opt += w.next().unwrap_or_default();
                    opt += " ";
                }
                f = w.next().unwrap_or_default();
            }
            let f = f.replacen(' ', &format!(" {marker} "), 1);
            let cmd = format!("{py} send {opt}eth0 {f}");
            format!("{} || true", raw_only("m1", &cmd))
        })
        .collect();
    // Each send starts a python: on a busy machine a long burst outlasts a fixed window, and
    // its last frames (the witness) were missed once.
    let secs = 1.5 + 0.1 * (frames.len() - 1) as f64;
    sb.lan_count(secs, marker, &send.join("\n"))
}

/// Fragmented: echo's first fragment and the later ones pass, both ways; six tries each, a
/// second apart, all of which a bad guard fails. Two CI runs saw a sender's sendmsg fail with
/// ENOBUFS for three tries in a row (once the LAN host's, once m1's), which no run here has
/// reproduced, alone, under load or after tests/macvlan.rs: a transient of the loaded
/// machine's, ridden out; should it last, what the guard and the neighbours held is printed
/// with the failure.
fn fragments_pass(sb: &Sandbox) {
    sb.ok("tryn() { for i in 1 2 3 4 5 6; do ip netns exec $1 ping -c1 -W2 -s 3000 $2 && return; sleep 1; done
                   ip netns exec $1 nft list ruleset; ip -n $1 -6 neigh; ip -n $1 neigh; ip -n $1 -s link
                   ip -n $1 -6 route get $2; return 1; }
           tryn m1 2001:db8::1 && tryn m1 192.0.2.1 && tryn lan 2001:db8::11");
}

#[test]
fn a_sender_with_only_net_raw_sends_as_no_one_but_its_child() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let f = sb.file("gd.toml", FILE);
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    let lan_host = mac(&sb, Some("lan"), "eth0");
    let (m1, m2) = (mac(&sb, Some("m1"), "eth0"), mac(&sb, Some("m2"), "eth0"));
    let (up, fx) = (mac(&sb, None, "up0"), mac(&sb, Some("fx"), "fx0"));
    let ll1 = link_local(&sb, "m1");
    let udp4 = |src: &str, ip: &str| format!("udp4 {src} {lan_host} {ip} 192.0.2.1");
    // The witness: this sender does get its own frames out.
    assert!(sent(&sb, "own", &udp4(&m1, "192.0.2.11")) > 0, "own frame");
    // It cannot touch the namespace's ruleset.
    let del = raw_only("m1", "nft delete table netdev nsfw_gd");
    assert!(
        !sb.sh(&del).status.success(),
        "NET_RAW alone deletes no table"
    );
    // The blind spoofs docs/firewall.md listed as beyond the uplink's chain, and more.
    let blind = [
        udp4(&up, "192.0.2.2"),
        udp4(&up, "192.0.2.99"),
        udp4(&m2, "192.0.2.12"),
        udp4(&fx, "192.0.2.77"),
        format!("arp {fx} ff:ff:ff:ff:ff:ff 2 {fx} 192.0.2.77 00:00:00:00:00:00 192.0.2.77"),
        format!("arp {m2} ff:ff:ff:ff:ff:ff 2 {m2} 192.0.2.12 00:00:00:00:00:00 192.0.2.12"),
        format!("udp6 {m1} {lan_host} 2001:db8::99 2001:db8::1"),
        format!("vlan {m1} {lan_host} 192.0.2.11 192.0.2.1"),
        // Past the qdisc: the kernel hands these to the egress hook too.
        format!("--bypass {}", udp4(&up, "192.0.2.99")),
        // Past the qdisc from a socket bound to another protocol: the kernel leaves the
        // link-layer header unset and no `ether` field can be read (the guard's allow-list
        // drops what it cannot read). The host's MAC in a VLAN, another ethertype, an 802.3
        // length frame to the STP group; a foreign child's MAC in a VLAN; the host's VLAN
        // frame from a socket bound to IPv4 (whose inner bytes the hook would read as IPv4).
        format!("--bypass --proto 0x8100 vlan {up} {lan_host} 198.51.100.7 192.0.2.1"),
        format!("--bypass --proto 0x88b5 raw {up} {lan_host} 0x88b5"),
        format!("--bypass --proto 0x88b5 raw {up} 01:80:c2:00:00:00 46"),
        format!("--bypass --proto 0x8100 vlan {fx} {lan_host} 198.51.100.7 192.0.2.1"),
        format!("--bypass --proto 0x0800 vlan {up} {lan_host} 192.0.2.11 192.0.2.1"),
        format!("--bypass --proto 0x86dd raw {up} {lan_host} 0x88b5"),
        // Fragmented ND (RFC 6980: never): an RA, its ICMPv6 header in the second fragment;
        // an NA for the LAN router, in the first. (Only first fragments are counted.)
        format!("fragra {m1} 33:33:00:00:00:01 {ll1} ff02::1"),
        format!("fragna {m1} 33:33:00:00:00:01 {ll1} ff02::1 2001:db8::1"),
    ];
    // Last, the child's own frame (sent three times): what arrives is its copies only, and
    // they prove the sniffer was still listening.
    let own = udp4(&m1, "192.0.2.11");
    let frames: Vec<&str> = blind.iter().chain([&own]).map(String::as_str).collect();
    assert_eq!(sent_all(&sb, "blind", &frames), 3, "{blind:#?}");
    // The child's own traffic: IPv4 to the LAN host (its gateway; the LAN's ARP request is
    // answered), a sibling in bridge mode, IPv6 (neighbour discovery both ways).
    assert!(sb.pings("m1", "192.0.2.1"), "m1 reaches the LAN host");
    sb.ok("ip netns exec lan ip neigh flush dev eth0
           ip netns exec lan ping -c1 -W2 192.0.2.11");
    assert!(sb.pings("m1", "192.0.2.12"), "m1 reaches m2");
    sb.ok("for i in $(seq 40); do ip netns exec m1 ping -c1 -W1 2001:db8::1 >/dev/null && exit 0; sleep 0.1; done; exit 1");
    fragments_pass(&sb);
    // Root in the child deletes the guard: diff names it, and until apply the blind spoof
    // the uplink's chain lets through (the host's MAC, an address nobody has) gets out.
    sb.ok("ip netns exec m1 nft delete table netdev nsfw_gd");
    let d = sb.nsfw(&["diff", &f]);
    assert_eq!(d.status.code(), Some(2), "diff\n{}", show(&d));
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(text.contains("m1:netdev nsfw_gd"), "diff names it\n{text}");
    // (Sent past the qdisc: the witness that such a send works, which the guard stopped.)
    let bypass = format!("--bypass {}", udp4(&up, "192.0.2.99"));
    assert_eq!(sent_all(&sb, "unguarded", &[&bypass]), 3, "witness");
    // Some the uplink's chain stops on its own.
    assert_eq!(sent(&sb, "uplinksib", &udp4(&m2, "192.0.2.11")), 0);
    assert!(sb.nsfw(&["apply", &f]).status.success());
    assert_eq!(sent(&sb, "again", &udp4(&up, "192.0.2.99")), 0, "put back");
    // A rule removed by hand is drift too.
    sb.ok("h=$(ip netns exec m1 nft -a list chain netdev nsfw_gd eth0 | grep 'ip saddr @src4' | sed 's/.*handle //')
           ip netns exec m1 nft delete rule netdev nsfw_gd eth0 handle $h");
    let d = sb.nsfw(&["diff", &f]);
    assert_eq!(d.status.code(), Some(2), "a rule removed\n{}", show(&d));
    assert!(sb.nsfw(&["apply", &f]).status.success());
    let d = sb.nsfw(&["diff", &f]);
    assert!(d.status.success(), "repaired\n{}", show(&d));
    // Flush takes it with the namespaces.
    let o = sb.nsfw(&["flush", &f]);
    assert!(o.status.success(), "flush\n{}", show(&o));
    assert!(!sb.netns().iter().any(|n| n == "m1"), "{:?}", sb.netns());
}

/// A macvtap child: what a VM writes to its `/dev/tapN` passes the child's egress hook too.
/// Its own frames leave; with the host's MAC they do not, until the guard is deleted.
#[test]
fn a_macvtap_guests_frames_pass_its_guard() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let f = sb.file(
        "tp.toml",
        "name = 'tp'\n[namespaces.vm]\nmacvtap = 'up0'\naddress = '192.0.2.11/24'\n",
    );
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    let dev = sb.dir().join("tap");
    sb.ok(&format!(
        "d=$(ip netns exec vm sh -c 'cat /sys/class/net/eth0/macvtap/tap*/dev')
         mknod {} c ${{d%%:*}} ${{d##*:}}",
        dev.display()
    ));
    let (vm, up, lan_host) = (
        mac(&sb, Some("vm"), "eth0"),
        mac(&sb, None, "up0"),
        mac(&sb, Some("lan"), "eth0"),
    );
    let py = common::frames_py();
    let count = |marker: &str, src: &str| -> u64 {
        sb.lan_count(
            1.2,
            marker,
            &format!(
                "{py} sendtap {dev} udp4 {marker} {src} {lan_host} 192.0.2.99 192.0.2.1 || true
                 {py} sendtap {dev} udp4 {marker} {vm} {lan_host} 192.0.2.11 192.0.2.1 || true",
                dev = dev.display(),
            ),
        )
    };
    // Each round sends the spoof, then three of the guest's own frames.
    assert_eq!(count("guarded", &up), 3, "only the guest's own frames");
    sb.ok("ip netns exec vm nft delete table netdev nsfw_tp");
    assert_eq!(
        count("unguarded", &up),
        6,
        "the witness: the spoof then leaves"
    );
}

/// A passthru child carries the uplink's MAC: its own ARP and IP (and the LAN's answers) pass
/// both its guard and the uplink's chain, whose children rules count that MAC as the child's.
#[test]
fn a_passthru_child_reaches_its_gateway_and_the_lan() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("ip netns add lan
           ip link add up0 type veth peer name eth0 netns lan
           ip link set up0 up
           ip -n lan link set lo up && ip -n lan link set eth0 up
           ip -n lan addr add 192.0.2.1/24 dev eth0
           ip -n lan addr add 192.0.2.3/24 dev eth0
           ip -n lan addr add 2001:db8::1/64 dev eth0 nodad");
    let f = sb.file(
        "pt.toml",
        "name = 'pt'\n[namespaces.p1]\nmacvlan = 'up0'\nmode = 'passthru'\naddress = '192.0.2.11/24'\naddress6 = '2001:db8::11/64'\ngateway = '192.0.2.1'\n",
    );
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    assert!(sb.pings("p1", "192.0.2.1"), "the gateway");
    assert!(sb.pings("p1", "192.0.2.3"), "another LAN address");
    sb.ok("for i in $(seq 40); do ip netns exec p1 ping -c1 -W1 2001:db8::1 >/dev/null && exit 0; sleep 0.1; done; exit 1");
    let d = sb.nsfw(&["diff", &f]);
    assert!(d.status.success(), "in sync\n{}", show(&d));
}

/// `flush` then `apply` at once: the file's children of the namespaces the kernel is still
/// tearing down hold their MACs on the uplink a while; apply waits for them rather than
/// refusing them as foreign.
#[test]
fn apply_right_after_flush_succeeds() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let f = sb.file("gd.toml", FILE);
    for i in 0..10 {
        let o = sb.nsfw(&["apply", &f]);
        assert!(o.status.success(), "apply {i}\n{}", show(&o));
        let o = sb.nsfw(&["flush", &f]);
        assert!(o.status.success(), "flush {i}\n{}", show(&o));
    }
}

/// A child switched between bridge and passthru converges in one apply each way: the MAC the
/// child leaves behind is not kept among the uplink's other MACs.
#[test]
fn switching_a_child_to_passthru_and_back_takes_one_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("ip netns add lan
           ip link add up0 type veth peer name eth0 netns lan
           ip link set up0 up
           ip -n lan link set lo up && ip -n lan link set eth0 up
           ip -n lan addr add 192.0.2.1/24 dev eth0");
    let body = "name = 'sw'\n[namespaces.p1]\nmacvlan = 'up0'\naddress = '192.0.2.11/24'\ngateway = '192.0.2.1'\n";
    for (i, mode) in ["", "mode = 'passthru'\n", ""].into_iter().enumerate() {
        let f = sb.file("sw.toml", &format!("{body}{mode}"));
        let o = sb.nsfw(&["apply", &f]);
        assert!(o.status.success(), "apply {i}\n{}", show(&o));
        let d = sb.nsfw(&["diff", &f]);
        assert!(d.status.success(), "one apply ({i}: {mode})\n{}", show(&d));
        assert!(sb.pings("p1", "192.0.2.1"), "{i}: the gateway");
    }
}

/// tests/tools/xdpsend.c, compiled for this run (None, with the reason, without gcc).
fn xdpsend() -> Option<String> {
    let out = format!(
        "{}/xdpsend-{}",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let src = format!("{}/tests/tools/xdpsend.c", env!("CARGO_MANIFEST_DIR"));
    match std::process::Command::new("gcc")
        .args(["-O1", "-o", &out, &src])
        .status()
    {
        Ok(s) if s.success() => Some(out),
        e => {
            eprintln!("skipped: gcc cannot build tests/tools/xdpsend.c ({e:?})");
            None
        }
    }
}

/// How many of three copies of `frame` (frames.py's words, marker after the kind), sent from
/// m1's `eth0` by a CAP_NET_RAW-only process through an AF_XDP socket in copy mode, the LAN
/// host sees; None when the kernel has no AF_XDP (xdpsend's exit status 2).
fn xdp_sent(sb: &Sandbox, xdp: &str, marker: &str, frame: &str) -> Option<u64> {
    let hex = sb.ok(&format!(
        "{} hex {}",
        common::frames_py(),
        frame.replacen(' ', &format!(" {marker} "), 1)
    ));
    let send = raw_only("m1", &format!("{xdp} eth0 {} 3", hex.trim()));
    let (o, n) = sb.lan_sniff(1.2, marker, &send);
    if o.status.code() == Some(2) {
        eprintln!("skipped: {}", String::from_utf8_lossy(&o.stderr).trim());
        return None;
    }
    assert!(o.status.success(), "xdpsend\n{}", show(&o));
    n
}

/// An AF_XDP send in copy mode (CAP_NET_RAW is enough) passes no egress hook of the child,
/// its guard's included: only the uplink's chain judges it. The host has no VLAN on the
/// uplink, so that chain drops every tagged frame, whatever its MAC; what still leaves is an
/// untagged frame of another ethertype with the host's MAC. The child's own traffic flows.
#[test]
fn an_af_xdp_sender_gets_no_tagged_frame_out() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let Some(xdp) = xdpsend() else { return };
    lan(&sb);
    let f = sb.file("gd.toml", FILE);
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    let lan_host = mac(&sb, Some("lan"), "eth0");
    let (m1, up, fx) = (
        mac(&sb, Some("m1"), "eth0"),
        mac(&sb, None, "up0"),
        mac(&sb, Some("fx"), "fx0"),
    );
    let vlan = |src: &str| format!("vlan {src} {lan_host} 198.51.100.7 192.0.2.1");
    // The witness first: the sender works, and an untagged other ethertype with the host's
    // MAC is what the uplink's chain lets out (docs/firewall.md says so).
    let Some(other) = xdp_sent(&sb, &xdp, "other", &format!("raw {up} {lan_host} 0x88b5")) else {
        return;
    };
    assert_eq!(other, 3, "the host's MAC, ethertype 0x88b5");
    let fx_other = format!("raw {fx} {lan_host} 0x88b5");
    assert_eq!(
        xdp_sent(&sb, &xdp, "fxother", &fx_other),
        Some(3),
        "a foreign MAC"
    );
    let none = [
        ("hostvlan", vlan(&up)),
        ("fxvlan", vlan(&fx)),
        ("ownvlan", vlan(&m1)),
        ("qinq", format!("raw {up} {lan_host} 0x88a8")),
        (
            "hostip",
            format!("udp4 {up} {lan_host} 198.51.100.7 192.0.2.1"),
        ),
        ("ownother", format!("raw {m1} {lan_host} 0x88b5")),
        (
            "hostip6",
            format!("udp6 {up} {lan_host} 2001:db8::99 2001:db8::1"),
        ),
        (
            "ownip",
            format!("udp4 {m1} {lan_host} 192.0.2.11 192.0.2.1"),
        ),
        (
            "hostarp",
            format!(
                "arp {up} ff:ff:ff:ff:ff:ff 2 {up} 198.51.100.7 00:00:00:00:00:00 198.51.100.7"
            ),
        ),
    ];
    for (marker, frame) in &none {
        assert_eq!(xdp_sent(&sb, &xdp, marker, frame), Some(0), "{frame}");
    }
    // The rule is what stops the VLAN frame: removed by hand, the frame leaves, `diff` names
    // the drift, and `apply` puts it back.
    sb.ok("h=$(nft -a list chain netdev nsfw_gd up0 | grep -m1 ' drop # handle' | sed 's/.*handle //')
           nft delete rule netdev nsfw_gd up0 handle $h");
    assert_eq!(xdp_sent(&sb, &xdp, "bare", &vlan(&up)), Some(3), "witness");
    let d = sb.nsfw(&["diff", &f]);
    assert_eq!(d.status.code(), Some(2), "diff\n{}", show(&d));
    assert!(sb.nsfw(&["apply", &f]).status.success());
    assert_eq!(xdp_sent(&sb, &xdp, "back", &vlan(&up)), Some(0), "put back");
    // The child's own traffic.
    assert!(sb.pings("m1", "192.0.2.1"), "m1 reaches the LAN host");
    assert!(sb.pings("m1", "192.0.2.12"), "m1 reaches m2");
    let _ = std::fs::remove_file(&xdp);
}
