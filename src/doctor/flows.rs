//! The traffic a topology lives on, as another table's base chain sees it: for each bridge,
//! new connections out to the world, the replies coming back, connections to published ports,
//! the namespaces talking to the host and the host to them, and (with br_netfilter) the
//! namespaces of one bridge talking to each other. Each flow says what a chain can know of a
//! packet at one hook: its interfaces (some unset at that hook), addresses, conntrack state.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::topology::Topology;
use nft::{Family, Hook, ct_state};

/// An interface as a flow knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Iface {
    /// One of these (the topology's bridge, its ports, or the way out it names).
    Is(Vec<String>),
    /// Some interface that is not the topology's.
    Other,
    /// Not set at this hook (no output interface before routing, no input one for the host's
    /// own packets): the name is "".
    Unset,
}

/// An address as a flow knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    /// Somewhere in this network (a bridge's subnet, or one address).
    In(IpNetwork),
    /// Somewhere outside every subnet of the topology.
    World,
    /// Not known here (a published port before its DNAT, a reply before its un-NAT).
    Unknown,
}

/// What an accept for a flow would match on, to let exactly the topology's traffic through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sel {
    Iif(Vec<String>),
    Oif(Vec<String>),
    Daddr(IpNetwork),
}

/// A kind of traffic at one hook.
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    /// For people: "br0 → the world (new connections)".
    pub label: String,
    pub hook: Hook,
    pub v6: bool,
    pub iif: Iface,
    pub oif: Iface,
    pub saddr: Addr,
    pub daddr: Addr,
    /// ct_state::NEW or ESTABLISHED.
    pub ct: u32,
    /// A connection to a published port (ct status dnat).
    pub dnat: bool,
    /// (protocol number, destination port) when known.
    pub l4: Option<(u8, u16)>,
    /// Bridge family: the interfaces are the bridge's ports.
    pub bridged: bool,
    /// Every subnet of the topology (what "the world" is not).
    pub ours: Vec<IpNetwork>,
    /// Every interface name of the topology (what `Iface::Other` is not).
    pub our_ifaces: Vec<String>,
    /// How an accept would single it out: the topology's side of it.
    pub accept: Option<Sel>,
    /// Traffic the topology can do without (between the namespaces and the host itself: a
    /// ping to the gateway, DNS on it): losing it weakens the topology rather than breaks it.
    pub minor: bool,
}

impl Flow {
    fn minor(mut self) -> Flow {
        self.minor = true;
        self
    }

    /// The accept singles out the topology's side: traffic coming from its interface, else
    /// going to it (where the hook knows the way out), else to its subnet.
    fn with_accept(mut self, ours_in: bool) -> Flow {
        let own = |i: &Iface| match i {
            Iface::Is(n) => Some(n.clone()),
            _ => None,
        };
        self.accept = match (ours_in, own(&self.iif), own(&self.oif), &self.daddr) {
            (true, Some(n), _, _) => Some(Sel::Iif(n)),
            (false, _, Some(n), _) => Some(Sel::Oif(n)),
            (false, _, None, Addr::In(net)) => Some(Sel::Daddr(*net)),
            _ => None,
        };
        self
    }
}

/// The way out to the world in one family: the interface of the default route.
pub(crate) type Uplinks = (Option<String>, Option<String>);

/// Hooks a kind of traffic passes, with what each can see of it.
const THROUGH: [Hook; 3] = [Hook::Prerouting, Hook::Forward, Hook::Postrouting];

/// Which families of table see a flow of IP version `v6`.
pub(crate) fn family_sees(f: Family, v6: bool) -> bool {
    match f {
        Family::Inet | Family::Bridge => true,
        Family::Ip => !v6,
        Family::Ip6 => v6,
        // A device's own hooks: the flows here are judged at the IP and bridge hooks.
        Family::Netdev => false,
    }
}

struct Ctx<'a> {
    t: &'a Topology,
    ours: Vec<IpNetwork>,
    our_ifaces: Vec<String>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn flow(
        &self,
        label: String,
        hook: Hook,
        v6: bool,
        (iif, oif): (Iface, Iface),
        (saddr, daddr): (Addr, Addr),
        ct: u32,
        dnat: bool,
    ) -> Flow {
        // What a hook cannot know: no output interface before routing, no input interface
        // for the host's own packets.
        let oif = if matches!(hook, Hook::Prerouting | Hook::Input) {
            Iface::Unset
        } else {
            oif
        };
        Flow {
            label,
            hook,
            v6,
            iif,
            oif,
            saddr,
            daddr,
            ct,
            dnat,
            l4: None,
            bridged: false,
            ours: self.ours.clone(),
            our_ifaces: self.our_ifaces.clone(),
            accept: None,
            minor: false,
        }
    }
}

/// Every subnet and interface name of the topology.
fn ours(t: &Topology) -> (Vec<IpNetwork>, Vec<String>) {
    let mut nets = Vec::new();
    let mut names = Vec::new();
    for b in &t.bridges {
        names.push(b.name.clone());
        for v6 in [false, true] {
            nets.extend(t.sources_via(&b.name, v6));
        }
    }
    for n in &t.namespaces {
        for i in &n.ifaces {
            names.push(i.host_ifname.clone());
        }
    }
    (nets, names)
}

/// One bridge's segment in one family, as its flows see it.
struct Segment<'a> {
    name: &'a str,
    v6: bool,
    subnet: IpNetwork,
    gw: IpAddr,
    /// The way out to the world: the bridge's uplink, or the default route's interface.
    world_if: Iface,
    /// The bridge masquerades in this family.
    nat: bool,
}

impl Segment<'_> {
    fn br(&self) -> Iface {
        Iface::Is(vec![self.name.to_string()])
    }

    fn net(&self) -> Addr {
        Addr::In(self.subnet)
    }
}

/// The flows of topology `t` at every hook, for tables of IP families (inet, ip, ip6).
/// `uplinks`: the default route's interface per family; `br_nf`: bridged traffic passes the
/// IP hooks (bridge-nf-call-iptables = 1).
pub(crate) fn ip_flows(t: &Topology, uplinks: &Uplinks, br_nf: bool) -> Vec<Flow> {
    let (nets, names) = ours(t);
    let cx = Ctx {
        t,
        ours: nets,
        our_ifaces: names,
    };
    let mut out = Vec::new();
    let forwarding = t.host.ip_forward == Some(true);
    for b in &cx.t.bridges {
        for v6 in [false, true] {
            let Some(subnet) = t.segment_subnet(&b.name, v6) else {
                continue;
            };
            let Some(gw) = b.gateway_addr(v6) else {
                continue;
            };
            let up = if v6 { &uplinks.1 } else { &uplinks.0 };
            let s = Segment {
                name: &b.name,
                v6,
                subnet,
                gw,
                world_if: match b.uplink.as_ref().or(up.as_ref()) {
                    Some(u) => Iface::Is(vec![u.clone()]),
                    None => Iface::Other,
                },
                nat: if v6 { b.masquerade6 } else { b.masquerade },
            };
            if forwarding && !b.egress_deny {
                world_flows(&cx, &s, &mut out);
            }
            let publishes = t
                .ports_of(&b.name)
                .any(|(n, _)| n.publish.iter().any(|p| if v6 { p.v6 } else { p.v4 }));
            if publishes && forwarding {
                published_flows(&cx, &s, &mut out);
            }
            host_flows(&cx, &s, &mut out);
            if br_nf && !b.isolate {
                for h in THROUGH {
                    out.push(
                        cx.flow(
                            format!(
                                "{0} ↔ {0} (between its namespaces, through br_netfilter)",
                                s.name
                            ),
                            h,
                            v6,
                            (s.br(), s.br()),
                            (s.net(), s.net()),
                            ct_state::NEW,
                            false,
                        )
                        .with_accept(true),
                    );
                }
            }
        }
    }
    out
}

/// New connections out of the segment to the world, and their replies, at every hook they pass.
fn world_flows(cx: &Ctx, s: &Segment, out: &mut Vec<Flow>) {
    let name = s.name;
    for h in THROUGH {
        out.push(
            cx.flow(
                format!("{name} → the world (new connections)"),
                h,
                s.v6,
                (s.br(), s.world_if.clone()),
                // After srcnat the source is the host's: not known here.
                (
                    if h == Hook::Postrouting && s.nat {
                        Addr::Unknown
                    } else {
                        s.net()
                    },
                    Addr::World,
                ),
                ct_state::NEW,
                false,
            )
            .with_accept(true),
        );
        out.push(
            cx.flow(
                format!("the world → {name} (replies)"),
                h,
                s.v6,
                (s.world_if.clone(), s.br()),
                // Before un-NAT in prerouting, the destination is the host's.
                (
                    Addr::World,
                    if h == Hook::Prerouting && s.nat {
                        Addr::Unknown
                    } else {
                        s.net()
                    },
                ),
                ct_state::ESTABLISHED,
                false,
            )
            .with_accept(false),
        );
    }
}

/// New connections from the world to the segment's published ports.
fn published_flows(cx: &Ctx, s: &Segment, out: &mut Vec<Flow>) {
    for h in THROUGH {
        out.push(
            cx.flow(
                format!("the world → {} (published ports)", s.name),
                h,
                s.v6,
                (s.world_if.clone(), s.br()),
                (
                    Addr::World,
                    if h == Hook::Prerouting {
                        Addr::Unknown
                    } else {
                        s.net()
                    },
                ),
                ct_state::NEW,
                true,
            )
            .with_accept(false),
        );
    }
}

/// The segment's namespaces to the host (their gateway), and the host to them.
fn host_flows(cx: &Ctx, s: &Segment, out: &mut Vec<Flow>) {
    let (name, gw) = (s.name, s.gw);
    let host = Addr::In(IpNetwork::from(gw));
    for h in [Hook::Prerouting, Hook::Input] {
        out.push(
            cx.flow(
                format!("{name} → the host (its gateway {gw})"),
                h,
                s.v6,
                (s.br(), Iface::Unset),
                (s.net(), host.clone()),
                ct_state::NEW,
                false,
            )
            .with_accept(true)
            .minor(),
        );
    }
    for h in [Hook::Output, Hook::Postrouting] {
        out.push(
            cx.flow(
                format!("the host → {name}"),
                h,
                s.v6,
                (Iface::Unset, s.br()),
                (host.clone(), s.net()),
                ct_state::NEW,
                false,
            )
            .with_accept(false)
            .minor(),
        );
    }
}

/// The flows of topology `t` for tables of the bridge family: what crosses a bridge's ports,
/// to the host (input), from it (output) and between them (forward).
pub(crate) fn bridge_flows(t: &Topology) -> Vec<Flow> {
    let (nets, names) = ours(t);
    let cx = Ctx {
        t,
        ours: nets,
        our_ifaces: names,
    };
    let mut out = Vec::new();
    for b in &t.bridges {
        let ports: Vec<String> = t
            .ports_of(&b.name)
            .map(|(_, i)| i.host_ifname.clone())
            .collect();
        if ports.is_empty() {
            continue;
        }
        for v6 in [false, true] {
            let Some(subnet) = t.segment_subnet(&b.name, v6) else {
                continue;
            };
            let p = || Iface::Is(ports.clone());
            let net = || Addr::In(subnet);
            let name = &b.name;
            let mut push = |label: String, hook, ifs: (Iface, Iface), addrs, ct| {
                let ours_in = matches!(ifs.0, Iface::Is(_));
                let mut f = cx
                    .flow(label, hook, v6, ifs, addrs, ct, false)
                    .with_accept(ours_in);
                f.bridged = true;
                out.push(f);
            };
            for h in [Hook::Prerouting, Hook::Input] {
                push(
                    format!("{name}'s namespaces → the host and beyond"),
                    h,
                    (p(), Iface::Unset),
                    (net(), Addr::Unknown),
                    ct_state::NEW,
                );
            }
            for h in [Hook::Output, Hook::Postrouting] {
                push(
                    format!("the host → {name}'s namespaces"),
                    h,
                    (Iface::Unset, p()),
                    (Addr::Unknown, net()),
                    ct_state::ESTABLISHED,
                );
            }
            if !b.isolate {
                push(
                    format!("{name} ↔ {name} (between its namespaces)"),
                    Hook::Forward,
                    (p(), p()),
                    (net(), net()),
                    ct_state::NEW,
                );
            }
        }
    }
    out
}

/// One connection a check made, as a flow at the forward hook (and the others it crosses):
/// from a namespace on bridge `bridge` (address `from`) to `to`, protocol and port. For the
/// diagnosis of a failed check.
pub(crate) fn connection(
    t: &Topology,
    bridge: &str,
    from: IpAddr,
    to: IpAddr,
    l4: (u8, u16),
    uplinks: &Uplinks,
) -> Vec<Flow> {
    let (nets, names) = ours(t);
    let v6 = to.is_ipv6();
    let nat = t
        .bridge(bridge)
        .is_some_and(|b| if v6 { b.masquerade6 } else { b.masquerade });
    let to_ns = t.bridges.iter().find(|b| {
        t.segment_subnet(&b.name, v6)
            .is_some_and(|s| s.contains(to))
    });
    let up = if v6 { &uplinks.1 } else { &uplinks.0 };
    let out_if = match (
        to_ns,
        t.bridge(bridge).and_then(|b| b.uplink.as_ref()),
        up.as_ref(),
    ) {
        (Some(b), _, _) => Iface::Is(vec![b.name.clone()]),
        (None, Some(u), _) | (None, None, Some(u)) => Iface::Is(vec![u.clone()]),
        _ => Iface::Other,
    };
    THROUGH
        .iter()
        .map(|&h| {
            let saddr = if h == Hook::Postrouting && nat && to_ns.is_none() {
                Addr::Unknown
            } else {
                Addr::In(IpNetwork::from(from))
            };
            Flow {
                label: format!("{from} → {to}"),
                hook: h,
                v6,
                iif: Iface::Is(vec![bridge.to_string()]),
                oif: if h == Hook::Prerouting {
                    Iface::Unset
                } else {
                    out_if.clone()
                },
                saddr,
                daddr: Addr::In(IpNetwork::from(to)),
                ct: ct_state::NEW,
                dnat: false,
                l4: Some(l4),
                bridged: false,
                ours: nets.clone(),
                our_ifaces: names.clone(),
                accept: None,
                minor: false,
            }
            .with_accept(true)
        })
        .collect()
}
