//! Topology → desired kernel resources. The one place that knows what "a namespace on a
//! bridge" means: a bridge with the gateway address in the host, a veth pair whose host end is
//! a port of it and whose other end, inside the namespace, holds the namespace's address and
//! its default route; the sysctls that make it route; the resolv.conf beside it.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::resources::{
    DEFAULT_V4, DEFAULT_V6, Desired, LinkKind, LinkSpec, Node, RouteSpec, SysctlSpec,
};
use crate::topology::{BrNetfilter, Bridge, Iface, Macvlan, MacvlanMode, Namespace, Topology};

/// The kernel drops IPv6 from a link whose MTU is below this, so addrgenmode (an IPv6 setting)
/// cannot be set on it.
pub(crate) const IPV6_MIN_MTU: u32 = 1280;

pub(crate) const IP_FORWARD: &str = "net.ipv4.ip_forward";
pub(crate) const IP6_FORWARD: &str = "net.ipv6.conf.all.forwarding";
pub(crate) const BRNF: &str = "net.bridge.bridge-nf-call-iptables";

/// `promote_secondaries`: when the primary address of a subnet is deleted, the next one of the
/// same subnet takes its place instead of being deleted with it — what lets an address move
/// within its subnet (add the new, delete the old) without a moment without one.
fn promote(dev: &str) -> String {
    crate::plumbing::sysctl::key_for("net.ipv4.conf", dev, "promote_secondaries")
}

/// `net.ipv6.conf.DEV.addr_gen_mode`: 1 is `addrgenmode none` (no link-local address).
pub(crate) fn addr_gen_mode(dev: &str) -> String {
    crate::plumbing::sysctl::key_for("net.ipv6.conf", dev, "addr_gen_mode")
}

fn sysctl(value: &str, restore: bool) -> SysctlSpec {
    SysctlSpec {
        value: value.to_string(),
        restore,
        fresh: None,
    }
}

/// The host's sysctls a run reads for `d`: those the file sets, and each bridge's IPv6
/// switch, which the plan turns on where the bridge takes a port's IPv6 addresses
/// (`plan::ports`) though the file does not say so. watch holds the same ones open, so that
/// the host's links it vouches for carry them and the run opens nothing under /proc/sys for
/// them: measured at 1,000 namespaces, each such open took a quarter of a millisecond (the
/// kernel compares each name on the path with every namespace's entry of that name).
pub(crate) fn host_keys(d: &Desired) -> Vec<String> {
    let mut keys: Vec<String> = d.host.sysctls.keys().cloned().collect();
    keys.extend(
        d.host
            .links
            .iter()
            .filter(|(_, l)| l.kind == crate::resources::LinkKind::Bridge)
            .map(|(n, _)| crate::plumbing::sysctl::key_for("net.ipv6.conf", n, "disable_ipv6")),
    );
    keys.sort();
    keys.dedup();
    keys
}

pub(crate) fn compile(t: &Topology) -> Desired {
    let mut d = Desired {
        topology: t.name.clone(),
        mark: crate::owner::mark(&t.name),
        source: t.source.display().to_string(),
        ..Default::default()
    };
    for b in &t.bridges {
        bridge(&mut d, t, b);
    }
    for n in &t.namespaces {
        let mut node = Node::default();
        for i in &n.ifaces {
            veth_pair(&mut d, &mut node, t, n, i);
        }
        for m in &n.macvlans {
            macvlan(&mut d, &mut node, t, m);
        }
        ns_routes(&mut node, n);
        ns_forwarding(&mut node, n);
        if let Some(content) = t.resolv_conf(n) {
            d.resolv.insert(n.name.clone(), content);
            if n.dns_replace {
                d.resolv_replace.insert(n.name.clone());
            }
        }
        d.namespaces.insert(n.name.clone(), node);
    }
    host_routes(&mut d, t);
    host_sysctls(&mut d, t);
    d
}

/// A bridge: the link, the host's addresses on it, its sysctls, and its physical ports.
fn bridge(d: &mut Desired, t: &Topology, b: &Bridge) {
    d.host.links.insert(
        b.name.clone(),
        LinkSpec {
            name: b.name.clone(),
            origin: format!("bridges.{}", b.name),
            kind: LinkKind::Bridge,
            mtu: b.mtu,
            mac: Some(b.mac),
            master: None,
            marked: true,
            no_link_local: false,
            nf_call: crate::firewall::judges_within_bridges(t),
            hairpin: false,
            isolated: false,
        },
    );
    if let Some(a) = b.address {
        d.host.addrs.insert((b.name.clone(), IpNetwork::V4(a)));
    }
    if let Some(a6) = b.address6 {
        d.host.addrs.insert((b.name.clone(), IpNetwork::V6(a6)));
        // The host routes for the segment: forwarding a packet onto it, it resolves the
        // namespace's address from a link-local source (see `link_local`).
        d.host
            .addrs
            .insert((b.name.clone(), IpNetwork::V6(link_local(b.mac))));
        // Said outright, as inside a namespace: IPv6 switched off on the bridge by hand (or
        // by the host's `default`, for a bridge made here) drops its addresses, and the
        // kernel refuses them back until it is on again.
        d.host.sysctls.insert(
            crate::plumbing::sysctl::key_for("net.ipv6.conf", &b.name, "disable_ipv6"),
            sysctl("0", false),
        );
    }
    d.host.sysctls.insert(promote(&b.name), sysctl("1", false));
    // 127.0.0.1 may be routed out of the bridge only where a namespace on it is published
    // on localhost (the guard in nsfw's table keeps neighbours off 127.0.0.0/8).
    let localnet = crate::firewall::needs_localnet(t, &b.name);
    d.host.sysctls.insert(
        crate::plumbing::sysctl::key_for("net.ipv4.conf", &b.name, "route_localnet"),
        SysctlSpec {
            fresh: Some("0"),
            ..sysctl(if localnet { "1" } else { "0" }, false)
        },
    );
    if b.overlap_allowed {
        d.overlap_ok.insert(b.name.clone());
    }
    if let Some(vx) = &b.vxlan {
        vxlan(d, t, b, vx);
    }
    for p in &b.ports {
        d.host.links.insert(
            p.clone(),
            LinkSpec {
                name: p.clone(),
                origin: format!("bridges.{}.ports", b.name),
                kind: LinkKind::Port {
                    take_addresses: b.take_addresses,
                    mtu_set: b.mtu_set,
                },
                mtu: b.mtu,
                mac: None,
                master: Some(b.name.clone()),
                marked: false,
                no_link_local: false,
                nf_call: false,
                hairpin: false,
                isolated: false,
            },
        );
    }
}

/// A bridge's VXLAN tunnel: the link, a port of the bridge with its MTU, without an IPv6
/// link-local address (a port has no business on the segment itself); an FDB entry per peer.
fn vxlan(d: &mut Desired, t: &Topology, b: &Bridge, vx: &crate::topology::Vxlan) {
    let name = vx.ifname();
    if b.mtu >= IPV6_MIN_MTU {
        d.host.sysctls.insert(
            addr_gen_mode(&name),
            SysctlSpec {
                fresh: Some("1"),
                ..sysctl("1", false)
            },
        );
    }
    d.host.links.insert(
        name.clone(),
        LinkSpec {
            name: name.clone(),
            origin: format!("bridges.{}.vxlan", b.name),
            kind: LinkKind::Vxlan {
                id: vx.id,
                local: vx.local,
                port: vx.port,
            },
            mtu: b.mtu,
            // Derived like every link nsfw makes: what tells a tunnel an interrupted run
            // left unmarked from somebody else's. With `local`: the other hosts' tunnels
            // of the segment share its name and often the topology's.
            mac: Some(crate::topology::derived_mac(
                &t.name,
                "vxlan",
                &format!("{name}/{}", vx.local),
            )),
            master: Some(b.name.clone()),
            marked: true,
            no_link_local: b.mtu >= IPV6_MIN_MTU,
            nf_call: false,
            hairpin: false,
            // With `isolate`, the other hosts' namespaces are kept from this host's at L2
            // too: an isolated port reaches only the bridge and ports that are not.
            isolated: b.isolate,
        },
    );
    for p in &vx.peers {
        d.host.fdb.insert((name.clone(), *p));
    }
}

/// A namespace interface: the veth pair (its host end a port of the bridge, in the host; its
/// other end in `node`), the address(es), impairment and IPv6 settings of the namespace end.
fn veth_pair(d: &mut Desired, node: &mut Node, t: &Topology, n: &Namespace, i: &Iface) {
    node.sysctls.insert(promote(&i.ifname), sysctl("1", false));
    let no_ll = i.mtu >= IPV6_MIN_MTU;
    if no_ll {
        // The host end is made with it; a run killed before that leaves it to the kernel's
        // default, and the link-local address the kernel then gives it (which the diff
        // removes, see `plan::node`). Diffed like any setting of the link.
        d.host.sysctls.insert(
            addr_gen_mode(&i.host_ifname),
            SysctlSpec {
                fresh: Some("1"),
                ..sysctl("1", false)
            },
        );
    }
    d.host.links.insert(
        i.host_ifname.clone(),
        LinkSpec {
            name: i.host_ifname.clone(),
            origin: format!("namespaces.{}.host_ifname = {:?}", n.name, i.host_ifname),
            kind: LinkKind::Veth {
                peer_ns: n.name.clone(),
                peer: i.ifname.clone(),
                keep_mac: i.host_mac.is_some(),
            },
            mtu: i.mtu,
            // Derived like the others: what tells a half-made pair of an interrupted
            // run from somebody else's link of the same name.
            mac: Some(
                i.host_mac.unwrap_or_else(|| {
                    crate::topology::derived_mac(&t.name, "veth", &i.host_ifname)
                }),
            ),
            master: Some(i.bridge.clone()),
            marked: true,
            no_link_local: no_ll,
            nf_call: false,
            // Only where a publish leads: hairpin also sends the port's own
            // broadcasts back to it, which no other namespace needs.
            hairpin: !n.publish.is_empty()
                && n.ifaces.first().is_some_and(|f| f.ifname == i.ifname),
            isolated: t.isolated_port(n, i),
        },
    );
    node.links.insert(
        i.ifname.clone(),
        LinkSpec {
            name: i.ifname.clone(),
            origin: format!("namespaces.{}.ifname = {:?}", n.name, i.ifname),
            kind: LinkKind::Peer {
                host: i.host_ifname.clone(),
            },
            mtu: i.mtu,
            mac: Some(i.mac),
            master: None,
            marked: false,
            no_link_local: no_ll,
            nf_call: false,
            hairpin: false,
            isolated: false,
        },
    );
    node.addrs
        .insert((i.ifname.clone(), IpNetwork::V4(i.address)));
    node.netem.insert(i.ifname.clone(), i.netem);
    // A rate limits what each end sends: the namespace's end its uploads, the host's end
    // (the bridge port) what reaches the namespace.
    if let Some(r) = i.rate {
        node.rates.insert(i.ifname.clone(), r);
        d.host.rates.insert(i.host_ifname.clone(), r);
    }
    ipv6(node, (&i.ifname, i.mac, i.address6), no_ll);
}

/// A namespace interface on an uplink: the child (made from the host, born in the namespace),
/// its addresses and IPv6 settings; with `host_shim`, the host's shim on the uplink (one per
/// uplink, in bridge mode: the host cannot reach its own children through the uplink itself)
/// and a route to the child through it.
fn macvlan(d: &mut Desired, node: &mut Node, t: &Topology, m: &Macvlan) {
    node.sysctls.insert(promote(&m.ifname), sysctl("1", false));
    let no_ll = m.mtu.is_none_or(|x| x >= IPV6_MIN_MTU);
    let spec = |name: &str, origin: String, mode, tap, mac, mtu, marked| LinkSpec {
        name: name.to_string(),
        origin,
        kind: LinkKind::Macvlan {
            uplink: m.uplink.clone(),
            mode,
            tap,
        },
        mtu,
        mac: Some(mac),
        master: None,
        marked,
        no_link_local: no_ll,
        nf_call: false,
        hairpin: false,
        isolated: false,
    };
    let origin = format!("{}.{} = {:?}", m.key, m.kind(), m.uplink);
    let child = spec(
        &m.ifname,
        origin,
        m.mode,
        m.tap,
        m.mac,
        m.mtu.unwrap_or(0),
        true,
    );
    // A passthru child takes the uplink's MAC; setting its own would change the uplink's.
    let child = LinkSpec {
        mac: (m.mode != MacvlanMode::Passthru).then_some(m.mac),
        ..child
    };
    node.links.insert(m.ifname.clone(), child);
    node.addrs
        .insert((m.ifname.clone(), IpNetwork::V4(m.address)));
    ipv6(node, (&m.ifname, m.mac, m.address6), no_ll);
    if !m.host_shim {
        return;
    }
    let (shim, mac) = crate::topology::shim(&t.name, &m.uplink);
    let origin = format!("{}.host_shim (the host's shim on {})", m.key, m.uplink);
    let link = spec(&shim, origin, MacvlanMode::Bridge, false, mac, 0, true);
    d.host.links.entry(shim.clone()).or_insert(link);
    if m.address6.is_some() {
        // The host routes the child's IPv6 address through the shim: IPv6 on (switched off by
        // hand, or by the host's `default` for a shim made here, the kernel refuses the
        // route), and a link-local source to resolve the child from, as on a bridge.
        d.host
            .addrs
            .insert((shim.clone(), IpNetwork::V6(link_local(mac))));
        d.host.sysctls.insert(
            crate::plumbing::sysctl::key_for("net.ipv6.conf", &shim, "disable_ipv6"),
            sysctl("0", false),
        );
    }
    let nets = [
        Some(IpNetwork::V4(m.address)),
        m.address6.map(IpNetwork::V6),
    ];
    for a in nets.into_iter().flatten() {
        let host = IpNetwork::new(a.ip(), if a.is_ipv6() { 128 } else { 32 });
        if let Ok(dst) = host {
            // IPv6 leaves from the shim's link-local address: from the uplink's global
            // address (the kernel's choice), the child's neighbour solicitation for it reaches
            // the shim, which does not own it and stays silent (IPv4 works either way: Linux
            // answers ARP for any of the host's addresses). A child never reaches its
            // uplink's own stack.
            let src = a.is_ipv6().then(|| IpAddr::V6(link_local(mac).ip()));
            let route = RouteSpec {
                src,
                ..RouteSpec::unicast(dst, None, &shim)
            };
            d.host.routes.insert(dst, route);
        }
    }
}

/// A namespace interface's IPv6 (its name, MAC, address): its address and link-local
/// address, or none at all.
fn ipv6(
    node: &mut Node,
    (ifname, mac, address6): (&str, crate::topology::Mac, Option<ipnetwork::Ipv6Network>),
    no_ll: bool,
) {
    let key = |leaf| crate::plumbing::sysctl::key_for("net.ipv6.conf", ifname, leaf);
    match address6 {
        // nsfw configures IPv6 statically: router advertisements from anyone on the
        // segment are not taken.
        Some(a6) => {
            node.addrs.insert((ifname.to_string(), IpNetwork::V6(a6)));
            // Its link-local address, made by nsfw without DAD (the link has
            // addrgenmode none): a router resolving a neighbour for a packet it
            // forwards solicits from its link-local address, and with none it sends
            // nothing and the packet is lost.
            node.addrs
                .insert((ifname.to_string(), IpNetwork::V6(link_local(mac))));
            node.sysctls.insert(key("accept_ra"), sysctl("0", false));
            // Said outright: a segment that gains IPv6 in an edit of the file had it
            // disabled, and the kernel refuses addresses on such a link.
            node.sysctls.insert(key("disable_ipv6"), sysctl("0", false));
            // And no link-local address of the kernel's: with `addr_gen_mode` written by
            // hand (0, 2 or 3) the kernel makes one the moment IPv6 comes on, after the plan
            // was made, and the run ended "the host still differs". Written before
            // `disable_ipv6` (the namespace's sysctls go in key order).
            if no_ll {
                node.sysctls.insert(
                    key("addr_gen_mode"),
                    SysctlSpec {
                        fresh: Some("1"),
                        ..sysctl("1", false)
                    },
                );
            }
        }
        // A segment without IPv6 gets none at all, not even link-local: nsfw's table has
        // no IPv6 sources for it (bridged fe80:: would pass at bridge-nf-call-iptables 0
        // and be dropped as spoofed at 1), and a link with IPv6 takes router
        // advertisements from anyone on the segment, addresses nsfw's table knows nothing
        // of. Nothing leaks over IPv6; `address6` on the bridge gives both. (Below MTU 1280
        // the kernel has already dropped IPv6 from the link.)
        None if no_ll => {
            node.sysctls.insert(key("disable_ipv6"), sysctl("1", false));
        }
        None => {}
    }
}

/// The default routes (from the gateways) and the static ones, each out of the interface
/// its next hop is on (validation made sure there is one).
fn ns_routes(node: &mut Node, n: &Namespace) {
    let defaults = [
        n.gateway.map(|g| (DEFAULT_V4, IpAddr::V4(g))),
        n.gateway6.map(|g| (DEFAULT_V6, IpAddr::V6(g))),
    ];
    let statics = n.routes.iter().map(|r| (r.to, r.via));
    for (dst, via) in defaults.into_iter().flatten().chain(statics) {
        if let Some(dev) = n.dev_towards(via) {
            node.routes
                .insert(dst, RouteSpec::unicast(dst, Some(via), dev));
        }
    }
}

/// Forwarding inside is set either way: a namespace that routed and no longer does stops
/// (a fresh one starts at 0).
fn ns_forwarding(node: &mut Node, n: &Namespace) {
    let fwd = if n.forward { "1" } else { "0" };
    node.sysctls.insert(
        IP_FORWARD.into(),
        SysctlSpec {
            fresh: Some("0"),
            ..sysctl(fwd, false)
        },
    );
    if n.addrs(true).next().is_some() {
        node.sysctls.insert(
            IP6_FORWARD.into(),
            SysctlSpec {
                fresh: Some("0"),
                ..sysctl(fwd, false)
            },
        );
    }
}

/// `[host] routes`: out of the bridge their next hop is on.
fn host_routes(d: &mut Desired, t: &Topology) {
    for r in &t.host.routes {
        let on = t.bridges.iter().find(|b| {
            [b.address.map(IpNetwork::V4), b.address6.map(IpNetwork::V6)]
                .into_iter()
                .flatten()
                .any(|a| a.contains(r.via))
        });
        if let Some(b) = on {
            d.host
                .routes
                .insert(r.to, RouteSpec::unicast(r.to, Some(r.via), &b.name));
        }
    }
}

/// The host-wide sysctls the file sets: forwarding, br_netfilter's.
fn host_sysctls(d: &mut Desired, t: &Topology) {
    if let Some(f) = t.host.ip_forward {
        let v = if f { "1" } else { "0" };
        d.host.sysctls.insert(IP_FORWARD.into(), sysctl(v, true));
        // IPv6 forwarding is one switch for the whole host (the kernel forwards IPv6 only
        // when `all.forwarding` is on).
        if t.bridges.iter().any(|b| b.address6.is_some()) {
            d.host.sysctls.insert(IP6_FORWARD.into(), sysctl(v, true));
        }
    }
    match t.host.br_netfilter {
        BrNetfilter::Auto => {}
        BrNetfilter::Off => {
            d.host.sysctls.insert(BRNF.into(), sysctl("0", true));
        }
        BrNetfilter::On => {
            d.host.sysctls.insert(BRNF.into(), sysctl("1", true));
        }
    }
}

/// The EUI-64 link-local address of a MAC (see `Mac::link_local`).
pub(crate) fn link_local(mac: crate::topology::Mac) -> ipnetwork::Ipv6Network {
    mac.link_local()
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
