//! One MTU per L2 segment with physical ports: stand-in NICs (veths whose peers sit in a LAN
//! namespace) of 1400 and 9000 bytes as ports of one bridge. Without `mtu` in the file the
//! run is refused before anything changes; with it every port is set to it in one run, a
//! full-size frame with DF crosses the segment, the ports get their MTU back at flush, and
//! doctor names a segment made mixed behind nsfw's back.

mod common;

use common::Sandbox;

/// A stand-in NIC `dev` of `mtu` bytes whose other end is `eth0` in namespace `lanN`, which
/// holds 10.20.0.N/24 (on the bridge's segment).
fn nic(sb: &Sandbox, dev: &str, n: u8, mtu: u32) {
    sb.ok(&format!(
        "ip netns add lan{n} && ip link add {dev} mtu {mtu} type veth peer name eth0 mtu {mtu} netns lan{n} \
         && ip -n lan{n} link set lo up && ip -n lan{n} link set eth0 up \
         && ip -n lan{n} addr add 10.20.0.{}/24 dev eth0",
        10 + n
    ));
}

const FILE: &str = r#"
name = "seg"
[bridges.br0]
address = "10.20.0.1/24"
ports = ["eth1", "eth2"]
MTU
[namespaces.ns1]
bridge = "br0"
"#;

fn mtus(sb: &Sandbox) -> String {
    sb.ok("for d in br0 eth1 eth2; do ip -o link show dev $d 2>/dev/null | sed 's/.* mtu \\([0-9]*\\) .*/\\1/' | grep . || echo -; done | tr '\\n' ' '")
}

#[test]
fn ports_of_other_mtus_are_refused_before_anything_changes_or_set_to_the_files() {
    let Some(sb) = Sandbox::or_skip() else { return };
    nic(&sb, "eth1", 1, 1400);
    nic(&sb, "eth2", 2, 9000);
    let links = sb.ok("ip -o link | sed 's/^[0-9]*: //' | sort");
    // No `mtu`: which MTU the user meant is not guessed.
    let f = sb.file("seg.toml", &FILE.replace("MTU", ""));
    let o = sb.nsfw(&["apply", &f]);
    let e = common::show(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("eth1 has MTU 1400 and bridge br0 1500") && e.contains("Set mtu = 1400"),
        "{e}"
    );
    assert!(e.contains("eth2 has MTU 9000"), "{e}");
    assert_eq!(sb.ok("ip -o link | sed 's/^[0-9]*: //' | sort"), links);
    // With it: one MTU on the whole segment in one run.
    let f = sb.file("seg.toml", &FILE.replace("MTU", "mtu = 1400"));
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(mtus(&sb), "1400 1400 1400 ");
    sb.nsfw_code(&["diff", &f], 0);
    // A full-size frame (1400 = 1372 + 8 + 20) with DF, namespace → LAN host, both ways.
    sb.ok("ip -n lan2 link set eth0 mtu 1400");
    for host in ["10.20.0.11", "10.20.0.12"] {
        let out = sb.ok(&format!(
            "ip netns exec ns1 ping -c1 -W2 -M do -s 1372 {host}"
        ));
        assert!(out.contains("1 received"), "{out}");
    }
    let v = sb.nsfw_code(&["verify", &f], 0);
    assert!(v.contains("gateway br0 (full size)"), "{v}");
    // A veth end set apart: a small ping passes, the full-size probe does not.
    sb.ok("ip link set veth-ns1 mtu 1300");
    assert!(sb.pings("ns1", "10.20.0.1"));
    let o = sb.nsfw(&["verify", &f]);
    let said = common::show(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains("gateway br0 (full size)") && l.contains("FAIL")),
        "{said}"
    );
    assert!(
        said.contains("says MTU 1400, and br0 1300, veth-ns1 1300 differ"),
        "{said}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    // A physical port made mixed behind nsfw's back: doctor and verify name the segment,
    // apply mends it.
    sb.ok("ip link set eth2 mtu 9000");
    for cmd in ["doctor", "verify"] {
        let said = common::show(&sb.nsfw(&[cmd, &f]));
        assert!(
            said.contains(
                "the segment is mixed: [bridges.br0] says MTU 1400, and eth2 9000 differ"
            ),
            "{cmd}: {said}"
        );
    }
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(mtus(&sb), "1400 1400 1400 ");
    // Flush: each port gets its own MTU back.
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(mtus(&sb), "- 1400 9000 ");
}

/// An IPv4-only bridge below IPv6's minimum MTU, taking a 1500-byte port: one run, no error.
/// The segment's MTU changed in the file while it holds the ports: the ports follow, and get
/// the MTU they had before nsfw first changed it back at flush.
#[test]
fn a_small_ipv4_only_segment_takes_a_larger_port_in_one_run() {
    let Some(sb) = Sandbox::or_skip() else { return };
    nic(&sb, "eth1", 1, 1500);
    nic(&sb, "eth2", 2, 1500);
    let f = sb.file("seg.toml", &FILE.replace("MTU", "mtu = 1000"));
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(mtus(&sb), "1000 1000 1000 ");
    sb.nsfw_code(&["diff", &f], 0);
    sb.ok("ip -n lan1 link set eth0 mtu 1000");
    let out = sb.ok("ip netns exec ns1 ping -c1 -W2 -M do -s 972 10.20.0.11");
    assert!(out.contains("1 received"), "{out}");
    let f = sb.file("seg.toml", &FILE.replace("MTU", "mtu = 1280"));
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(mtus(&sb), "1280 1280 1280 ");
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(mtus(&sb), "- 1500 1500 ");
    // Held at 1500 (nothing to keep), then the file says 1000: given back 1500 all the same.
    let f = sb.file("seg.toml", &FILE.replace("MTU", "mtu = 1500"));
    sb.nsfw_code(&["apply", &f], 0);
    let f = sb.file("seg.toml", &FILE.replace("MTU", "mtu = 1000"));
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(mtus(&sb), "1000 1000 1000 ");
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(mtus(&sb), "- 1500 1500 ");
}

/// `nsfw try` rehearses a file with a physical port: a stand-in NIC with a LAN behind it, as
/// the host has the port (here eth1 at 1400 with a routed LAN, made in the test's sandbox as
/// the "host"), and as made up when the host has no such interface.
#[test]
fn try_rehearses_physical_ports_with_a_lan_behind_them() {
    let Some(sb) = Sandbox::or_skip() else { return };
    // Not on this "host": made up (the bridge's MTU, a LAN host on the bridge's subnet).
    let plain = sb.file("p.toml", &FILE.replace("MTU", "").replace(", \"eth2\"", ""));
    let out = sb.nsfw_code(&["try", &plain], 0);
    assert!(out.contains("lan-eth1"), "{out}");
    let take = sb.file(
        "t.toml",
        &FILE
            .replace("MTU", "take_addresses = true\nmasquerade = true")
            .replace(", \"eth2\"", ""),
    );
    let out = sb.nsfw_code(&["try", &take], 0);
    assert!(out.contains("internet"), "{out}");
    // On this "host", at 1400 with addresses and a route: without `mtu` the rehearsal is
    // refused as the real apply would be; with it, it passes, routed LAN included.
    nic(&sb, "eth1", 1, 1400);
    sb.ok("ip link set eth1 up && ip addr add 192.0.2.2/24 dev eth1 \
           && ip route add 198.18.0.0/24 via 192.0.2.1 dev eth1");
    let o = sb.nsfw(&["try", &take]);
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
    assert!(common::show(&o).contains("eth1 has MTU 1400"));
    let take = sb.file(
        "t.toml",
        &FILE
            .replace("MTU", "mtu = 1400\ntake_addresses = true")
            .replace(", \"eth2\"", ""),
    );
    let out = sb.nsfw_code(&["try", &take], 0);
    assert!(
        out.contains("internet") && out.contains("lan-eth1"),
        "{out}"
    );
    // The host's own eth1 was not touched.
    assert!(sb.ok("ip -o addr show dev eth1").contains("192.0.2.2/24"));
}
