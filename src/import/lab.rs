//! A hand-built lab as the kernel holds it, read into the shape of a topology file: bridges
//! with their addresses, the veth pairs that join named namespaces to them, the namespaces'
//! addresses, routes and resolv.conf. Pure: it works on `plumbing::Observed`, so the unit
//! tests give it observations written by hand. What has no place in a topology file is kept
//! as a note, never dropped.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::owner;
use crate::plumbing::{FileObs, Link, NodeObs, Observed};
use crate::topology::Mac;

/// A bridge of the host, as a `[bridges.NAME]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bridge {
    pub address: Option<IpNetwork>,
    pub address6: Option<IpNetwork>,
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// Physical ports (no veth of a named namespace).
    pub ports: Vec<String>,
    /// Filled in from the firewall: `masquerade`, its `uplink`, `isolate`.
    pub masquerade: bool,
    pub uplink: Option<String>,
    pub isolate: bool,
    /// Its VXLAN tunnel, as the `vxlan` key (or that key commented out).
    pub vxlan: Option<super::vxlan::Tunnel>,
}

/// One veth pair: the namespace's end and the host's end on a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Iface {
    pub ifname: String,
    pub host_ifname: String,
    pub bridge: String,
    pub address: Option<IpNetwork>,
    pub address6: Option<IpNetwork>,
    pub mac: Option<Mac>,
    pub mtu: u32,
}

/// A named namespace, as a `[namespaces.NAME]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ns {
    pub ifaces: Vec<Iface>,
    /// The default route's next hop, when it is not the bridge's address (the file's default).
    pub gateway: Option<IpAddr>,
    /// The IPv6 default route's next hop.
    pub gateway6: Option<IpAddr>,
    pub routes: Vec<(IpNetwork, IpAddr)>,
    pub dns: Vec<String>,
    /// Filled in from the firewall: `publish` entries.
    pub publish: Vec<String>,
}

/// The whole lab, and the notes on what did not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lab {
    pub name: String,
    /// `net.ipv4.ip_forward` as the host has it (None: unreadable).
    pub ip_forward: Option<bool>,
    pub bridges: BTreeMap<String, Bridge>,
    pub namespaces: BTreeMap<String, Ns>,
    /// `[[deny]]` pairs (from, to), from the firewall.
    pub denies: Vec<(String, String)>,
    /// What could not be translated, each a line of the file's comments (and a warning).
    pub notes: Vec<String>,
    /// Remarks that are no loss (a default nsfw keeps anyway), comments only.
    pub remarks: Vec<String>,
    /// What nsfw already holds, by topology: its namespaces and bridges (not imported; that
    /// topology's own file describes them).
    pub held: BTreeMap<String, Vec<String>>,
}

/// Root qdiscs a link gets without anyone asking: nothing to translate.
const PLAIN_QDISCS: &[&str] = &[
    "noqueue",
    "noop",
    "pfifo_fast",
    "fq_codel",
    "mq",
    "fq",
    "pfifo",
];

fn foreign(alias: Option<&str>) -> bool {
    alias.and_then(owner::Mark::parse).is_none()
}

/// The first global address of each family on link `index`, and the others (which a file
/// cannot hold).
fn addrs_of(node: &NodeObs, index: u32) -> (Option<IpNetwork>, Option<IpNetwork>, Vec<IpNetwork>) {
    let (mut v4, mut v6, mut extra) = (None, None, Vec::new());
    for a in node.addrs.iter().filter(|a| a.index == index) {
        match a.net {
            IpNetwork::V6(n) if n.ip().segments()[0] & 0xffc0 == 0xfe80 => {}
            IpNetwork::V4(_) if v4.is_none() => v4 = Some(a.net),
            IpNetwork::V6(_) if v6.is_none() => v6 = Some(a.net),
            _ => extra.push(a.net),
        }
    }
    (v4, v6, extra)
}

/// Whether `net` lies within one of `subnets` (all when there are none).
fn wanted(net: Option<IpNetwork>, subnets: &[IpNetwork]) -> bool {
    subnets.is_empty()
        || net.is_some_and(|n| {
            subnets.iter().any(|s| {
                s.is_ipv4() == n.is_ipv4() && s.contains(n.network()) && s.prefix() <= n.prefix()
            })
        })
}

/// Reads the lab out of an observation of the whole host. `subnets`: only bridges whose
/// address lies in one of them (all when empty).
pub(crate) fn build(name: &str, o: &Observed, subnets: &[IpNetwork]) -> Lab {
    let mut lab = Lab {
        name: name.to_string(),
        ip_forward: o
            .host
            .sysctls
            .get(crate::compile::IP_FORWARD)
            .cloned()
            .flatten()
            .map(|v| v.trim() == "1"),
        ..Default::default()
    };
    let host = &o.host;
    let bridges: BTreeMap<u32, &Link> = host
        .links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("bridge") && foreign(l.alias.as_deref()))
        .filter(|l| wanted(addrs_of(host, l.index).0, subnets))
        .map(|l| (l.index, l))
        .collect();
    for (ns, why) in &o.unreachable {
        lab.notes.push(format!(
            "namespace {ns}: cannot be read ({why}); not imported"
        ));
    }
    for l in host
        .links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("bridge"))
    {
        if let Some(owner::Mark::Topology(t)) = l.alias.as_deref().and_then(owner::Mark::parse) {
            let held = lab.held.entry(t.to_string()).or_default();
            held.push(format!("bridge {}", l.name));
        }
    }
    for (ns_name, ns) in &o.namespaces {
        if !foreign(ns.owner.as_deref()) {
            if let Some(owner::Mark::Topology(t)) = ns.owner.as_deref().and_then(owner::Mark::parse)
            {
                let held = lab.held.entry(t.to_string()).or_default();
                held.push(format!("namespace {ns_name}"));
            }
            continue; // nsfw's own already
        }
        namespace(&mut lab, o, &bridges, ns_name, &ns.node);
    }
    add_bridges(&mut lab, host, &bridges, subnets);
    // Host ends on a bridge whose peer is no named namespace's: a container's, another tool's.
    for l in host
        .links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth"))
    {
        let on = l.master.and_then(|m| bridges.get(&m));
        let paired = lab
            .namespaces
            .values()
            .any(|n| n.ifaces.iter().any(|i| i.host_ifname == l.name));
        if let (Some(br), false) = (on, paired) {
            lab.notes.push(format!(
                "veth {} on bridge {}: its peer is in no named namespace (/run/netns); not translated",
                l.name, br.name
            ));
        }
    }
    lab.namespaces.retain(|_, n| !n.ifaces.is_empty());
    lab
}

/// The bridges with a namespace or a physical port on them (every bridge in `subnets` when
/// some are given), with their addresses, MTU, MAC and ports.
fn add_bridges(
    lab: &mut Lab,
    host: &NodeObs,
    bridges: &BTreeMap<u32, &Link>,
    subnets: &[IpNetwork],
) {
    for (ix, br) in bridges {
        let used = lab
            .namespaces
            .values()
            .any(|n| n.ifaces.iter().any(|i| i.bridge == br.name));
        let ports: Vec<String> = host
            .links
            .iter()
            .filter(|l| l.master == Some(*ix) && l.kind.is_none())
            .map(|l| l.name.clone())
            .collect();
        let (address, address6, extra) = addrs_of(host, *ix);
        let vxlan = super::vxlan::read(host, br, &mut lab.notes);
        if !used && ports.is_empty() && vxlan.is_none() && subnets.is_empty() {
            lab.remarks.push(format!(
                "bridge {} skipped: no named namespace and no physical port on it",
                br.name
            ));
            continue;
        }
        for a in extra {
            lab.notes.push(format!(
                "bridge {}: address {a} not translated (a bridge has one address per family)",
                br.name
            ));
        }
        for p in &ports {
            if host
                .addrs
                .iter()
                .any(|a| Some(a.index) == host.link(p).map(|l| l.index))
            {
                lab.notes.push(format!(
                    "bridge {}: port {p} carries addresses; `take_addresses = true` would move them to the bridge",
                    br.name
                ));
            }
        }
        lab.bridges.insert(
            br.name.clone(),
            Bridge {
                address,
                address6,
                mtu: br.mtu,
                mac: br.mac,
                ports,
                vxlan,
                ..Default::default()
            },
        );
    }
}

/// One namespace: its veths to the host's bridges, its routes and resolv.conf.
fn namespace(
    lab: &mut Lab,
    o: &Observed,
    bridges: &BTreeMap<u32, &Link>,
    name: &str,
    node: &NodeObs,
) {
    let host = &o.host;
    let mut ns = Ns::default();
    for l in &node.links {
        if l.name == "lo" {
            continue;
        }
        // The host end is the host's veth whose peer is this link, and this link's peer.
        let peer = (l.kind.as_deref() == Some("veth"))
            .then(|| {
                host.links.iter().find(|h| {
                    h.kind.as_deref() == Some("veth")
                        && h.peer_index == Some(l.index)
                        && l.peer_index == Some(h.index)
                })
            })
            .flatten();
        let Some(h) = peer else {
            lab.notes.push(format!(
                "namespace {name}: interface {} ({}) is no veth to the host; not translated",
                l.name,
                l.kind.as_deref().unwrap_or("device")
            ));
            continue;
        };
        let Some(br) = h.master.and_then(|m| bridges.get(&m)) else {
            if !foreign(h.alias.as_deref()) {
                continue;
            }
            lab.notes.push(format!(
                "namespace {name}: interface {} ↔ host {}: the host end is on no bridge imported; not translated",
                l.name, h.name
            ));
            continue;
        };
        let (address, address6, extra) = addrs_of(node, l.index);
        for a in extra {
            lab.notes.push(format!(
                "namespace {name}: address {a} on {} not translated (one address per family)",
                l.name
            ));
        }
        for (dev, q) in [(&l.name, &l.qdisc), (&h.name, &h.qdisc)] {
            if let Some(q) = q.as_deref().filter(|q| !PLAIN_QDISCS.contains(q)) {
                lab.notes.push(format!(
                    "namespace {name}: tc qdisc {q} on {dev} (and any filter under it) not translated"
                ));
            }
        }
        ns.ifaces.push(Iface {
            ifname: l.name.clone(),
            host_ifname: h.name.clone(),
            bridge: br.name.clone(),
            address,
            address6,
            mac: l.mac,
            mtu: l.mtu,
        });
    }
    if ns.ifaces.is_empty() {
        if node.links.iter().all(|l| l.name == "lo") {
            lab.remarks
                .push(format!("namespace {name} skipped: no interface but lo"));
        }
        return;
    }
    routes(lab, &mut ns, name, node);
    nones(lab, &ns, name, host, bridges);
    if let Some(f) = o.resolv.get(name) {
        dns(lab, &mut ns, name, f);
    }
    lab.namespaces.insert(name.to_string(), ns);
}

/// What a file cannot say is absent: no default route, no IPv6 on a bridge that has it.
/// nsfw would give them; `apply --adopt` does not (docs/adopt.md), a plain apply would.
fn nones(lab: &mut Lab, ns: &Ns, name: &str, host: &NodeObs, bridges: &BTreeMap<u32, &Link>) {
    let later = "apply --adopt leaves it so; a plain `nsfw apply` of this file would add it";
    if ns.gateway.is_none() && ns.ifaces.iter().any(|i| i.address.is_some()) {
        lab.notes.push(format!(
            "namespace {name}: no IPv4 default route (a file cannot say none); {later}"
        ));
    }
    for i in ns.ifaces.iter().filter(|i| i.address6.is_none()) {
        let v6 = bridges
            .iter()
            .find(|(_, b)| b.name == i.bridge)
            .is_some_and(|(ix, _)| addrs_of(host, *ix).1.is_some());
        if v6 {
            lab.notes.push(format!(
                "namespace {name}: no IPv6 address on {} though bridge {} has one (a file cannot say none); {later}",
                i.ifname, i.bridge
            ));
        }
    }
}

/// The namespace's routes: the default one as `gateway`, others as `routes`.
fn routes(lab: &mut Lab, ns: &mut Ns, name: &str, node: &NodeObs) {
    for r in node.routes.iter().filter(|r| !r.kernel) {
        let dev = r
            .oif
            .and_then(|i| node.name_of(i))
            .map(|d| format!(" dev {d}"))
            .unwrap_or_default();
        let kind = match r.kind {
            6 => "blackhole ",
            7 => "unreachable ",
            8 => "prohibit ",
            _ => "",
        };
        // The kernel's default metric: 0 for IPv4, 1024 for IPv6.
        let plain = r.metric == if r.dst.is_ipv6() { 1024 } else { 0 };
        let Some(via) = r.gateway.filter(|_| r.kind == 1 && plain) else {
            lab.notes.push(format!(
                "namespace {name}: route {kind}{}{}{dev}{} not translated (only unicast routes via a gateway are)",
                r.dst,
                r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                if r.metric != 0 { format!(" metric {}", r.metric) } else { String::new() }
            ));
            continue;
        };
        if r.dst.prefix() == 0 {
            if r.dst.is_ipv4() {
                ns.gateway = Some(via);
            } else if matches!(via, IpAddr::V6(v) if v.segments()[0] & 0xffc0 != 0xfe80) {
                ns.gateway6 = Some(via);
            } else {
                lab.notes.push(format!(
                    "namespace {name}: IPv6 default route via {via}{dev} not translated (a link-local next hop; gateway6 takes an address on the bridge's subnet)"
                ));
            }
        } else {
            ns.routes.push((r.dst, via));
        }
    }
}

/// `nameserver` lines as `dns`; anything else in the file is a note.
fn dns(lab: &mut Lab, ns: &mut Ns, name: &str, f: &FileObs) {
    let FileObs::Text(text) = f else {
        lab.notes.push(format!(
            "namespace {name}: /etc/netns/{name}/resolv.conf is not a plain file; not translated"
        ));
        return;
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        match line.strip_prefix("nameserver") {
            Some(a) if a.trim().parse::<IpAddr>().is_ok() => ns.dns.push(a.trim().to_string()),
            _ => lab.notes.push(format!(
                "namespace {name}: resolv.conf line {line:?} not translated (dns holds name servers only)"
            )),
        }
    }
}
