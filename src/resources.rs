//! The kernel resources nsfw manages, as `compile` wants them: per network namespace (the
//! host and every named one) the links, addresses, routes and sysctls it must hold, and the
//! files beside them. Nothing here knows what a topology file says; `plan` compares these
//! with what `plumbing::observe` reads back, resource by resource.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::topology::Mac;

/// Where a resource lives: the host, or a named namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Place {
    Host,
    Ns(String),
}

impl Place {
    /// How an interface in this place is named in messages: `br0`, `ns1:eth0`.
    pub(crate) fn link(&self, name: &str) -> String {
        match self {
            Place::Host => name.to_string(),
            Place::Ns(ns) => format!("{ns}:{name}"),
        }
    }

    pub(crate) fn ns(&self) -> Option<&str> {
        match self {
            Place::Host => None,
            Place::Ns(n) => Some(n),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Host => write!(f, "host"),
            Place::Ns(n) => write!(f, "{n}"),
        }
    }
}

/// What a link is, and what it is made with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Bridge,
    /// The host end of a veth pair whose other end is `peer` in namespace `peer_ns`: the
    /// pair is made in one step, from the host.
    Veth {
        peer_ns: String,
        peer: String,
        /// The file gives the host end's MAC (`host_mac`): it is kept like the others.
        /// Otherwise the derived MAC it is made with only tells a half-made pair of an
        /// interrupted run from someone else's link.
        keep_mac: bool,
    },
    /// The namespace end of a pair whose host end is `host`: made with it.
    Peer {
        host: String,
    },
    /// An existing interface nsfw does not own, taken as a port of its `master` bridge;
    /// `take_addresses`: its addresses (and default route) move to the bridge meanwhile.
    Port {
        take_addresses: bool,
        /// The file sets the bridge's MTU: the port is set to it (else a port of another
        /// MTU is refused).
        mtu_set: bool,
    },
    /// A child of a host interface nsfw does not own (`uplink`), with its own MAC on the
    /// uplink's LAN: made from the host, in the place it is specified in (a namespace, or
    /// the host for the shim). `tap`: a macvtap.
    Macvlan {
        uplink: String,
        mode: crate::topology::MacvlanMode,
        tap: bool,
    },
    /// A VXLAN tunnel (a port of its `master` bridge): VNI `id`, from this host's `local`
    /// address, over UDP `port`. Its peers are FDB entries (`Node::fdb`).
    Vxlan {
        id: u32,
        local: IpAddr,
        port: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkSpec {
    pub name: String,
    /// The key of the file it comes from, for messages: `bridges.br0`.
    pub origin: String,
    pub kind: LinkKind,
    /// 0: the kernel's choice, not compared (a macvlan without `mtu` takes its uplink's).
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// The bridge this link is a port of, in the same place.
    pub master: Option<String>,
    /// The link carries nsfw's mark (its alias): links in the host do; inside a namespace
    /// nsfw owns, the namespace's mark covers them.
    pub marked: bool,
    /// `addrgenmode none`: no IPv6 link-local address (see `plumbing::msgs`).
    pub no_link_local: bool,
    /// For a bridge: its bridged traffic passes the IP hooks (the bridge's own
    /// nf_call_iptables/ip6tables, whatever the host-wide sysctl says), so the policy judges
    /// traffic between namespaces on it.
    pub nf_call: bool,
    /// For the host end of a veth on a bridge: hairpin mode on its bridge port, so that a
    /// frame may leave by the port it came in. A namespace calling its own published port
    /// through the host is DNATed back to itself inside the bridge when br_netfilter hands
    /// bridged frames to the IP hooks, and that frame must go back out the port it arrived on.
    pub hairpin: bool,
    /// For the host end of a veth on an `isolate = true` bridge: the port is isolated
    /// (BR_ISOLATED), so no frame of any ethertype passes between two isolated namespaces.
    pub isolated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RouteSpec {
    pub dst: IpNetwork,
    pub via: Option<IpAddr>,
    pub dev: String,
    /// The route's priority (`metric`): 0 for IPv4, 1024 for IPv6 by default.
    pub metric: u32,
    /// RTN_*: 1 unicast; 6 blackhole, 7 unreachable, 8 prohibit are only ever found.
    pub kind: u8,
    /// The preferred source (RTA_PREFSRC, `src`) of one of nsfw's routes: the host's route to
    /// a macvlan child through its shim leaves from the shim's link-local address over IPv6
    /// (`compile`), from the uplink's own address on the child's subnet over IPv4 (the plan:
    /// it is observed). A physical port's route keeps its own in `orig`.
    pub src: Option<IpAddr>,
    /// None: one of nsfw's (main table, proto 110). Some: a route of a physical port,
    /// moved or given back as it was (`plan::ports`).
    pub orig: Option<RouteOrig>,
}

pub(crate) const RTN_UNICAST: u8 = 1;

/// The `proto` of the routes nsfw adds (`ip route` shows `proto 110`): tells them from
/// everybody else's.
pub(crate) const ROUTE_PROTO: u8 = 110;

/// The default route's destination in each family, 0.0.0.0/0 and ::/0 (checked when
/// compiling nsfw).
pub(crate) const DEFAULT_V4: IpNetwork = match Ipv4Network::new_checked(Ipv4Addr::UNSPECIFIED, 0) {
    Some(n) => IpNetwork::V4(n),
    None => panic!("0.0.0.0/0 is a valid network"),
};
pub(crate) const DEFAULT_V6: IpNetwork = match Ipv6Network::new_checked(Ipv6Addr::UNSPECIFIED, 0) {
    Some(n) => IpNetwork::V6(n),
    None => panic!("::/0 is a valid network"),
};

/// What a route someone else made carries besides destination, next hop and metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RouteOrig {
    pub table: u32,
    /// RTPROT_*, RT_SCOPE_*, RTNH_F_*.
    pub proto: u8,
    pub scope: u8,
    pub flags: u32,
    pub prefsrc: Option<IpAddr>,
    /// RTA_METRICS by RTAX_* number (0: not set).
    pub metrics: crate::plumbing::rtax::Metrics,
}

/// What an address someone else made carries besides itself (IFA_F_*, scope, lifetimes in
/// seconds, u32::MAX forever).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AddrOrig {
    pub flags: u32,
    pub scope: u8,
    pub valid: u32,
    pub preferred: u32,
    /// IFA_BROADCAST as it was (None: none), IFA_RT_PRIORITY (0: none).
    pub brd: Option<std::net::Ipv4Addr>,
    pub metric: u32,
}

impl RouteSpec {
    /// A unicast route with the family's default metric.
    pub(crate) fn unicast(dst: IpNetwork, via: Option<IpAddr>, dev: &str) -> RouteSpec {
        RouteSpec {
            dst,
            via,
            dev: dev.to_string(),
            metric: Self::default_metric(dst),
            kind: RTN_UNICAST,
            src: None,
            orig: None,
        }
    }

    pub(crate) fn default_metric(dst: IpNetwork) -> u32 {
        if dst.is_ipv6() { 1024 } else { 0 }
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RTN_UNICAST => {}
            6 => write!(f, "blackhole ")?,
            7 => write!(f, "unreachable ")?,
            8 => write!(f, "prohibit ")?,
            k => write!(f, "type {k} ")?,
        }
        if self.dst.prefix() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if self.kind == RTN_UNICAST {
            write!(f, " dev {}", self.dev)?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if let Some(o) = &self.orig {
            if o.proto != ROUTE_PROTO {
                write!(f, " proto {}", o.proto)?;
            }
            if o.table != 254 {
                write!(f, " table {}", o.table)?;
            }
        }
        if self.metric != Self::default_metric(self.dst) {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SysctlSpec {
    pub value: String,
    /// A host-wide setting: its value before nsfw is recorded and put back by flush when no
    /// topology needs it any more. Settings of nsfw's own links and namespaces go with them.
    pub restore: bool,
    /// The value a link made in this run starts with: no step when it is the one wanted.
    pub fresh: Option<&'static str>,
}

/// What one network namespace must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub links: BTreeMap<String, LinkSpec>,
    /// (interface, address with prefix).
    pub addrs: BTreeSet<(String, IpNetwork)>,
    /// By destination (main table).
    pub routes: BTreeMap<IpNetwork, RouteSpec>,
    /// By key, `net.ipv4.ip_forward`.
    pub sysctls: BTreeMap<String, SysctlSpec>,
    /// Each interface's impairment (empty: none), for the interfaces nsfw configures.
    pub netem: BTreeMap<String, crate::netem::Netem>,
    /// The interfaces with a rate limit (a tbf), by name.
    pub rates: BTreeMap<String, crate::rate::Rate>,
    /// Static forwarding entries of VXLAN links: (link, remote underlay address), each the
    /// all-zeros MAC (`bridge fdb append 00:00:00:00:00:00 dev vx100 dst 192.0.2.11`).
    pub fdb: BTreeSet<(String, IpAddr)>,
}

/// Everything a topology needs of the kernel and the file system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// The topology's name, and its mark (`nsfw:<name>`).
    pub topology: String,
    pub mark: String,
    /// The file it was compiled from, for messages.
    pub source: String,
    pub host: Node,
    /// The named namespaces nsfw must own, and what each holds.
    pub namespaces: BTreeMap<String, Node>,
    /// `/etc/netns/<ns>/resolv.conf` contents, by namespace.
    pub resolv: BTreeMap<String, String>,
    /// Namespaces whose resolv.conf nsfw writes over one it did not write
    /// (`dns_policy = "replace"`, `apply --force`); the others' is left alone and named.
    pub resolv_replace: BTreeSet<String>,
    /// Bridges whose subnet may overlap routes the host already has (`overlap = "allow"`).
    pub overlap_ok: BTreeSet<String>,
}

impl Desired {}
