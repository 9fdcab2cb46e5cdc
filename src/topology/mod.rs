//! The topology file: TOML in, a fully resolved [`Topology`] out.
//!
//! Parsing walks the TOML tree by hand rather than through `serde(deny_unknown_fields)`
//! because serde stops at the first problem, and users deserve every error of a file at once,
//! each naming its key and value.

mod addr;
mod names;
mod namespaces;
mod policy;
mod publish;
mod syntax;
mod validate;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnetwork::{Ipv4Network, Ipv6Network};

pub use addr::{overlaps, subnet_of, subnet_of4};
pub use names::{
    MAX_IFNAME, check_ifname, check_topology_name, derived_mac, fnv64, host_ifname_for, parse_mac,
};
pub use policy::{Action, Endpoint, ICMP, ICMPV6, PolicyRule, PortSpec};
pub use publish::{Proto, Publish};

/// The most ports a Linux bridge takes (port numbers are 10 bits, 0 is reserved).
pub const MAX_BRIDGE_PORTS: usize = 1023;

/// A MAC address, stored as its six bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

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
pub enum BrNetfilter {
    /// Leave the setting alone; keep the rules right either way and report it.
    Auto,
    Off,
    On,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `None`: nsfw does not manage `net.ipv4.ip_forward`.
    pub ip_forward: Option<bool>,
    pub br_netfilter: BrNetfilter,
    /// Namespaces reach the host itself only where `[[allow]]` says so (and ping their
    /// gateway).
    pub protect: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    /// The gateway address with the subnet's prefix length.
    pub address: Ipv4Network,
    /// The IPv6 gateway address with its prefix; None: no IPv6 on this segment.
    pub address6: Option<Ipv6Network>,
    pub masquerade: bool,
    /// NAT66 out of the host (IPv6 is routed otherwise).
    pub masquerade6: bool,
    pub uplink: Option<String>,
    /// Every port of the bridge takes this MTU: one MTU per L2 segment.
    pub mtu: u32,
    /// Given in the file, or derived from the topology's and bridge's names: a bridge keeps
    /// its MAC when it is recreated, so the namespaces' ARP caches stay right.
    pub mac: Mac,
    /// Namespaces on the bridge cannot reach each other (unless allowed).
    pub isolate: bool,
    /// `egress = "deny"`: namespaces on the bridge cannot open connections to the world
    /// (unless allowed).
    pub egress_deny: bool,
    /// `overlap = "allow"`: the subnet may overlap a route the host already has or another
    /// topology's subnet (the user knows why).
    pub overlap_allowed: bool,
}

impl Bridge {
    /// The subnet behind the bridge, e.g. 10.10.0.0/24.
    pub fn subnet(&self) -> Ipv4Network {
        subnet_of4(&self.address)
    }

    /// The IPv6 subnet behind the bridge, if it has one.
    pub fn subnet6(&self) -> Option<Ipv6Network> {
        self.address6
            .and_then(|a| Ipv6Network::new(a.network(), a.prefix()).ok())
    }
}

/// One interface of a namespace: a veth pair whose host end is a port of `bridge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
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
    /// The bridge's MTU (one MTU per L2 segment).
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// The v1 shorthand (`bridge`, `address`, ... directly on the namespace) is one interface.
    pub ifaces: Vec<Iface>,
    /// The default route's next hop; `None`: no default route.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 default route's next hop; `None`: none.
    pub gateway6: Option<Ipv6Addr>,
    pub dns: Vec<IpAddr>,
    /// Ports of the namespace reachable at ports of the host.
    pub publish: Vec<Publish>,
}

impl Namespace {
    /// The interface the namespace's first (v1: only) address is on.
    pub fn primary(&self) -> Option<&Iface> {
        self.ifaces.first()
    }
}

/// A topology file, validated and with every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
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
}

impl Topology {
    /// The mark nsfw puts on everything it creates for this topology (a link alias).
    pub fn owner_mark(&self) -> String {
        owner_mark(&self.name)
    }

    pub fn bridge(&self, name: &str) -> Option<&Bridge> {
        self.bridges.iter().find(|b| b.name == name)
    }

    /// Every namespace interface on bridge `name`, with its namespace.
    pub fn ports_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a Namespace, &'a Iface)> {
        self.namespaces
            .iter()
            .flat_map(|n| n.ifaces.iter().map(move |i| (n, i)))
            .filter(move |(_, i)| i.bridge == name)
    }

    /// The text of `/etc/netns/<ns>/resolv.conf`, if the namespace names DNS servers.
    pub fn resolv_conf(&self, ns: &Namespace) -> Option<String> {
        if ns.dns.is_empty() {
            return None;
        }
        let mut s = format!("{}\n", resolv_marker(&self.name));
        for d in &ns.dns {
            s.push_str(&format!("nameserver {d}\n"));
        }
        Some(s)
    }
}

/// `nsfw:<name>`: the alias nsfw gives links (and the `lo` of namespaces) it owns.
pub fn owner_mark(name: &str) -> String {
    format!("nsfw:{name}")
}

/// The topology name in an owner mark, if it is one.
pub fn mark_owner(mark: &str) -> Option<&str> {
    mark.strip_prefix("nsfw:")
}

/// The first line of every resolv.conf nsfw writes: how flush knows the file is its own.
pub fn resolv_marker(name: &str) -> String {
    format!("# written by nsfw for topology {name}; nsfw apply rewrites it, nsfw flush removes it")
}

/// The topology whose marker starts `content`, if any.
pub fn resolv_owner(content: &str) -> Option<&str> {
    let first = content.lines().next()?;
    let rest = first.strip_prefix("# written by nsfw for topology ")?;
    rest.split(';').next()
}

/// Every problem found in a file, each already formatted as `FILE: key = value: why`.
#[derive(Debug)]
pub struct Errors(pub Vec<String>);

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
pub fn load(path: &Path) -> Result<Topology, Errors> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            Errors(vec![format!(
                "standard input: cannot read the topology: {e}"
            )])
        })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            Errors(vec![format!(
                "{}: cannot read the topology file: {e}",
                path.display()
            )])
        })?
    };
    parse(&text, path)
}

/// Parses and validates topology text; `source` names it in messages.
pub fn parse(text: &str, source: &Path) -> Result<Topology, Errors> {
    validate::parse(text, source)
}
