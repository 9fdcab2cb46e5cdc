//! Physical ports with `take_addresses`: every route through the port (any table, its
//! protocol, metric and source) and every address (flags, lifetimes) moves to the bridge and
//! comes back as it was, at flush and when the port leaves the file while the bridge stays.
//! Packets to a subnet behind a static route of the port are the witness.

mod common;

use common::Sandbox;

const TAKE: &str = r#"
name = "p"
[bridges.br0]
address = "10.10.0.1/24"
ports = ["eth9"]
take_addresses = true
[namespaces.ns1]
bridge = "br0"
"#;

/// What the port had, as `ip` prints it: routes of every table but local and the kernel's,
/// and the addresses with their flags (lifetimes are left out: they count down).
fn held(sb: &Sandbox, dev: &str) -> Vec<String> {
    let routes = sb.ok(&format!(
        "ip route show table all dev {dev} | grep -v 'proto kernel\\|table local\\|^fe80\\|^multicast' || true"
    ));
    let addrs = sb.ok(&format!(
        "ip -o -4 addr show dev {dev} | sed 's/.*inet /inet /; s/ {dev}.*//; s/brd [^ ]* //'"
    ));
    let mut out: Vec<String> = routes
        .lines()
        .chain(addrs.lines())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    out.sort();
    out
}

/// A "physical" eth9 (one end of a pair whose other end, in `wire`, is the next hop) with a
/// default route (metric 100, proto static), a static route to 203.0.113.0/24, a policy
/// routing table and a second address with lifetimes and noprefixroute.
fn uplink(sb: &Sandbox) -> Vec<String> {
    sb.ok("ip netns add wire && ip link add eth9 type veth peer name eth0 netns wire \
           && ip link set eth9 up && ip addr add 192.0.2.5/24 dev eth9 \
           && ip addr add 192.0.2.6/24 dev eth9 valid_lft 3000 preferred_lft 2000 noprefixroute \
           && ip -n wire link set eth0 up && ip -n wire link set lo up \
           && ip -n wire addr add 192.0.2.1/24 dev eth0 && ip -n wire addr add 192.0.2.3/24 dev eth0 \
           && ip -n wire addr add 203.0.113.9/32 dev lo \
           && ip -n wire route add 10.10.0.0/24 via 192.0.2.5 \
           && ip route add default via 192.0.2.1 dev eth9 proto static metric 100 \
           && ip route add 203.0.113.0/24 via 192.0.2.3 dev eth9 proto static \
           && ip route add 198.18.0.0/15 via 192.0.2.3 dev eth9 table 100 proto static metric 5 src 192.0.2.5");
    let before = held(sb, "eth9");
    assert_eq!(before.len(), 5, "{before:?}");
    before
}

/// `lines` through another interface, with the bridge's own address beside them.
fn on_bridge(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().map(|l| l.replace("eth9", "br0")).collect();
    out.push("inet 10.10.0.1/24 scope global".to_string());
    out.sort();
    out
}

#[test]
fn a_taken_port_gives_back_every_route_and_address_as_it_was() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = uplink(&sb);
    let f = sb.file("p.toml", TAKE);
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    // On the bridge meanwhile, verbatim: the static route still leads to 203.0.113.9.
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    assert!(held(&sb, "eth9").is_empty(), "{:?}", held(&sb, "eth9"));
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    // The record, written before anything changed, holds every route.
    let rec = sb.ok("cat /run/nsfw/record");
    assert!(
        rec.contains("203.0.113.0/24") && rec.contains("\"table\":100"),
        "{rec}"
    );
    // Someone deletes a taken route: drift, put back as it was (proto static, not nsfw's).
    sb.ok("ip route del 203.0.113.0/24 dev br0");
    let d = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        d.contains("203.0.113.0/24 via 192.0.2.3 dev br0 proto 4"),
        "{d}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    // Flush: back on the port exactly as before, and packets take it.
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(held(&sb, "eth9"), before);
    assert!(sb.ok("ip route get 203.0.113.9").contains("dev eth9"));
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    assert!(
        sb.ok("ip -o addr show dev eth9")
            .contains("dynamic noprefixroute")
    );
}

#[test]
fn a_port_that_leaves_the_file_gets_its_routes_back_while_the_bridge_stays() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let before = uplink(&sb);
    let f = sb.file("p.toml", TAKE);
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(held(&sb, "br0"), on_bridge(&before));
    let without = sb.file(
        "q.toml",
        &TAKE.replace("ports = [\"eth9\"]\ntake_addresses = true\n", ""),
    );
    sb.nsfw_code(&["apply", &without], 0);
    sb.nsfw_code(&["diff", &without], 0);
    assert_eq!(held(&sb, "eth9"), before);
    // The bridge keeps its own address only.
    let br = held(&sb, "br0");
    assert_eq!(br, vec!["inet 10.10.0.1/24 scope global".to_string()]);
    assert!(sb.ok("ping -c1 -W2 203.0.113.9").contains("1 received"));
    assert!(
        !sb.ok("cat /run/nsfw/record 2>/dev/null || true")
            .contains("eth9")
    );
}
