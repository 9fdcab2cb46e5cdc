//! Namespaces on a host uplink (macvlan), over a simulated LAN: the uplink `up0` is a veth
//! whose other end sits in a namespace `lan` that is the LAN's host (192.0.2.1), and the host
//! itself is on the LAN (192.0.2.2). Real packets decide every check.

mod common;

use std::time::Duration;

use common::{Sandbox, show};

/// The LAN: `up0` in the sandbox's own namespace (the host's uplink), its peer in `lan`.
fn lan(sb: &Sandbox) {
    sb.ok("ip netns add lan
           ip link add up0 type veth peer name eth0 netns lan
           ip link set up0 up && ip addr add 192.0.2.2/24 dev up0
           ip -n lan link set lo up && ip -n lan link set eth0 up
           ip -n lan addr add 192.0.2.1/24 dev eth0
           # The uplink's link-local address settles (DAD) before anyone looks at it.
           for i in $(seq 100); do [ -z \"$(ip -6 addr show dev up0 tentative)\" ] && break; sleep 0.05; done");
}

fn topology(mode: &str, extra: &str) -> String {
    format!(
        r#"
name = "mv"
[host]
ip_forward = true
[bridges.br0]
address = "10.0.0.1/24"
[namespaces.b1]
bridge = "br0"
[namespaces.m1]
macvlan = "up0"
mode = "{mode}"
address = "192.0.2.11/24"
gateway = "192.0.2.1"
routes = [{{ to = "10.0.0.0/24", via = "192.0.2.2" }}]
host_shim = {shim}
[namespaces.m2]
macvlan = "up0"
mode = "{mode}"
address = "192.0.2.12/24"
{extra}
"#,
        shim = mode == "bridge"
    )
}

fn apply(sb: &Sandbox, text: &str) -> String {
    let f = sb.file("mv.toml", text);
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply\n{}", show(&o));
    let d = sb.nsfw(&["diff", &f]);
    assert!(d.status.success(), "diff after apply\n{}", show(&d));
    f
}

fn host_pings(sb: &Sandbox, addr: &str) -> bool {
    sb.sh(&format!("ping -c1 -W1 {addr}")).status.success()
}

#[test]
fn children_meet_in_bridge_mode_not_in_private_and_the_host_only_through_its_shim() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    apply(&sb, &topology("bridge", ""));
    assert!(sb.pings("m1", "192.0.2.1"), "m1 reaches the LAN host");
    assert!(sb.pings("m2", "192.0.2.1"), "m2 reaches the LAN host");
    assert!(sb.pings("m1", "192.0.2.12"), "bridge mode: m1 reaches m2");
    assert!(
        host_pings(&sb, "192.0.2.11"),
        "the host reaches m1 through the shim"
    );
    assert!(
        !host_pings(&sb, "192.0.2.12"),
        "m2 has no shim: the host cannot reach it"
    );
    // `nsfw verify` checks the same with echoes, and fails when they do not hold.
    let f = sb.file("mv.toml", &topology("bridge", ""));
    let v = sb.nsfw(&["verify", &f]);
    assert!(v.status.success(), "verify\n{}", show(&v));
    let text = String::from_utf8_lossy(&v.stdout);
    for line in [
        "gateway 192.0.2.1",
        "m1 (through the host's shim)",
        "m2 (on up0 too)",
    ] {
        assert!(text.contains(line), "verify checks {line}\n{text}");
    }
    sb.ok("ip -n m2 link set eth0 type macvlan mode private");
    let v = sb.nsfw(&["verify", &f]);
    assert!(
        !v.status.success(),
        "verify sees m2 gone private\n{}",
        show(&v)
    );
    // The same file in private mode: the children are made again, and no longer meet.
    apply(&sb, &topology("private", ""));
    assert!(
        sb.pings("m1", "192.0.2.1"),
        "private: m1 still reaches the LAN"
    );
    assert!(
        !sb.pings("m1", "192.0.2.12"),
        "private: m1 does not reach m2"
    );
    assert!(!host_pings(&sb, "192.0.2.11"), "no shim any more");
}

#[test]
fn a_deny_between_a_child_and_a_bridge_namespace_holds() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    apply(&sb, &topology("bridge", ""));
    // Two segments: the bridge's namespaces reach the LAN (the world to them), and the LAN
    // opens nothing to a bridge's namespace unless allowed.
    assert!(
        sb.pings("b1", "192.0.2.11"),
        "b1 reaches m1 through the shim"
    );
    assert!(
        !sb.pings("m1", "10.0.0.2"),
        "m1 does not reach b1 unless allowed"
    );
    let policy = "[[allow]]\nfrom = \"m1\"\nto = \"b1\"\n[[deny]]\nfrom = \"b1\"\nto = \"m1\"\n";
    apply(&sb, &topology("bridge", policy));
    assert!(sb.pings("m1", "10.0.0.2"), "the allow holds");
    assert!(!sb.pings("b1", "192.0.2.11"), "the deny holds");
}

/// What `ip` says of the uplink, without counters and without what the kernel changes by
/// itself (its operational state).
fn uplink_state(sb: &Sandbox) -> String {
    let mut link = sb.json("ip -d -j link show dev up0");
    if let Some(l) = link[0].as_object_mut() {
        l.remove("stats64");
    }
    format!(
        "{link}\n{}\n{}",
        sb.ok("ip addr show dev up0"),
        sb.ok("ip route show table all | grep -v mvs- || true")
    )
}

#[test]
fn drift_is_named_and_repaired_and_flush_leaves_the_uplink_as_it_was() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let before = uplink_state(&sb);
    let f = apply(&sb, &topology("bridge", ""));
    // Deleted, moved out to the host (its mark goes with it: the host's copy is deleted as
    // nsfw's), its mode or MTU changed by hand.
    for (how, named) in [
        (
            "ip -n m1 link del eth0",
            "+ macvlan m1:eth0 on up0 mode bridge",
        ),
        (
            "ip -n m1 link set eth0 netns 1",
            "- link eth0 (macvlan): no longer in the file",
        ),
        (
            "ip -n m2 link set eth0 type macvlan mode private",
            "- link m2:eth0 (macvlan): its mode differs from the file's",
        ),
        // No MTU in the file: the uplink's, which the kernel gave it.
        (
            "ip -n m2 link set eth0 mtu 1400",
            "~ link m2:eth0: mtu 1400 → 1500",
        ),
    ] {
        sb.ok(how);
        let d = sb.nsfw(&["diff", &f]);
        assert_eq!(d.status.code(), Some(2), "{how}: diff\n{}", show(&d));
        let text = String::from_utf8_lossy(&d.stdout);
        assert!(text.contains(named), "{how}: diff names it\n{text}");
        apply(&sb, &topology("bridge", ""));
        assert!(sb.pings("m1", "192.0.2.12"), "{how}: repaired");
    }
    let o = sb.nsfw(&["flush", &f]);
    assert!(o.status.success(), "flush\n{}", show(&o));
    settles_to(&sb, &before);
}

/// Flush leaves the uplink as it was (`before`): the children go with their namespaces,
/// which the kernel tears down a moment later.
fn settles_to(sb: &Sandbox, before: &str) {
    let mut after = uplink_state(sb);
    for _ in 0..100 {
        if after == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = uplink_state(sb);
    }
    assert_eq!(before, after, "flush leaves the uplink as it was");
}

/// A run killed between making a child and marking it (two messages) leaves an unmarked
/// child with the file's MAC in nsfw's namespace; the next run brings it up. It is still
/// this file's child: the next apply goes on (it used to refuse the MAC as a foreign
/// child's, for ever).
#[test]
fn an_unmarked_child_in_its_own_namespace_is_still_the_files() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    apply(&sb, &topology("bridge", ""));
    sb.ok("ip -n m2 link set eth0 alias ''");
    apply(&sb, &topology("bridge", ""));
    assert!(sb.pings("m2", "192.0.2.1"));
}

#[test]
fn killed_applies_converge() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let f = sb.file("mv.toml", &topology("bridge", ""));
    for i in 0..6u64 {
        let mut child = sb.spawn_nsfw(&["apply", &f]);
        std::thread::sleep(Duration::from_millis(5 + i * 13));
        if let Some(pid) = common::inner_pid(&child) {
            // SAFETY: kill(2) on the nsfw our child runs (and waits for); at worst it has exited.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = child.wait();
    }
    apply(&sb, &topology("bridge", ""));
    assert!(sb.pings("m1", "192.0.2.12"));
    assert!(host_pings(&sb, "192.0.2.11"));
    let o = sb.nsfw(&["flush", &f]);
    assert!(o.status.success(), "flush\n{}", show(&o));
    let left = sb.leftovers(&["up0", "lan"]);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A child's forged source (an AF_PACKET frame, tests/tools/frames.py) never reaches the LAN;
/// its own address does (nsfw's netdev table on the uplink's egress, docs/firewall.md), with
/// the child's guard deleted (root in the child can): the host's chain alone holds.
#[test]
fn a_forged_source_from_a_child_never_reaches_the_lan() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    apply(&sb, &topology("bridge", ""));
    unguard(&sb, "m1");
    let (child, lan_host) = (mac(&sb, "m1"), mac(&sb, "lan"));
    let count = |marker: &str, frame: &str| sent_to_lan(&sb, "m1", marker, frame);
    let udp4 = |src: &str| format!("udp4 {child} {lan_host} {src} 192.0.2.1");
    assert!(
        count("own", &udp4("192.0.2.11")) > 0,
        "the child's own frames reach the LAN"
    );
    // With the child's own MAC: another source, a VLAN tag (which hides `ip saddr`), another
    // ethertype, an ARP reply whose sender MAC is not the frame's, an NA for the LAN's router.
    for (marker, frame) in [
        ("forged", udp4("192.0.2.99")),
        (
            "vlan",
            format!("vlan {child} {lan_host} 192.0.2.99 192.0.2.1"),
        ),
        ("ethertype", format!("raw {child} {lan_host} 0x88b5")),
        (
            "arpsha",
            format!("arp {child} {lan_host} 2 02:00:00:00:00:77 192.0.2.11 {lan_host} 192.0.2.1"),
        ),
        (
            "na",
            format!("na {child} 33:33:00:00:00:01 fe80::1 ff02::1 2001:db8::1"),
        ),
    ] {
        assert_eq!(
            count(marker, &frame),
            0,
            "{marker}: {frame} never reaches the LAN"
        );
    }
}

/// Deletes the guard inside `ns` (tests/macvlan_guard.rs tests it): what follows tests the
/// uplink's chain alone, as it stands when root in a child has removed its guard.
fn unguard(sb: &Sandbox, ns: &str) {
    sb.ok(&format!(
        "ip netns exec {ns} nft delete table netdev nsfw_mv"
    ));
}

/// The MAC of `eth0` in namespace `ns`.
fn mac(sb: &Sandbox, ns: &str) -> String {
    sb.json(&format!("ip -n {ns} -j link show dev eth0"))[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string()
}

/// How many copies of `frame` (tests/tools/frames.py's words, the marker put after the kind)
/// sent from `eth0` in namespace `ns` the LAN host sees.
fn sent_to_lan(sb: &Sandbox, ns: &str, marker: &str, frame: &str) -> u64 {
    sent_to_lan_from(sb, ns, "", marker, frame)
}

/// The same, from a packet socket bound to `proto` (`--proto 0x88b5`; empty: 0, the kernel
/// takes the skb's protocol from the frame).
fn sent_to_lan_from(sb: &Sandbox, ns: &str, proto: &str, marker: &str, frame: &str) -> u64 {
    sb.lan_count(
        1.2,
        marker,
        &format!(
            "ip netns exec {ns} {} send {proto} eth0 {} || true",
            common::frames_py(),
            frame.replacen(' ', &format!(" {marker} "), 1)
        ),
    )
}

/// Raw frames are judged by what they are on the wire: a packet socket bound to another
/// protocol (the skb's `meta protocol` 0x88b5, the frame's ethertype IPv4 or ARP) gets no
/// forged source out with the child's own MAC. And a child that puts the host's MAC (the
/// uplink's, the shim's) or a foreign child's on its frames claims none of the addresses
/// nsfw knows: not another's address, not the host's, not the gateway's, and the host's
/// MAC speaks only from the host's addresses. The host, the children and the foreign child
/// still talk.
#[test]
fn raw_frames_are_judged_as_they_are_and_known_macs_claim_no_one_elses_address() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    sb.ok("ip netns add fx
           ip link add fx0 link up0 type macvlan mode bridge
           ip link set fx0 netns fx
           ip -n fx addr add 192.0.2.50/24 dev fx0
           ip -n fx link set fx0 up");
    apply(&sb, &topology("bridge", ""));
    unguard(&sb, "m1");
    let (m1, lan_host) = (mac(&sb, "m1"), mac(&sb, "lan"));
    let uplink = sb.json("ip -j link show dev up0")[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string();
    let fx = sb.json("ip -n fx -j link show dev fx0")[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string();
    let links = sb.json("ip -j link show");
    let shim = links
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("mvs-")))
        .and_then(|l| l["address"].as_str())
        .expect("the shim")
        .to_string();
    let udp4 = |src: &str, ip: &str| format!("udp4 {src} {lan_host} {ip} 192.0.2.1");
    let arp = |src: &str, sha: &str, spa: &str| {
        format!("arp {src} ff:ff:ff:ff:ff:ff 2 {sha} {spa} 00:00:00:00:00:00 {spa}")
    };
    for (proto, marker, frame) in [
        ("--proto 0x88b5", "h1ip", udp4(&m1, "192.0.2.99")),
        ("--proto 0x86dd", "h1ip6", udp4(&m1, "192.0.2.99")),
        ("--proto 0x88b5", "h1arp", arp(&m1, &m1, "192.0.2.2")),
        ("", "upip", udp4(&uplink, "192.0.2.12")),
        ("", "shimip", udp4(&shim, "192.0.2.12")),
        ("", "upgw", arp(&uplink, &uplink, "192.0.2.1")),
        ("", "upsha", arp(&uplink, &m1, "192.0.2.2")),
        (
            "",
            "upna",
            format!("na {uplink} 33:33:00:00:00:01 fe80::1 ff02::1 2001:db8::1"),
        ),
        ("", "fxhost", udp4(&fx, "192.0.2.2")),
        ("", "fxm2", udp4(&fx, "192.0.2.12")),
        ("", "fxgw", arp(&fx, &fx, "192.0.2.1")),
        ("", "fxhostarp", arp(&fx, &fx, "192.0.2.2")),
        ("", "fxm1sha", arp(&fx, &m1, "192.0.2.50")),
    ] {
        assert_eq!(
            sent_to_lan_from(&sb, "m1", proto, marker, &frame),
            0,
            "{marker}: {proto} {frame} never reaches the LAN"
        );
    }
    // What the host routes without NAT leaves with its MAC and a source not its own (and no
    // one's the file knows): let out, or nsfw would cut off the host's routing.
    let routed = udp4(&uplink, "192.0.2.99");
    assert!(
        sent_to_lan_from(&sb, "m1", "", "uproute", &routed) > 0,
        "the host's MAC with a source that is nobody's the file knows reaches the LAN"
    );
    assert!(
        sent_to_lan(&sb, "m1", "own", &udp4(&m1, "192.0.2.11")) > 0,
        "the child's own frames get out"
    );
    assert!(host_pings(&sb, "192.0.2.1"), "the host reaches the LAN");
    assert!(host_pings(&sb, "192.0.2.11"), "and m1 through the shim");
    assert!(sb.pings("m1", "192.0.2.1"), "m1 reaches the LAN");
    assert!(sb.pings("fx", "192.0.2.1"), "the foreign child too");
}

/// Root in a child takes a new MAC (`ip link set eth0 address`, no packet socket needed):
/// no frame of it reaches the LAN, whatever its source — the uplink's chain lets out only the
/// MACs it knows. `diff` names the MAC, `apply` puts it back, and the child speaks again.
#[test]
fn a_child_that_takes_a_new_mac_speaks_for_no_one() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    let f = apply(&sb, &topology("bridge", ""));
    let (given, lan_host) = (mac(&sb, "m1"), mac(&sb, "lan"));
    let new = "02:00:00:5e:00:42";
    unguard(&sb, "m1");
    sb.ok(&format!("ip -n m1 link set eth0 address {new}"));
    for (marker, frame) in [
        (
            "forged",
            format!("udp4 {new} {lan_host} 192.0.2.99 192.0.2.1"),
        ),
        (
            "gateway",
            format!("arp {new} ff:ff:ff:ff:ff:ff 2 {new} 192.0.2.1 00:00:00:00:00:00 192.0.2.1"),
        ),
        ("own", format!("udp4 {new} {lan_host} 192.0.2.11 192.0.2.1")),
    ] {
        assert_eq!(
            sent_to_lan(&sb, "m1", marker, &frame),
            0,
            "{marker}: {frame} never reaches the LAN"
        );
    }
    assert!(
        !sb.pings("m1", "192.0.2.1"),
        "the new MAC speaks for no one"
    );
    let d = sb.nsfw(&["diff", &f]);
    assert_eq!(d.status.code(), Some(2), "diff\n{}", show(&d));
    let text = String::from_utf8_lossy(&d.stdout);
    assert!(text.contains(&given), "diff names the file's MAC\n{text}");
    apply(&sb, &topology("bridge", ""));
    assert_eq!(mac(&sb, "m1"), given, "apply puts the MAC back");
    assert!(sb.pings("m1", "192.0.2.1"), "and the child speaks again");
}

/// A second topology on the uplink (one child, `w1`).
const OTHER: &str = r#"
name = "mw"
[namespaces.w1]
macvlan = "up0"
address = "192.0.2.13/24"
"#;

/// A macvlan child nsfw does not own (made by hand before any apply, in a namespace of its
/// own) and two topologies' children share the uplink: each reaches the LAN through every
/// table's chain, and a flush leaves the others working and the foreign child untouched.
#[test]
fn foreign_children_and_two_topologies_share_an_uplink() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    sb.ok("ip netns add fx
           ip link add fx0 link up0 type macvlan mode bridge
           ip link set fx0 netns fx
           ip -n fx addr add 192.0.2.50/24 dev fx0
           ip -n fx link set fx0 up");
    let foreign = || sb.json("ip -n fx -j link show dev fx0")[0]["address"].clone();
    let before = foreign();
    assert!(
        sb.pings("fx", "192.0.2.1"),
        "the foreign child reaches the LAN"
    );
    let f = apply(&sb, &topology("bridge", ""));
    let g = sb.file("mw.toml", OTHER);
    let o = sb.nsfw(&["apply", &g]);
    assert!(o.status.success(), "apply mw\n{}", show(&o));
    for d in [&f, &g] {
        let o = sb.nsfw(&["diff", d]);
        assert!(o.status.success(), "diff {d} after both\n{}", show(&o));
    }
    for (ns, who) in [
        ("fx", "the foreign child"),
        ("m1", "mv's child"),
        ("w1", "mw's child"),
    ] {
        assert!(sb.pings(ns, "192.0.2.1"), "{who} reaches the LAN");
    }
    let o = sb.nsfw(&["flush", &f]);
    assert!(o.status.success(), "flush mv\n{}", show(&o));
    assert!(
        sb.pings("w1", "192.0.2.1"),
        "mw's child still reaches the LAN"
    );
    assert!(sb.pings("fx", "192.0.2.1"), "the foreign child too");
    assert_eq!(
        foreign(),
        before,
        "flush leaves the foreign child as it was"
    );
    // The flushed children go with their namespaces, which the kernel tears down a moment
    // later; until then their MACs are still on the uplink.
    let mut o = sb.nsfw(&["diff", &g]);
    for _ in 0..50 {
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        o = sb.nsfw(&["diff", &g]);
    }
    assert!(o.status.success(), "mw is untouched\n{}", show(&o));
}

/// A file whose child would take a MAC the uplink or a foreign child holds is refused before
/// anything changes, naming the file, key and value; fixed, it applies and converges.
#[test]
fn a_mac_the_uplink_or_a_foreign_child_holds_is_refused_up_front() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    sb.ok("ip netns add fx
           ip link add fx0 link up0 type macvlan mode bridge
           ip link set fx0 netns fx
           ip -n fx link set fx0 up");
    let fx = sb.json("ip -n fx -j link show dev fx0")[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string();
    let uplink = sb.json("ip -j link show dev up0")[0]["address"]
        .as_str()
        .expect("a MAC")
        .to_string();
    let text = |mac: &str| {
        format!(
            "name = \"mm\"\n[namespaces.a]\nmacvlan = \"up0\"\naddress = \"192.0.2.21/24\"\n{mac}"
        )
    };
    let state = || sb.ok("ip netns list; nft list ruleset; ip -d link show");
    let before = state();
    for (mac, who) in [
        (&fx, "a child of up0 that nsfw does not own"),
        (&uplink, "the uplink up0 itself"),
    ] {
        let f = sb.file("mm.toml", &text(&format!("mac = \"{mac}\"\n")));
        let o = sb.nsfw(&["apply", &f]);
        assert_eq!(o.status.code(), Some(1), "apply\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let named = format!("mm.toml: namespaces.a.mac = \"{mac}\"");
        assert!(
            err.contains(&named) && err.contains(who),
            "{named}, {who}\n{err}"
        );
        assert_eq!(state(), before, "nothing changed");
    }
    let f = sb.file("mm.toml", &text(""));
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "apply once fixed\n{}", show(&o));
    let d = sb.nsfw(&["diff", &f]);
    assert!(d.status.success(), "diff after\n{}", show(&d));
    assert!(sb.pings("a", "192.0.2.1"), "a reaches the LAN");
}

/// The host reaches an IPv6 child by a route through its shim, from the shim's link-local (from
/// the uplink's global address the child's solicitation reaches the shim, which does not own it).
/// IPv6 switched off on the shim (by hand, or by `default.disable_ipv6` = 1) and the route's
/// source taken off by hand are named and repaired; flush leaves the uplink as it was.
#[test]
fn the_shim_of_an_ipv6_child_gets_ipv6_on() {
    let Some(sb) = Sandbox::or_skip() else { return };
    lan(&sb);
    sb.ok("ip addr add 2001:db8:200::10/64 dev up0 nodad");
    let before = uplink_state(&sb);
    sb.ok("echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6");
    let text = topology("bridge", "").replace(
        "gateway = \"192.0.2.1\"",
        "gateway = \"192.0.2.1\"\naddress6 = \"2001:db8:200::21/64\"",
    );
    let f = apply(&sb, &text);
    let shim = sb.ok("ip -o link show | grep -o 'mvs-[^@:]*' | head -1");
    let shim = shim.trim();
    assert!(!shim.is_empty(), "no shim");
    let off = format!("/proc/sys/net/ipv6/conf/{shim}/disable_ipv6");
    sb.ok(&format!("echo 1 > {off}"));
    let out = sb.nsfw_code(&["diff", &f], 2);
    let named = format!("~ sysctl net.ipv6.conf.{shim}.disable_ipv6: 1 → 0");
    assert!(out.contains(&named), "{out}");
    apply(&sb, &text);
    sb.serve(Some("m1"), "tcp6", &[8080]);
    let ping6 = || sb.sh("ping -6 -c1 -W1 2001:db8:200::21").status.success();
    let reached = |what: &str| {
        assert!(ping6(), "{what}: the host pings m1 over IPv6");
        let seen = sb.ask(None, "tcp", "2001:db8:200::21", 8080);
        let ll = seen.as_deref().is_some_and(|s| s.starts_with("fe80::"));
        assert!(ll, "{what}: m1 sees the shim's link-local: {seen:?}");
    };
    reached("applied");
    sb.ok(&format!(
        "ip -6 route replace 2001:db8:200::21/128 dev {shim}"
    ));
    assert!(!ping6(), "without the source, m1's answer is lost");
    let out = sb.nsfw_code(&["diff", &f], 2);
    let named = format!("dev {shim} → 2001:db8:200::21/128 dev {shim} src fe80::");
    assert!(out.contains(&named), "diff names the source\n{out}");
    apply(&sb, &text);
    reached("repaired");
    sb.ok("ip netns pids m1 | xargs -r kill -9"); // the server would keep m1 and its child
    sb.nsfw_code(&["flush", &f], 0);
    settles_to(&sb, &before);
}
