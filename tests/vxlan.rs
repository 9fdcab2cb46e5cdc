//! A lab that spans hosts: two sandboxes play two hosts, joined by a veth "underlay"
//! (192.0.2.10 ⇄ 192.0.2.11); each applies its own file, whose bridge br0 is one VXLAN
//! segment (VNI 100) with the other. Namespaces on both hosts ping each other and reach the
//! world through their own host's NAT; a full-size DF frame crosses; a datagram to the VXLAN
//! port from an address that is no peer is dropped; removing a peer removes its FDB entry;
//! a deleted tunnel or peer is named by diff and repaired; flush on one host leaves the
//! other's half working.

mod common;

use std::process::Command;

use common::{Sandbox, show};

fn file(site: &str, gw: &str, ns: &str, addr: &str, peers: &str, remote: &str) -> String {
    format!(
        r#"
name = "{site}"
[bridges.br0]
address = "{gw}/24"
masquerade = true
vxlan = {{ id = 100, local = "LOCAL", peers = [{peers}], remote = ["{remote}"] }}
[namespaces.{ns}]
bridge = "br0"
address = "{addr}"
"#
    )
}

/// Host A (192.0.2.10: a1 10.0.0.11) and host B (192.0.2.11: b1 10.0.0.21), the underlay
/// between them, each with its own world.
fn two_hosts() -> (Sandbox, Sandbox, String, String) {
    let a = Sandbox::new();
    let b = Sandbox::new();
    // Made from the test's PID namespace (only the network one entered), where B's pid is.
    let o = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", a.pid()))
        .args([
            "ip", "link", "add", "under", "type", "veth", "peer", "name", "under", "netns",
        ])
        .arg(b.pid().to_string())
        .output()
        .expect("nsenter");
    assert!(o.status.success(), "underlay: {}", show(&o));
    for (sb, ip) in [(&a, "192.0.2.10"), (&b, "192.0.2.11")] {
        sb.ok(&format!(
            "ip addr add {ip}/24 dev under && ip link set under up"
        ));
        sb.upstream(&[]);
    }
    let fa = file(
        "sitea",
        "10.0.0.1",
        "a1",
        "10.0.0.11",
        "\"192.0.2.11\"",
        "10.0.0.21",
    )
    .replace("LOCAL", "192.0.2.10");
    let fb = file(
        "siteb",
        "10.0.0.2",
        "b1",
        "10.0.0.21",
        "\"192.0.2.10\"",
        "10.0.0.11",
    )
    .replace("LOCAL", "192.0.2.11");
    let fa = a.file("a.toml", &fa);
    let fb = b.file("b.toml", &fb);
    a.nsfw_code(&["apply", &fa], 0);
    b.nsfw_code(&["apply", &fb], 0);
    (a, b, fa, fb)
}

fn fdb(sb: &Sandbox) -> String {
    sb.ok("bridge fdb show dev vx100 | grep '^00:00:00:00:00:00' | sort")
}

fn rx(sb: &Sandbox, dev: &str) -> u64 {
    sb.json(&format!("ip -s -j link show {dev}"))[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap()
}

/// Five VXLAN datagrams from B's address `from` to A's port 4789, VNI `vni`, each carrying
/// an ARP reply (10.0.0.99 is-at 02:00:00:00:00:09).
fn forge(b: &Sandbox, from: &str, vni: u8) {
    let forged = format!(
        "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{from}', 0)); \
        f=bytes([8,0,0,0,0,0,{vni},0]) + b'\\xff'*6 + bytes([2,0,0,0,0,9]) + bytes([8,6]) + bytes([0,1,8,0,6,4,0,1]) + bytes([2,0,0,0,0,9,10,0,0,99]) + bytes(6) + bytes([10,0,0,11]); \
        [s.sendto(f, ('192.0.2.10', 4789)) for _ in range(5)]"
    );
    b.ok(&format!("python3 -c \"{forged}\""));
}

/// A VXLAN datagram from an address that is no peer is dropped before the tunnel sees it;
/// the same from the peer's own address reaches it (the rule is what dropped it). The rule
/// judges per VNI: a second topology on the same host and port (VNI 200, peer 192.0.2.13)
/// neither cuts A's segment off nor is cut off by it, and VNI 100's peer cannot inject into
/// VNI 200.
fn forged_datagrams_are_dropped(a: &Sandbox, b: &Sandbox) {
    b.ok("ip addr add 192.0.2.13/24 dev under");
    let before = rx(a, "vx100");
    forge(b, "192.0.2.13", 100);
    let drops = a.ok("nft list chain inet nsfw_sitea vxlan | grep '@vxlan_vnis .* drop'");
    assert!(!drops.contains("packets 0 "), "{drops}");
    assert_eq!(
        rx(a, "vx100"),
        before,
        "the forged frame reached the tunnel"
    );
    forge(b, "192.0.2.11", 100);
    assert!(
        rx(a, "vx100") > before,
        "a peer's datagram did not reach the tunnel"
    );
    let z = a.file(
        "z.toml",
        "name = \"labz\"\n[bridges.brz]\naddress = \"10.9.0.1/24\"\n\
         vxlan = { id = 200, local = \"192.0.2.10\", peers = [\"192.0.2.13\"] }\n",
    );
    a.nsfw_code(&["apply", &z], 0);
    forge(b, "192.0.2.13", 200);
    let z_rx = rx(a, "vx200");
    assert!(z_rx > 0, "VNI 200's own peer is cut off by the other table");
    forge(b, "192.0.2.11", 200);
    assert_eq!(rx(a, "vx200"), z_rx, "VNI 100's peer injected into VNI 200");
    assert!(
        a.pings("a1", "10.0.0.21"),
        "a second topology on the port cut a1 off"
    );
    a.nsfw_code(&["flush", &z], 0);
}

#[test]
fn a_segment_spans_two_hosts() {
    if common::skip_without_root() {
        return;
    }
    let (a, b, fa, fb) = two_hosts();
    // One segment: each side's namespace reaches the other's, and each the world through
    // its own host (the world sees the host's uplink address).
    assert!(a.pings("a1", "10.0.0.21"), "a1 → b1");
    assert!(b.pings("b1", "10.0.0.11"), "b1 → a1");
    assert!(a.pings("a1", "203.0.113.10") && b.pings("b1", "203.0.113.10"));
    assert!(a.seen_from("uplink") > 0 && b.seen_from("uplink") > 0);
    // The segment's MTU is the underlay's less 50 bytes, and a full-size frame crosses it
    // unfragmented: 1,400 bytes of ICMP payload with DF.
    let mtu = a.ok("ip -o link show br0; ip -n a1 -o link show eth0");
    assert_eq!(mtu.matches(" mtu 1450 ").count(), 2, "{mtu}");
    a.ok("ip netns exec a1 ping -c1 -W2 -M do -s 1400 10.0.0.21");
    a.ok("ip netns exec a1 ping -c1 -W2 -M do -s 1422 10.0.0.21");
    // verify on each host checks the namespaces of the other.
    for (sb, f, remote) in [(&a, &fa, "10.0.0.21"), (&b, &fb, "10.0.0.11")] {
        let out = sb.nsfw_code(&["verify", f], 0);
        assert!(out.contains(remote), "{out}");
    }
    // A namespace on B takes a1's address, and B's bridge A's gateway address: verify on A
    // names both duplicates.
    let dup = std::fs::read_to_string(&fb)
        .unwrap()
        .replace(", remote = [\"10.0.0.11\"]", "")
        .replace("10.0.0.2/24", "10.0.0.1/24")
        + "[namespaces.b2]\nbridge = \"br0\"\naddress = \"10.0.0.11\"\n";
    let fdup = b.file("dup.toml", &dup);
    b.nsfw_code(&["apply", &fdup], 0);
    let o = a.nsfw(&["verify", &fa]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("10.0.0.11 is answered by")
            && err.contains("10.0.0.1 is this host's address on the segment, and"),
        "{}",
        show(&o)
    );
    b.nsfw_code(&["apply", &fb], 0);
    // b1 may have learnt 10.0.0.11 at b2's MAC meanwhile, a1 10.0.0.1 at B's bridge's.
    b.ok("ip -n b1 neigh flush all");
    a.ok("ip -n a1 neigh flush all");
    forged_datagrams_are_dropped(&a, &b);
    // A peer removed from the file: its entry goes; put back: it returns.
    let three = std::fs::read_to_string(&fa)
        .unwrap()
        .replace("\"192.0.2.11\"]", "\"192.0.2.11\", \"192.0.2.12\"]");
    std::fs::write(&fa, &three).unwrap();
    a.nsfw_code(&["apply", &fa], 0);
    assert!(fdb(&a).contains("192.0.2.12"), "{}", fdb(&a));
    let two = three.replace(", \"192.0.2.12\"", "");
    std::fs::write(&fa, &two).unwrap();
    a.nsfw_code(&["apply", &fa], 0);
    let left = fdb(&a);
    assert!(
        !left.contains("192.0.2.12") && left.contains("192.0.2.11"),
        "{left}"
    );
    // Drift: a peer's entry deleted, then the tunnel itself; diff names each, apply repairs.
    a.ok("bridge fdb del 00:00:00:00:00:00 dev vx100 dst 192.0.2.11");
    let d = a.nsfw_code(&["diff", &fa], 2);
    assert!(
        d.contains("+ fdb vx100 00:00:00:00:00:00 dst 192.0.2.11"),
        "{d}"
    );
    a.ok("ip link del vx100");
    let d = a.nsfw_code(&["diff", &fa], 2);
    assert!(d.contains("+ vxlan vx100 id 100 local 192.0.2.10"), "{d}");
    a.nsfw_code(&["apply", &fa], 0);
    a.nsfw_code(&["diff", &fa], 0);
    // (The first echo after the tunnel is made again may be lost while br0 learns anew.)
    a.ok("ip netns exec a1 ping -c3 -W2 10.0.0.21");
    // Flush on A: B's half still works (its namespace, its world, its tunnel).
    a.nsfw_code(&["flush", &fa], 0);
    assert!(a.sh("ip link show vx100").status.code() != Some(0));
    assert!(b.pings("b1", "203.0.113.10"));
    b.nsfw_code(&["diff", &fb], 0);
}

/// One host alone (its peer need not answer): an underlay address, and the file.
fn one_host() -> (Sandbox, String) {
    let sb = Sandbox::new();
    sb.ok("ip link add under type veth peer name far && ip addr add 192.0.2.10/24 dev under && ip link set under up && ip link set far up");
    let f = file(
        "sitea",
        "10.0.0.1",
        "a1",
        "10.0.0.11",
        "\"192.0.2.11\", \"192.0.2.12\"",
        "10.0.0.21",
    )
    .replace("LOCAL", "192.0.2.10");
    let f = sb.file("a.toml", &f);
    (sb, f)
}

#[test]
fn a_killed_apply_converges() {
    if common::skip_without_root() {
        return;
    }
    let (sb, f) = one_host();
    let t = std::time::Instant::now();
    sb.nsfw_code(&["apply", &f], 0);
    let cold = t.elapsed();
    for i in 0..8u32 {
        sb.nsfw_code(&["flush", &f], 0);
        let mut child = sb.spawn_nsfw(&["apply", &f]);
        std::thread::sleep(cold * i / 8);
        if let Some(pid) = common::inner_pid(&child) {
            // SAFETY: kill(2) on the nsfw our child runs (and waits for); at worst it has
            // exited.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = child.wait();
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        let peers = fdb(&sb);
        assert_eq!(peers.lines().count(), 2, "trial {i}: {peers}");
    }
    // An entry someone adds to nsfw's tunnel is named and goes: the file says who the
    // peers are.
    sb.ok("bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.99");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        d.contains("- fdb vx100 00:00:00:00:00:00 dst 192.0.2.99: not a peer in the file"),
        "{d}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert!(!fdb(&sb).contains("192.0.2.99"));
    // A peer's entry turned to another port is not the peer: replaced.
    sb.ok("bridge fdb del 00:00:00:00:00:00 dev vx100 dst 192.0.2.11 && bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.11 port 9999");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        d.contains("- fdb vx100 00:00:00:00:00:00 dst 192.0.2.11 port 9999: the peer with")
            && d.contains("+ fdb vx100 00:00:00:00:00:00 dst 192.0.2.11\n"),
        "{d}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let peers = fdb(&sb);
    assert!(
        !peers.contains("9999") && peers.contains("dst 192.0.2.11 "),
        "{peers}"
    );
    // What the kernel lets someone change in place on the tunnel is named and put back,
    // with the peers.
    for (change, why) in [
        ("nolearning", "learning turned off"),
        ("ttl 5", "a TTL set"),
        ("local 192.0.2.10 ttl 0 learning", ""),
    ] {
        sb.ok(&format!("ip link set vx100 type vxlan {change}"));
        if why.is_empty() {
            sb.nsfw_code(&["diff", &f], 0); // back as nsfw keeps it: nothing to say
            continue;
        }
        let d = sb.nsfw_code(&["diff", &f], 2);
        assert!(d.contains(&format!("- link vx100 (vxlan): {why}")), "{d}");
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        let link = sb.ok("ip -d link show vx100");
        assert!(
            link.contains("ttl auto") && !link.contains("nolearning"),
            "{link}"
        );
        assert_eq!(fdb(&sb).lines().count(), 2, "{}", fdb(&sb));
    }
}

#[test]
fn bad_vxlan_keys_are_named_and_nothing_changes() {
    if common::skip_without_root() {
        return;
    }
    let (sb, f) = one_host();
    let good = std::fs::read_to_string(&f).unwrap();
    let bad = good
        .replace("id = 100", "id = 16777216")
        .replace("remote = [\"10.0.0.21\"]", "port = 0")
        .replace(
            "\"192.0.2.11\", \"192.0.2.12\"",
            "\"192.0.2.11\", \"192.0.2.11\", \"192.0.2.10\"",
        );
    let fb = sb.file("bad.toml", &bad);
    let o = sb.nsfw(&["apply", &fb]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{}", show(&o));
    for want in [
        "bad.toml: bridges.br0.vxlan.id = 16777216: must be within 1-16777215",
        "bad.toml: bridges.br0.vxlan.port = 0: must be within 1-65535",
        "bad.toml: bridges.br0.vxlan.peers = \"192.0.2.11\": named twice",
        "bad.toml: bridges.br0.vxlan.peers = \"192.0.2.10\": is `local`",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let ours = sb.file("ours.toml", &good.replace("10.0.0.21", "10.0.0.11"));
    let o = sb.nsfw(&["apply", &ours]);
    let want = "ours.toml: bridges.br0.vxlan.remote = \"10.0.0.11\": is namespace a1's address on this host";
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(want),
        "{}",
        show(&o)
    );
    // A local address the host does not have: refused before anything is made.
    let elsewhere = sb.file(
        "elsewhere.toml",
        &good.replace("local = \"192.0.2.10\"", "local = \"192.0.2.99\""),
    );
    let o = sb.nsfw(&["apply", &elsewhere]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success()
            && err.contains("elsewhere.toml: bridges.br0.vxlan.local = \"192.0.2.99\": not an address of this host"),
        "{}",
        show(&o)
    );
    assert!(sb.netns().is_empty() && !sb.sh("ip link show br0").status.success());
}

/// A tunnel built by hand on a bridge is imported as the bridge's `vxlan` key (its peers
/// from the all-zeros FDB entries) and taken over by `apply --adopt` in place: the same
/// link, its peers kept, and the host then in sync with the file.
#[test]
fn a_hand_built_tunnel_is_imported_and_adopted() {
    if common::skip_without_root() {
        return;
    }
    let sb = Sandbox::new();
    sb.ok("ip link add under type veth peer name far && ip addr add 192.0.2.10/24 dev under && ip link set under up \
        && ip link add br0 mtu 1450 type bridge && ip addr add 10.0.0.1/24 dev br0 && ip link set br0 up \
        && ip link add vx100 mtu 1450 type vxlan id 100 local 192.0.2.10 dstport 4790 && ip link set vx100 master br0 up \
        && bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.11 \
        && bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.12 port 9999 \
        && ip netns add a1 && ip link add veth-a1 mtu 1450 type veth peer name eth0 netns a1 \
        && ip link set veth-a1 master br0 up && ip -n a1 link set eth0 mtu 1450 up \
        && ip -n a1 addr add 10.0.0.11/24 dev eth0 && ip -n a1 route add default via 10.0.0.1");
    let index = sb.ifindex(None, "vx100");
    let fdb = || sb.ok("bridge fdb show dev vx100 | grep -c '^00:00:00:00:00:00'");
    let on_br0 = || sb.ok("ip -o link show vx100").contains("master br0");
    // The 9999 entry is not a peer the file can say: the key is written commented out, and
    // adopting the rest leaves the tunnel on br0 with both entries (H1, H2).
    let text = sb.nsfw_code(&["import", "--name", "site"], 0);
    let key = "vxlan = { id = 100, local = \"192.0.2.10\", peers = [\"192.0.2.11\"], port = 4790 }";
    assert!(
        text.contains(&format!("# {key}")) && text.contains("dst 192.0.2.12 port 9999"),
        "{text}"
    );
    let f = sb.file("site.toml", &text);
    let out = sb.nsfw(&["apply", "--adopt", &f]);
    assert_eq!(out.status.code(), Some(0), "{}", common::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vx100 is not nsfw's"),
        "{}",
        common::show(&out)
    );
    assert!(on_br0(), "the tunnel stays on its bridge");
    assert_eq!(fdb().trim(), "2", "both entries stay");
    // The key said by hand: the tunnel is refused, named with the entry, nothing changes.
    let f = sb.file("site.toml", &text.replace(&format!("# {key}"), key));
    let out = sb.nsfw(&["apply", "--adopt", &f]);
    let shown = common::show(&out);
    assert!(
        out.status.code() != Some(0)
            && shown.contains("tunnel vx100 is not adopted")
            && shown.contains("dst 192.0.2.12 port 9999"),
        "{shown}"
    );
    assert!(on_br0() && fdb().trim() == "2", "{shown}");
    // Without the entry it is exactly what nsfw makes: adopted in place.
    sb.ok("bridge fdb del 00:00:00:00:00:00 dev vx100 dst 192.0.2.12 port 9999");
    sb.nsfw_code(&["apply", "--adopt", &f], 0);
    assert_eq!(
        sb.ifindex(None, "vx100"),
        index,
        "adopted in place, not made again"
    );
    sb.nsfw_code(&["diff", &f], 0);
}

/// A hand-built tunnel with an attribute nsfw's tunnels leave at the kernel's default
/// (`ttl inherit`, `dev`, a source-port range, no UDP checksum, another ageing, `tos
/// inherit`): `import` writes its key commented out and names the attribute, and `apply
/// --adopt` of a file that says the key refuses it, naming the attribute, changing nothing.
#[test]
fn a_tunnel_unlike_nsfws_is_not_adopted_and_the_attribute_named() {
    if common::skip_without_root() {
        return;
    }
    let sb = Sandbox::new();
    sb.ok("ip link add under type veth peer name far && ip addr add 192.0.2.10/24 dev under && ip link set under up \
        && ip link add br0 mtu 1450 type bridge && ip addr add 10.0.0.1/24 dev br0 && ip link set br0 up");
    let f = sb.file(
        "site.toml",
        "name = \"site\"\n[bridges.br0]\naddress = \"10.0.0.1/24\"\n\
         vxlan = { id = 100, local = \"192.0.2.10\", peers = [\"192.0.2.11\"] }\n",
    );
    for (extra, odd) in [
        ("ttl inherit", "ttl inherit"),
        ("dev under", "dev"),
        ("srcport 1000 2000", "srcport"),
        ("noudpcsum", "noudpcsum"),
        ("ageing 100", "ageing"),
        ("tos inherit", "tos"),
    ] {
        sb.ok(&format!(
            "ip link del vx100 2>/dev/null; ip link add vx100 mtu 1450 type vxlan id 100 local 192.0.2.10 dstport 4789 {extra} \
             && ip link set vx100 master br0 up && bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.11"
        ));
        let text = sb.nsfw_code(&["import", "--name", "site"], 0);
        assert!(
            text.contains("# vxlan = { id = 100") && text.contains(&format!("`{odd}` set")),
            "{extra}: {text}"
        );
        let before = sb.ok("ip -d link show vx100 | head -3");
        let out = sb.nsfw(&["apply", "--adopt", &f]);
        let shown = show(&out);
        assert!(
            out.status.code() != Some(0)
                && shown.contains("tunnel vx100 is not adopted")
                && shown.contains(&format!("`{odd}` is set")),
            "{extra}: {shown}"
        );
        assert_eq!(
            sb.ok("ip -d link show vx100 | head -3"),
            before,
            "{extra}: unchanged"
        );
    }
}
