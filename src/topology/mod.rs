//! The topology file: TOML in, a fully resolved [`Topology`] out.
//!
//! Parsing walks the TOML tree by hand rather than through `serde(deny_unknown_fields)`
//! because serde stops at the first problem, and users deserve every error of a file at once,
//! each naming its key and value.

mod addr;
mod egress;
mod identity;
mod ifaces;
mod macvlan;
mod names;
mod namespaces;
mod origin;
mod policy;
mod publish;
mod routes;
mod syntax;
mod tree;
mod validate;
mod verify;
mod vxlan;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

pub(crate) use addr::{overlaps, subnet_of, subnet_of4};
pub(crate) use macvlan::{Macvlan, MacvlanMode, shim};
pub(crate) use names::{check_ifname, check_topology_name, derived_mac, fnv64, parse_mac};
pub(crate) use origin::{Entry, Origins};
pub(crate) use policy::{Action, Endpoint, ICMP, ICMPV6, PolicyRule, PortSpec};
pub(crate) use publish::{Proto, Publish};
pub(crate) use routes::StaticRoute;
pub(crate) use verify::Verify;
pub(crate) use vxlan::Vxlan;
pub(crate) use vxlan::{DEFAULT_PORT as VXLAN_PORT, UNDERLAY_MTU};

/// The most ports a Linux bridge takes (port numbers are 10 bits, 0 is reserved).
pub(crate) const MAX_BRIDGE_PORTS: usize = 1023;

/// A MAC address, stored as its six bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// How nsfw treats `net.bridge.bridge-nf-call-iptables` in the host namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BrNetfilter {
    /// Leave the setting alone; keep the rules right either way and report it.
    Auto,
    Off,
    On,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Host {
    /// `None`: nsfw does not manage `net.ipv4.ip_forward`.
    pub ip_forward: Option<bool>,
    pub br_netfilter: BrNetfilter,
    /// Namespaces reach the host itself only where `[[allow]]` says so (and ping their
    /// gateway).
    pub protect: bool,
    /// `[host] routes`: subnets behind router namespaces, each via an address on one of the
    /// bridges the host has an address on.
    pub routes: Vec<StaticRoute>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bridge {
    pub name: String,
    /// The gateway address with the subnet's prefix length; None: an L2-only segment, where
    /// the host has no address (and routes nothing).
    pub address: Option<Ipv4Network>,
    /// The IPv6 gateway address with its prefix; None: no IPv6 on this segment.
    pub address6: Option<Ipv6Network>,
    pub masquerade: bool,
    /// NAT66 out of the host (IPv6 is routed otherwise).
    pub masquerade6: bool,
    pub uplink: Option<String>,
    /// Every port of the bridge takes this MTU: one MTU per L2 segment.
    pub mtu: u32,
    /// The file says `mtu`: physical ports are set to it. Otherwise a port whose MTU is not
    /// the default is refused (nothing guesses which of the two the user meant).
    pub mtu_set: bool,
    /// Given in the file, or derived from the topology's and bridge's names: a bridge keeps
    /// its MAC when it is recreated, so the namespaces' ARP caches stay right.
    pub mac: Mac,
    /// Namespaces on the bridge cannot reach each other (unless allowed).
    pub isolate: bool,
    /// `egress = "deny"`: namespaces on the bridge cannot open connections to the world
    /// (unless allowed).
    pub egress_deny: bool,
    /// `egress_via`: the host's interfaces new connections from the bridge may leave
    /// through (empty: any).
    pub egress_via: Vec<String>,
    /// `overlap = "allow"`: the subnet may overlap a route the host already has or another
    /// topology's subnet (the user knows why).
    pub overlap_allowed: bool,
    /// `ports`: existing interfaces (not nsfw's) enslaved to the bridge.
    pub ports: Vec<String>,
    /// `take_addresses`: a port's addresses (and default route) move to the bridge while it is
    /// enslaved, and back when it is released.
    pub take_addresses: bool,
    /// With `take_addresses`: the networks of the addresses the ports carried and the
    /// destinations of the routes through them — a LAN that routed through the host keeps
    /// doing so through the bridge, so its addresses are sources the bridge may send. Not in
    /// the file: read from the host (and the record) when the firewall is planned.
    pub lan: Vec<IpNetwork>,
    /// `vxlan`: the segment stretched to other hosts (None: this host's alone).
    pub vxlan: Option<Vxlan>,
}

impl Bridge {
    /// The host's address on the segment, in one family.
    pub(crate) fn gateway_addr(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.address6.map(|a| IpAddr::V6(a.ip()))
        } else {
            self.address.map(|a| IpAddr::V4(a.ip()))
        }
    }

    /// An L2-only segment: the host has no address on it.
    pub(crate) fn l2_only(&self) -> bool {
        self.address.is_none() && self.address6.is_none()
    }
}

/// One interface of a namespace: a veth pair whose host end is a port of `bridge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Iface {
    /// Where its keys are in the file: `namespaces.ns1` (the shorthand) or
    /// `namespaces.r.interfaces.eth1`.
    pub key: String,
    /// The interface's name inside the namespace.
    pub ifname: String,
    pub bridge: String,
    pub address: Ipv4Network,
    /// Its IPv6 address when its bridge has IPv6.
    pub address6: Option<Ipv6Network>,
    /// The host end of the veth pair, a port of the bridge.
    pub host_ifname: String,
    /// The namespace end's MAC: given, or derived from the names like a bridge's.
    pub mac: Mac,
    /// `host_mac`: the host end's MAC; None: derived from the names.
    pub host_mac: Option<Mac>,
    /// The bridge's MTU (one MTU per L2 segment).
    pub mtu: u32,
    /// `latency`, `jitter`, `loss`: a netem qdisc on the namespace's end.
    pub netem: crate::netem::Netem,
    /// `rate`, `burst`, `ceil`: a tbf on both ends (each limits what it sends).
    pub rate: Option<crate::rate::Rate>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Namespace {
    pub name: String,
    /// The v1 shorthand (`bridge`, `address`, ... directly on the namespace) is one interface.
    pub ifaces: Vec<Iface>,
    /// Its interfaces on host uplinks (`macvlan = "UPLINK"`): on the LAN, not on a bridge.
    pub macvlans: Vec<Macvlan>,
    /// The default route's next hop; `None`: no default route.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 default route's next hop; `None`: none.
    pub gateway6: Option<Ipv6Addr>,
    /// `routes`: static routes, each via an address on a subnet of one of its interfaces.
    pub routes: Vec<StaticRoute>,
    /// `forward = true`: the namespace routes between its interfaces (ip_forward inside).
    pub forward: bool,
    /// `masquerade = "IFNAME"`: NAT out of that interface, with nsfw's table inside the
    /// namespace judging what comes in through it.
    pub masquerade: Option<String>,
    pub dns: Vec<IpAddr>,
    /// `dns_policy = "replace"`: a resolv.conf nsfw did not write is replaced, not left alone.
    pub dns_replace: bool,
    /// Ports of the namespace reachable at ports of the host.
    pub publish: Vec<Publish>,
    /// `spoof_ok`: source addresses the namespace may send (and answer ARP/ND for) besides
    /// its own, on each of its interfaces.
    pub spoof_ok: Vec<IpNetwork>,
}

impl Namespace {
    /// The interface the namespace's first (v1: only) address is on.
    pub(crate) fn primary(&self) -> Option<&Iface> {
        self.ifaces.first()
    }

    /// The interface with an address in the subnet of `ip` (directly connected), if any.
    pub(crate) fn iface_towards(&self, ip: IpAddr) -> Option<&Iface> {
        self.ifaces.iter().find(|i| match ip {
            IpAddr::V4(_) => IpNetwork::V4(i.address).contains(ip),
            IpAddr::V6(_) => i.address6.is_some_and(|a| IpNetwork::V6(a).contains(ip)),
        })
    }

    /// The interface (a bridge port's or an uplink child's) with an address in the subnet of
    /// `ip`: where a route to it leaves.
    pub(crate) fn dev_towards(&self, ip: IpAddr) -> Option<&str> {
        if let Some(i) = self.iface_towards(ip) {
            return Some(&i.ifname);
        }
        let on = |m: &&Macvlan| match ip {
            IpAddr::V4(_) => IpNetwork::V4(m.address).contains(ip),
            IpAddr::V6(_) => m.address6.is_some_and(|a| IpNetwork::V6(a).contains(ip)),
        };
        self.macvlans.iter().find(on).map(|m| m.ifname.as_str())
    }

    /// Every address of the namespace in one family.
    pub(crate) fn addrs(&self, v6: bool) -> impl Iterator<Item = IpAddr> + '_ {
        let ports = self.ifaces.iter().map(|i| (i.address, i.address6));
        let children = self.macvlans.iter().map(|m| (m.address, m.address6));
        ports.chain(children).filter_map(move |(a4, a6)| {
            if v6 {
                a6.map(|a| IpAddr::V6(a.ip()))
            } else {
                Some(IpAddr::V4(a4.ip()))
            }
        })
    }
}

/// A topology file, validated and with every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Topology {
    pub name: String,
    /// Where it came from, for messages.
    pub source: PathBuf,
    pub host: Host,
    pub bridges: Vec<Bridge>,
    pub namespaces: Vec<Namespace>,
    /// `[[allow]]` and `[[deny]]`, in file order (their order decides nothing).
    pub policy: Vec<PolicyRule>,
    /// Things worth saying about the file that are not errors.
    pub warnings: Vec<String>,
    /// `[verify]`: what `nsfw verify` checks beyond what the file implies.
    pub verify: Verify,
    /// The line of each entry in the file, for messages that blame one.
    pub origins: Origins,
}

impl Topology {
    /// `[[allow]] #3 at lab.toml:42`.
    pub(crate) fn origin(&self, entry: &Entry) -> String {
        self.origins.at(entry)
    }

    pub(crate) fn bridge(&self, name: &str) -> Option<&Bridge> {
        self.bridges.iter().find(|b| b.name == name)
    }

    /// Every namespace interface on bridge `name`, with its namespace.
    pub(crate) fn ports_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a Namespace, &'a Iface)> {
        self.namespaces
            .iter()
            .flat_map(|n| n.ifaces.iter().map(move |i| (n, i)))
            .filter(move |(_, i)| i.bridge == name)
    }

    /// A segment's subnet in one family: the host's on it, or on an L2-only bridge the one its
    /// ports' addresses share.
    pub(crate) fn segment_subnet(&self, bridge: &str, v6: bool) -> Option<IpNetwork> {
        let b = self.bridge(bridge)?;
        let own = if v6 {
            b.address6.map(IpNetwork::V6)
        } else {
            b.address.map(IpNetwork::V4)
        };
        let from_port = || {
            self.ports_of(bridge).find_map(|(_, i)| {
                if v6 {
                    i.address6.map(IpNetwork::V6)
                } else {
                    Some(IpNetwork::V4(i.address))
                }
            })
        };
        own.or_else(from_port).map(|n| subnet_of(&n))
    }

    /// Every subnet whose traffic may come out of `bridge` (what anti-spoofing lets through,
    /// and what the bridge's masquerade covers): its own, the subnets the host routes through
    /// a next hop on it (`[host] routes`), and those behind the routing namespaces on it
    /// (their other segments and their routes' destinations). Default routes add nothing.
    pub(crate) fn sources_via(&self, bridge: &str, v6: bool) -> Vec<IpNetwork> {
        let mut out: Vec<IpNetwork> = self.segment_subnet(bridge, v6).into_iter().collect();
        let mut add = |n: IpNetwork| {
            if n.prefix() > 0 && !out.contains(&n) {
                out.push(n);
            }
        };
        if let Some(own) = self.segment_subnet(bridge, v6) {
            for r in &self.host.routes {
                if r.to.is_ipv6() == v6 && own.contains(r.via) {
                    add(r.to);
                }
            }
        }
        for n in self.namespaces.iter().filter(|n| n.forward) {
            if !n.ifaces.iter().any(|i| i.bridge == bridge) {
                continue;
            }
            for i in n.ifaces.iter().filter(|i| i.bridge != bridge) {
                if let Some(s) = self.segment_subnet(&i.bridge, v6) {
                    add(s);
                }
            }
            for r in n.routes.iter().filter(|r| r.to.is_ipv6() == v6) {
                add(r.to);
            }
        }
        out
    }

    /// The sources anti-spoofing lets in from `bridge`: [`Self::sources_via`], and the
    /// networks its taken ports brought (`lan`). Not masqueraded by nsfw, and not the
    /// topology's own: the LAN keeps whatever NAT it had, and stays "world" to the policy.
    pub(crate) fn trusted_sources(&self, bridge: &str, v6: bool) -> Vec<IpNetwork> {
        let mut out = self.sources_via(bridge, v6);
        let lan = self.bridges.iter().filter(|b| b.name == bridge);
        for n in lan.flat_map(|b| &b.lan) {
            if n.is_ipv6() == v6 && !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }

    /// The text of `/etc/netns/<ns>/resolv.conf`, if the namespace names DNS servers.
    pub(crate) fn resolv_conf(&self, ns: &Namespace) -> Option<String> {
        if ns.dns.is_empty() {
            return None;
        }
        let mut s = String::new();
        for d in &ns.dns {
            s.push_str(&format!("nameserver {d}\n"));
        }
        Some(crate::owner::resolv_file(&self.name, &s))
    }
}

/// Every problem found in a file, each already formatted as `FILE: key = value: why`.
#[derive(Debug)]
pub(crate) struct Errors(pub Vec<String>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                write!(f, "error: ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// Reads and validates a topology file (`-`: standard input).
pub(crate) fn load(path: &Path) -> Result<Topology, Errors> {
    parse(&read(path)?, path)
}

/// The text of the topology file at `path` (`-`: standard input), as [`load`] reads it.
pub(crate) fn read(path: &Path) -> Result<String, Errors> {
    if path == Path::new("-") {
        read_limited(std::io::stdin())
            .map_err(|e| format!("standard input: cannot read the topology: {e}"))
    } else {
        std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(read_limited)
            .map_err(|e| format!("{}: cannot read the topology file: {e}", path.display()))
    }
    .map_err(|e| Errors(vec![e]))
}

/// A topology file is read up to this size: 10,000 namespaces take about 1 MiB, and a path
/// such as /dev/zero must end in an error, not in all the memory there is.
const MAX_FILE: u64 = 64 << 20;

fn read_limited(r: impl std::io::Read) -> Result<String, String> {
    let mut s = String::new();
    let n = std::io::Read::read_to_string(&mut std::io::Read::take(r, MAX_FILE + 1), &mut s)
        .map_err(|e| e.to_string())?;
    if n as u64 > MAX_FILE {
        return Err(format!(
            "it is larger than {} MiB, which no topology needs",
            MAX_FILE >> 20
        ));
    }
    Ok(s)
}

/// Parses and validates topology text; `source` names it in messages.
pub(crate) fn parse(text: &str, source: &Path) -> Result<Topology, Errors> {
    validate::parse(text, source)
}
