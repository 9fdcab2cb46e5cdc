//! Stand-in NICs for `nsfw try`: each physical port the file names becomes, in the sandbox, a
//! veth of that name whose other end (`eth0`) sits in a simulated LAN namespace `lan-PORT`
//! with a host on it. With the host's own interface of that name, the stand-in gets its MTU
//! and, when the bridge says `take_addresses`, its addresses and the routes through it (their
//! next hops on the LAN host, their destinations on its loopback); without one (the file
//! rehearsed elsewhere), the bridge's MTU, and with `take_addresses` a documentation subnet
//! (192.0.2.0/24, one /28 per port). The parent reads the host before it enters the sandbox
//! and hands what it read to the child in the environment.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Result, anyhow};
use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use crate::plumbing::rtnl::Conn;
use crate::plumbing::{msgs, netns};
use crate::probe::{Check, Origin, Probe};
use crate::resources::{AddrOrig, RouteOrig, RouteSpec};
use crate::topology::{Bridge, Topology};

/// What the parent read of the host's ports, as JSON, for the child.
pub(crate) const ENV_PORTS: &str = "NSFW_TRY_PORTS";

/// A port as the host has it (or as made up for the sandbox).
#[derive(Clone, Debug, Default)]
struct RealPort {
    mtu: Option<u32>,
    addrs: Vec<IpNetwork>,
    /// Routes through it: destination, next hop. Default routes are left out: the sandbox's
    /// world is its own upstream.
    routes: Vec<(IpNetwork, Option<IpAddr>)>,
}

/// The name of the LAN namespace behind stand-in `port`.
pub(crate) fn lan_ns(port: &str) -> String {
    format!("lan-{port}")
}

/// In the caller's (the host's) namespace: what the interfaces the file names as ports carry,
/// as JSON. Interfaces the host lacks are left out.
pub(crate) fn read_host(t: &Topology) -> Result<String> {
    let mut c = Conn::open("host")?;
    let o = crate::plumbing::observe::read_node(&mut c)?;
    let mut out = serde_json::Map::new();
    for p in t.bridges.iter().flat_map(|b| &b.ports) {
        let Some(l) = o.link(p) else { continue };
        let addrs: Vec<String> = crate::kinds::port::addrs_of(&o, l.index)
            .iter()
            .map(|a| a.net.to_string())
            .collect();
        let routes: Vec<Value> = crate::kinds::port::routes_of(&o, l.index)
            .iter()
            .filter(|r| r.dst.prefix() > 0 && r.table == 254)
            .map(|r| json!([r.dst.to_string(), r.gateway.map(|g| g.to_string())]))
            .collect();
        out.insert(
            p.clone(),
            json!({"mtu": l.mtu, "addrs": addrs, "routes": routes}),
        );
    }
    Ok(Value::Object(out).to_string())
}

fn parse(text: &str) -> BTreeMap<String, RealPort> {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (name, p) in v.as_object().into_iter().flatten() {
        let nets = |v: &Value| -> Vec<IpNetwork> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect()
        };
        let routes = p["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let dst = r[0].as_str()?.parse().ok()?;
                Some((dst, r[1].as_str().and_then(|g| g.parse().ok())))
            })
            .collect();
        out.insert(
            name.clone(),
            RealPort {
                mtu: p["mtu"].as_u64().and_then(|m| u32::try_from(m).ok()),
                addrs: nets(&p["addrs"]),
                routes,
            },
        );
    }
    out
}

/// An address of `net` other than `not` (the first host address that is neither).
fn other_in(net: IpNetwork, not: &[IpAddr]) -> Option<IpAddr> {
    net.iter()
        .skip(1)
        .take(64)
        .find(|a| !not.contains(a) && *a != net.network())
}

/// Port number `i` of the sandbox, as the file wants it and the host has it.
fn stand_in(b: &Bridge, i: usize, real: Option<&RealPort>) -> RealPort {
    let mut p = real.cloned().unwrap_or_default();
    if !b.take_addresses {
        p.addrs.clear();
        p.routes.clear();
    } else if real.is_none() {
        // Made up: 192.0.2.(16i+2)/28, the LAN host next to it.
        let base = u8::try_from(i % 16).unwrap_or(0) * 16;
        if let Ok(n) = format!("192.0.2.{}/28", base + 2).parse() {
            p.addrs.push(n);
        }
    }
    p.mtu = p.mtu.or(Some(b.mtu));
    p
}

/// The premise of a port whose addresses are taken: its LAN routes through the host, so the
/// host forwards (the real one does, or that LAN would not work today). The sandbox starts
/// with forwarding off; `try` then applies the file as if it said `ip_forward = true`, unless
/// it says otherwise.
pub(crate) fn forwarding_premise(t: &mut Topology) {
    if t.host.ip_forward.is_none() && t.bridges.iter().any(|b| b.take_addresses) {
        t.host.ip_forward = Some(true);
    }
}

/// Inside the sandbox: the stand-in NICs and their LANs. The checks of the LANs: the LAN host
/// reaches the host's address on its segment, each namespace on the bridge reaches the LAN
/// host (unless the bridge isolates), and a LAN routed through the host reaches the world
/// (unless the bridge denies egress).
pub(crate) fn build(t: &Topology, upstream: &str) -> Result<Vec<Check>> {
    let real = parse(&std::env::var(ENV_PORTS).unwrap_or_default());
    let mut checks = Vec::new();
    let mut i = 0;
    for b in &t.bridges {
        for port in &b.ports {
            let p = stand_in(b, i, real.get(port));
            i += 1;
            checks.extend(one(t, b, port, &p, upstream)?);
        }
    }
    Ok(checks)
}

const PLAIN: AddrOrig = AddrOrig {
    flags: 0,
    scope: 0,
    valid: u32::MAX,
    preferred: u32::MAX,
    brd: None,
    metric: 0,
};

/// An address of the LAN host, and the next hop of its default route through it.
type LanAddr = (IpNetwork, Option<IpAddr>);

/// One stand-in NIC `port` with its LAN; its checks.
fn one(t: &Topology, b: &Bridge, port: &str, p: &RealPort, upstream: &str) -> Result<Vec<Check>> {
    let ns = lan_ns(port);
    if port == super::uplink_name(t) {
        return Err(anyhow!(
            "{}: bridges.{}.ports: `try` keeps the name {port} for its simulated upstream; it cannot stand in for a port of that name",
            t.source.display(),
            b.name
        ));
    }
    if t.namespaces.iter().any(|n| n.name == ns) {
        return Err(anyhow!(
            "{}: namespaces.{ns}: `try` keeps this name for the LAN behind port {port}; rename the namespace",
            t.source.display()
        ));
    }
    let each = |_: &str, c: &mut Conn| c.run_all(&[msgs::mark_lo("sandbox:lan")]);
    for r in netns::create_many(std::slice::from_ref(&ns), &each) {
        r?;
    }
    let mtu = p.mtu.unwrap_or(b.mtu);
    make_port(&ns, port, mtu, p)?;
    let lan = lan_addrs(t, b, p)?;
    let dsts: Vec<IpNetwork> = p.routes.iter().map(|r| r.0).collect();
    netns::visit(std::slice::from_ref(&ns), &|_, c| {
        fill_lan(c, mtu, &lan, &dsts)
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| Ok(None))?;
    back_from_wan(p)?;
    Ok(checks(t, b, &ns, &lan, &p.addrs, upstream))
}

/// The stand-in: a veth `port` (its peer `eth0` in `ns`) with the port's addresses and
/// routes, as the host has them.
fn make_port(ns: &str, port: &str, mtu: u32, p: &RealPort) -> Result<()> {
    let fd = netns::open_ns(ns)?.ok_or_else(|| anyhow!("namespace {ns} vanished"))?;
    let mut host = Conn::open("host")?;
    host.run_all(&[
        msgs::create_veth(port, None, mtu, None, "eth0", &fd, None),
        msgs::up(port),
    ])?;
    drop(fd);
    let ix = super::index(&mut host, port)?;
    let mut reqs: Vec<_> = p
        .addrs
        .iter()
        .map(|a| msgs::add_addr_as(port, ix, *a, &PLAIN))
        .collect();
    for (dst, via) in &p.routes {
        // As the host's own (proto static), not nsfw's: nsfw takes it, it does not own it.
        let r = RouteSpec {
            orig: Some(RouteOrig {
                table: 254,
                proto: 4,
                scope: if via.is_some() { 0 } else { 253 },
                flags: 0,
                prefsrc: None,
                metrics: [0; 18],
            }),
            ..RouteSpec::unicast(*dst, *via, port)
        };
        reqs.push(msgs::replace_route(&r, ix));
    }
    host.run_all(&reqs)
}

/// The LAN host's addresses: beside each address of the port (its default route through it)
/// and the next hops of the port's routes; or, when the port carries none, the highest free
/// address of the bridge's own subnet.
fn lan_addrs(t: &Topology, b: &Bridge, p: &RealPort) -> Result<Vec<LanAddr>> {
    let mut lan: Vec<LanAddr> = Vec::new();
    let hops: Vec<IpAddr> = p.routes.iter().filter_map(|r| r.1).collect();
    for a in &p.addrs {
        let mut not = vec![a.ip()];
        not.extend(&hops);
        if let Some(h) = other_in(*a, &not) {
            lan.push((IpNetwork::new(h, a.prefix())?, Some(a.ip())));
        }
    }
    for h in &hops {
        if let Some(a) = p.addrs.iter().find(|a| a.contains(*h)) {
            lan.push((IpNetwork::new(*h, a.prefix())?, None));
        }
    }
    if p.addrs.is_empty()
        && let Some(s) = b.address
    {
        let used: Vec<std::net::Ipv4Addr> = std::iter::once(s.ip())
            .chain(
                t.namespaces
                    .iter()
                    .flat_map(|n| n.ifaces.iter().map(|i| i.address.ip())),
            )
            .collect();
        let top = u32::from(s.broadcast());
        let free = (1..64u32)
            .filter_map(|k| top.checked_sub(k))
            .map(std::net::Ipv4Addr::from)
            .find(|a| s.contains(*a) && *a != s.network() && !used.contains(a));
        if let Some(h) = free {
            lan.push((IpNetwork::new(IpAddr::V4(h), s.prefix())?, None));
        }
    }
    Ok(lan)
}

/// Inside the LAN namespace: `eth0` up at `mtu` with the LAN host's addresses and default
/// routes, and an address of each network routed through the port on its loopback.
fn fill_lan(c: &mut Conn, mtu: u32, lan: &[LanAddr], dsts: &[IpNetwork]) -> Result<()> {
    c.run_all(&[msgs::set_link("eth0", Some(mtu), None, true, None, false)])?;
    let (e, lo) = (super::index(c, "eth0")?, super::index(c, "lo")?);
    let mut reqs = Vec::new();
    for (a, _) in lan {
        reqs.push(msgs::add_addr_as("eth0", e, *a, &PLAIN));
    }
    for d in dsts {
        if let Some(first) = d.iter().nth(1) {
            let n = IpNetwork::new(first, if first.is_ipv4() { 32 } else { 128 })?;
            reqs.push(msgs::add_addr_as("lo", lo, n, &PLAIN));
        }
    }
    for g in lan.iter().filter_map(|(_, gw)| *gw) {
        let any: IpNetwork = if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" }.parse()?;
        reqs.push(msgs::replace_route(
            &RouteSpec::unicast(any, Some(g), "eth0"),
            e,
        ));
    }
    c.run_all(&reqs)
}

/// The simulated internet routes a LAN behind a port back through the host: nsfw does not
/// NAT it (what the LAN had before stays its own business), so only the rules decide.
fn back_from_wan(p: &RealPort) -> Result<()> {
    let nets: Vec<IpNetwork> = p
        .addrs
        .iter()
        .filter_map(|a| IpNetwork::new(a.network(), a.prefix()).ok())
        .chain(p.routes.iter().map(|r| r.0))
        .collect();
    if nets.is_empty() {
        return Ok(());
    }
    let via = |v6: bool| -> Result<IpAddr> {
        let s = if v6 {
            super::UPLINK_ADDR6
        } else {
            super::UPLINK_ADDR
        };
        Ok(s.parse::<IpNetwork>()?.ip())
    };
    let (v4, v6) = (via(false)?, via(true)?);
    netns::visit(&[super::WAN_NS.to_string()], &|_, c| {
        let e = super::index(c, "eth0")?;
        let reqs: Vec<_> = nets
            .iter()
            .map(|n| {
                let g = if n.is_ipv6() { v6 } else { v4 };
                msgs::replace_route(&RouteSpec::unicast(*n, Some(g), "eth0"), e)
            })
            .collect();
        c.run_all(&reqs)
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| Ok(None))?;
    Ok(())
}

fn checks(
    t: &Topology,
    b: &Bridge,
    ns: &str,
    lan: &[(IpNetwork, Option<IpAddr>)],
    port_addrs: &[IpNetwork],
    upstream: &str,
) -> Vec<Check> {
    let mut out = Vec::new();
    let Some((host_addr, _)) = lan.first().filter(|a| a.0.is_ipv4()) else {
        return out;
    };
    let gw = port_addrs
        .iter()
        .find(|a| a.is_ipv4())
        .map(|a| a.ip())
        .or(b.address.map(|a| IpAddr::V4(a.ip())));
    let check = |from: Origin, label: String, to: IpAddr| Check {
        from,
        to_label: label,
        to,
        probe: Probe::Ping,
        expect: true,
    };
    if let Some(g) = gw {
        out.push(check(
            Origin::Ns(ns.to_string()),
            format!("host ({})", b.name),
            g,
        ));
    }
    if !b.isolate {
        for n in t
            .namespaces
            .iter()
            .filter(|n| n.ifaces.iter().any(|i| i.bridge == b.name))
        {
            out.push(check(
                Origin::Ns(n.name.clone()),
                ns.to_string(),
                host_addr.ip(),
            ));
        }
    }
    if !port_addrs.is_empty()
        && !b.egress_deny
        && let Ok(w) = upstream.parse::<IpNetwork>()
    {
        out.push(check(Origin::Ns(ns.to_string()), "internet".into(), w.ip()));
    }
    out
}
