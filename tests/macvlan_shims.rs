//! The host's shims on two uplinks, with real packets: the host reaches children on each
//! LAN, over IPv4 and IPv6. A shim has no IPv4 address, and the kernel's own choice of source
//! is the host's first global address — on the second uplink, the first LAN's, to which the
//! child answers through its gateway. nsfw's routes name the source: the uplink's own
//! address on the child's subnet (IPv4), the shim's link-local address (IPv6).

mod common;

use common::Sandbox;

/// Two LANs on two veth "uplinks": up0 (192.0.2.0/24, 2001:db8:200::/64) and up1
/// (198.51.100.0/24, 2001:db8:300::/64), each with a host on its far end.
fn two_lans(sb: &Sandbox) {
    sb.ok("for x in '0 lan0 192.0.2 200' '1 lan1 198.51.100 300'; do
             set -- $x
             ip netns add $2
             ip link add up$1 type veth peer name eth0 netns $2
             ip link set up$1 up && ip addr add $3.2/24 dev up$1
             ip -6 addr add 2001:db8:$4::10/64 dev up$1 nodad
             ip -n $2 link set lo up && ip -n $2 link set eth0 up
             ip -n $2 addr add $3.1/24 dev eth0
             ip -n $2 -6 addr add 2001:db8:$4::1/64 dev eth0 nodad
           done");
}

const FILE: &str = r#"name = "mv"
[namespaces.m1]
macvlan = "up0"
address = "192.0.2.11/24"
address6 = "2001:db8:200::21/64"
host_shim = true
[namespaces.m3]
macvlan = "up1"
address = "198.51.100.11/24"
address6 = "2001:db8:300::21/64"
host_shim = true
"#;

#[test]
fn the_host_reaches_children_on_two_uplinks_through_their_shims() {
    let Some(sb) = Sandbox::or_skip() else { return };
    two_lans(&sb);
    let before = sb.ok("ip -o addr; ip route; ip -6 route | grep -v '^fe80'");
    let f = sb.file("mv.toml", FILE);
    sb.nsfw_code(&["apply", &f], 0);
    let routes = sb.ok("ip route; ip -6 route");
    assert!(routes.contains("198.51.100.11 dev mvs-"), "{routes}");
    assert!(
        routes.contains("src 198.51.100.2"),
        "the second uplink's own: {routes}"
    );
    for a in [
        "192.0.2.11",
        "198.51.100.11",
        "2001:db8:200::21",
        "2001:db8:300::21",
    ] {
        assert!(
            sb.sh(&format!("ping -c1 -W2 {a}")).status.success(),
            "the host reaches {a}\n{routes}"
        );
    }
    let v = sb.nsfw(&["verify", &f]);
    assert!(v.status.success(), "{}", common::show(&v));
    // The second uplink's address changes (the kernel takes the route with its source):
    // diff names the route, apply follows the address. (Deleted first: a primary address
    // takes its secondaries with it.)
    sb.ok("ip addr del 198.51.100.2/24 dev up1 && ip addr add 198.51.100.3/24 dev up1");
    let d = sb.nsfw(&["diff", &f]);
    let said = String::from_utf8_lossy(&d.stdout);
    assert_eq!(d.status.code(), Some(2), "{}", common::show(&d));
    assert!(said.contains("198.51.100.11/32 dev mvs-"), "{said}");
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.sh("ping -c1 -W2 198.51.100.11").status.success());
    sb.nsfw_code(&["diff", &f], 0);
    sb.ok("ip addr del 198.51.100.3/24 dev up1 && ip addr add 198.51.100.2/24 dev up1");
    sb.nsfw_code(&["flush", &f], 0);
    let after = sb.ok("ip -o addr; ip route; ip -6 route | grep -v '^fe80'");
    assert_eq!(before, after, "flush leaves both uplinks as they were");
}
