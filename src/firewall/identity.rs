//! Port security: every namespace interface speaks only as itself. Enforced where its frames
//! enter, at the host end of its veth (a port of the bridge), in a bridge-family table of the
//! topology's own: a fixed skeleton of rules, the data in sets keyed by the port, so a
//! namespace more is a few elements more. In the one batch of the run, with the `inet` table.
//!
//! ```nft
//! table bridge nsfw_lab {                              # comment "nsfw:lab"
//!     set ports { type ifname; }                       # every namespace's host veth end
//!     set hosts { type ifname; }                       # those of namespaces that route nothing
//!     set mac { type ifname . ether_addr; }            # "lab-ns1" . 02:..:..
//!     set ethertypes { type ether_type; elements = { ip, arp, ip6 } }
//!     set addr4 { type ifname . ipv4_addr; }               # its address
//!     set unspec6 { type icmpv6_type; elements = { 131, 135, 143 } } # what :: may send
//!     set addr6 { type ifname . ipv6_addr; }               # its address, link-local, ::
//!     set ok4 { type ifname . ipv4_addr; flags interval; }  # spoof_ok
//!     set ok6 { type ifname . ipv6_addr; flags interval; }
//!     set routed4 { type ifname . ipv4_addr; flags interval; } # spoof_ok, what a router
//!     set routed6 { type ifname . ipv6_addr; flags interval; } #   forwards out of it
//!     chain ingress { type filter hook prerouting priority -200; policy accept;
//!         iifname @ports goto identity }
//!     chain identity {
//!         iifname . ether saddr != @mac counter drop                  # a MAC not its own
//!         ether type != @ethertypes counter drop                      # VLAN tags, 0x88b5, ...
//!         iifname . arp saddr ether != @mac counter drop
//!         iifname . arp saddr ip != @addr4 iifname . arp saddr ip != @ok4 counter drop
//!         iifname . ip saddr != @addr4 iifname . ip saddr != @routed4 counter drop
//!         iifname . ip6 saddr != @addr6 iifname . ip6 saddr != @routed6 counter drop
//!         ip6 saddr :: meta l4proto != ipv6-icmp counter drop         # :: for DAD, MLD only
//!         ip6 saddr :: icmpv6 type != @unspec6 counter drop
//!         iifname @hosts icmpv6 type nd-router-advert counter drop
//!         iifname @hosts icmpv6 type nd-redirect counter drop
//!         icmpv6 type nd-neighbor-advert iifname . icmpv6 taddr != @addr6
//!             iifname . icmpv6 taddr != @ok6 counter drop
//!         ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . icmpv6 taddr != @addr6
//!             iifname . icmpv6 taddr != @ok6 counter drop
//!         ...                                   # ND link-layer options: see lladdr_options
//!     }
//! }
//! ```
//!
//! A namespace that routes (`forward = true`) sends, out of each interface, the networks it
//! forwards from its other interfaces (their segments, its routes' destinations, and any
//! address when its default route leaves by another interface), never that interface's own
//! segment: the `routed` sets. It still
//! answers ARP and ND only for its own addresses. Physical ports are not judged: nsfw does
//! not know who is behind them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use ipnetwork::IpNetwork;

use crate::owner;
use crate::topology::{Iface, Namespace, Topology};
use nft::dump::Dumped;
use nft::{
    Base, Chain, ChainType, Datatype, Element, Family, Field, Hook, MetaKey, Policy, Rule, Stmt,
    Table, Value, Verdict,
};

use super::build::{concat, field, lookup, meta, net_elem, rule, set};
use super::{NftPlan, NftState};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const ND_ROUTER_SOLICIT: u8 = 133;
const MLD_REPORT: u8 = 131;
const MLD2_REPORT: u8 = 143;
const IPPROTO_ICMPV6: u8 = 58;
/// An ND option's type and length bytes, as the 2-byte load reads them: a source (1) or
/// target (2) link-layer address option of 8 bytes (length 1).
const SLLAO: [u8; 2] = [1, 1];
const TLLAO: [u8; 2] = [2, 1];
/// The bridge family's `filter` priority.
const BRIDGE_FILTER: i32 = -200;

/// The networks `n` may send from out of interface `i` in one family, besides its own
/// addresses: for a namespace that routes, what it forwards there from elsewhere.
fn routed(n: &Namespace, i: &Iface, v6: bool) -> Vec<IpNetwork> {
    let mut out = Vec::new();
    if !n.forward {
        return out;
    }
    let on_i = |ip: IpAddr| match ip {
        IpAddr::V4(_) => IpNetwork::V4(i.address).contains(ip),
        IpAddr::V6(_) => i.address6.is_some_and(|a| IpNetwork::V6(a).contains(ip)),
    };
    let any = if v6 { "::/0" } else { "0.0.0.0/0" };
    let mut add = |net: IpNetwork| {
        if !out.contains(&net) {
            out.push(net);
        }
    };
    for j in n.ifaces.iter().filter(|j| j.bridge != i.bridge) {
        let net = if v6 {
            j.address6.map(|a| IpNetwork::V6(a.network_net()))
        } else {
            Some(IpNetwork::V4(j.address.network_net()))
        };
        net.into_iter().for_each(&mut add);
    }
    for r in n.routes.iter().filter(|r| r.to.is_ipv6() == v6) {
        if !on_i(r.via) {
            add(r.to);
        }
    }
    let gw = if v6 {
        n.gateway6.map(IpAddr::V6)
    } else {
        n.gateway.map(IpAddr::V4)
    };
    if let Some(g) = gw
        && !on_i(g)
        && let Ok(all) = any.parse()
    {
        add(all);
    }
    // Never the segment's own hosts' addresses: they are on the segment, not behind the
    // router (its own address is in addr4/addr6). A default route, or any route wider than
    // the segment, is cut around it.
    let own = if v6 {
        i.address6.map(|a| IpNetwork::V6(a.network_net()))
    } else {
        Some(IpNetwork::V4(i.address.network_net()))
    };
    match own {
        Some(own) => out
            .into_iter()
            .flat_map(|net| {
                if net.prefix() < own.prefix() && net.contains(own.ip()) {
                    outside(net, own)
                } else {
                    vec![net]
                }
            })
            .collect(),
        None => out,
    }
}

/// `all` minus `hole` (inside it), as the networks that differ from `hole` in one prefix
/// bit: for 0.0.0.0/0 minus 10.0.0.0/24, 128.0.0.0/1, 64.0.0.0/2, ..., 10.0.1.0/24.
fn outside(all: IpNetwork, hole: IpNetwork) -> Vec<IpNetwork> {
    let (bits, hole_bits) = match hole.ip() {
        IpAddr::V4(a) => (32u32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    let mut out = Vec::new();
    for k in u32::from(all.prefix())..u32::from(hole.prefix()) {
        // Bit k from the top flipped, everything below it cleared.
        let flip = 1u128 << (bits - 1 - k);
        let keep = if k == 0 { 0 } else { !0u128 << (bits - k) } & mask(bits);
        let net = (hole_bits & keep) | ((hole_bits & flip) ^ flip);
        let ip = match hole.ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
        };
        if let Ok(n) = IpNetwork::new(ip, (k + 1) as u8) {
            out.push(n);
        }
    }
    out
}

fn mask(bits: u32) -> u128 {
    if bits == 128 { !0 } else { (1u128 << bits) - 1 }
}

/// Network helpers the topology's address types lack.
trait NetworkNet {
    fn network_net(&self) -> Self;
}

impl NetworkNet for ipnetwork::Ipv4Network {
    fn network_net(&self) -> Self {
        ipnetwork::Ipv4Network::new(self.network(), self.prefix()).unwrap_or(*self)
    }
}

impl NetworkNet for ipnetwork::Ipv6Network {
    fn network_net(&self) -> Self {
        ipnetwork::Ipv6Network::new(self.network(), self.prefix()).unwrap_or(*self)
    }
}

/// The sets' elements, port by port.
#[derive(Default)]
struct Data {
    ports: Vec<Element>,
    hosts: Vec<Element>,
    mac: Vec<Element>,
    addr: [Vec<Element>; 2],
    ok: [Vec<Element>; 2],
    routed: [Vec<Element>; 2],
}

fn data(t: &Topology) -> Data {
    let mut d = Data::default();
    for n in &t.namespaces {
        for i in &n.ifaces {
            let port = || vec![Value::Ifname(i.host_ifname.clone())];
            let with = |v: Value| {
                let mut k = port();
                k.push(v);
                Element::key(k)
            };
            d.ports.push(Element::key(port()));
            if !n.forward {
                d.hosts.push(Element::key(port()));
            }
            d.mac.push(with(Value::Ether(i.mac.0)));
            d.addr[0].push(with(Value::Ipv4(i.address.ip())));
            if let Some(a6) = i.address6 {
                // Its address, its link-local address, and :: (DAD and MLD before it has one).
                for a in [a6.ip(), i.mac.link_local().ip(), Ipv6Addr::UNSPECIFIED] {
                    d.addr[1].push(with(Value::Ipv6(a)));
                }
            }
            let families = if i.address6.is_some() { 2 } else { 1 };
            for (f, v6) in [false, true].into_iter().enumerate().take(families) {
                // spoof_ok: sent from and answered for; what it routes: sent from only.
                for net in n.spoof_ok.iter().filter(|x| x.is_ipv6() == v6) {
                    d.ok[f].push(net_elem(port(), *net));
                    d.routed[f].push(net_elem(port(), *net));
                }
                for net in routed(n, i, v6) {
                    d.routed[f].push(net_elem(port(), net));
                }
            }
        }
    }
    d
}

fn sets(d: Data) -> Vec<nft::Set> {
    let ifname = Datatype::Ifname;
    let types: Vec<Element> = [ETH_P_IP, ETH_P_ARP, ETH_P_IPV6]
        .into_iter()
        .map(|e| Element::key(vec![Value::EtherType(e)]))
        .collect();
    // What may come from `::`: DAD's neighbour solicitation and MLD reports (RFC 4862 §5.4.2,
    // RFC 3810 §5.2.13), nothing else.
    let unspec: Vec<Element> = [MLD_REPORT, ND_NEIGHBOR_SOLICIT, MLD2_REPORT]
        .into_iter()
        .map(|t| Element::key(vec![Value::Icmpv6Type(t)]))
        .collect();
    let mut v = vec![
        set("ports", vec![ifname], None, false, d.ports),
        set("hosts", vec![ifname], None, false, d.hosts),
        set("mac", vec![ifname, Datatype::EtherAddr], None, false, d.mac),
        set("ethertypes", vec![Datatype::EtherType], None, false, types),
        set("unspec6", vec![Datatype::Icmpv6Type], None, false, unspec),
    ];
    // Exact addresses in hash sets: an interval set per element costs the kernel more, and
    // only the few networks need one.
    let [a4, a6] = d.addr;
    let [o4, o6] = d.ok;
    let [r4, r6] = d.routed;
    for (name, ty, interval, elems) in [
        ("addr4", Datatype::Ipv4Addr, false, a4),
        ("addr6", Datatype::Ipv6Addr, false, a6),
        ("ok4", Datatype::Ipv4Addr, true, o4),
        ("ok6", Datatype::Ipv6Addr, true, o6),
        ("routed4", Datatype::Ipv4Addr, true, r4),
        ("routed6", Datatype::Ipv6Addr, true, r6),
    ] {
        v.push(set(name, vec![ifname, ty], None, interval, elems));
    }
    v
}

/// `iifname . <f> != @<set>`.
fn not_in(f: Field, s: &str) -> Stmt {
    lookup(concat(vec![meta(MetaKey::Iifname), field(f)]), s, false)
}

fn icmpv6(ty: u8) -> Stmt {
    Stmt::eq(field(Field::Icmpv6Type), Value::Icmpv6Type(ty))
}

/// A rule that counts and drops.
fn drop(mut stmts: Vec<Stmt>) -> Rule {
    stmts.push(Stmt::Counter(nft::Counter::default()));
    rule(stmts, Verdict::Drop)
}

fn identity() -> Chain {
    let hosts = || lookup(meta(MetaKey::Iifname), "hosts", true);
    Chain::new(
        "identity",
        None,
        vec![
            drop(vec![not_in(Field::EtherSaddr, "mac")]),
            drop(vec![lookup(field(Field::EtherType), "ethertypes", false)]),
            drop(vec![not_in(Field::ArpSaddrEther, "mac")]),
            drop(vec![
                not_in(Field::ArpSaddrIp, "addr4"),
                not_in(Field::ArpSaddrIp, "ok4"),
            ]),
            drop(vec![
                not_in(Field::IpSaddr, "addr4"),
                not_in(Field::IpSaddr, "routed4"),
            ]),
            drop(vec![
                not_in(Field::Ip6Saddr, "addr6"),
                not_in(Field::Ip6Saddr, "routed6"),
            ]),
            drop(vec![unspecified(), not_icmpv6()]),
            drop(vec![
                unspecified(),
                lookup(field(Field::Icmpv6Type), "unspec6", false),
            ]),
            drop(vec![hosts(), icmpv6(ND_ROUTER_ADVERT)]),
            drop(vec![hosts(), icmpv6(ND_REDIRECT)]),
            drop(vec![
                icmpv6(ND_NEIGHBOR_ADVERT),
                not_in(Field::Icmpv6Taddr, "addr6"),
                not_in(Field::Icmpv6Taddr, "ok6"),
            ]),
            drop(vec![
                Stmt::eq(field(Field::Ip6Saddr), Value::Ipv6(Ipv6Addr::UNSPECIFIED)),
                icmpv6(ND_NEIGHBOR_SOLICIT),
                not_in(Field::Icmpv6Taddr, "addr6"),
                not_in(Field::Icmpv6Taddr, "ok6"),
            ]),
        ]
        .into_iter()
        .chain(lladdr_options())
        .collect(),
    )
}

/// `ip6 saddr ::`
fn unspecified() -> Stmt {
    Stmt::eq(field(Field::Ip6Saddr), Value::Ipv6(Ipv6Addr::UNSPECIFIED))
}

/// `meta l4proto != ipv6-icmp`
fn not_icmpv6() -> Stmt {
    Stmt::neq(meta(MetaKey::L4proto), Value::Proto(IPPROTO_ICMPV6))
}

/// The link-layer address a neighbour or router solicitation or a neighbour advertisement
/// carries is the port's own MAC: otherwise a namespace points its neighbours' entry for
/// its own address at another port (across `isolate`) or at no port (a flood).
///
/// nftables reads options at fixed offsets only, so the link-layer option must be the
/// first: where Linux and every stack we know put it, and Linux takes the first of
/// duplicates (ndisc_parse_options), so a second one later is ignored. A message with
/// options whose first is another kind is dropped, as one that may hide its link-layer
/// option behind it; one without options (a unicast NA, a DAD NS) passes, it names no
/// address. A DAD NS (from `::`) is exempt: it carries a nonce option first, and the kernel
/// refuses a link-layer option in it (RFC 4861 §7.1.1). A load past the packet's end
/// matches nothing: the rules judge only messages that have options.
///
/// ```nft
/// icmpv6 type nd-neighbor-advert @th,192,16 != 0x0201 counter drop
/// icmpv6 type nd-neighbor-advert iifname . @th,208,48 != @mac counter drop
/// icmpv6 type nd-neighbor-solicit ip6 saddr != :: @th,192,16 != 0x0101 counter drop
/// icmpv6 type nd-neighbor-solicit ip6 saddr != :: iifname . @th,208,48 != @mac counter drop
/// icmpv6 type nd-router-solicit @th,64,16 != 0x0101 counter drop
/// icmpv6 type nd-router-solicit iifname . @th,80,48 != @mac counter drop
/// ```
fn lladdr_options() -> Vec<Rule> {
    let not_unspec = || Stmt::neq(field(Field::Ip6Saddr), Value::Ipv6(Ipv6Addr::UNSPECIFIED));
    let opt = |f: Field, o: [u8; 2]| Stmt::neq(field(f), Value::Bits16(u16::from_be_bytes(o)));
    let mut out = Vec::new();
    for (ty, head, kind, opt_f, mac_f) in [
        (
            ND_NEIGHBOR_ADVERT,
            None,
            TLLAO,
            Field::Icmpv6NdOpt,
            Field::Icmpv6NdOptLladdr,
        ),
        (
            ND_NEIGHBOR_SOLICIT,
            Some(()),
            SLLAO,
            Field::Icmpv6NdOpt,
            Field::Icmpv6NdOptLladdr,
        ),
        (
            ND_ROUTER_SOLICIT,
            None,
            SLLAO,
            Field::Icmpv6RsOpt,
            Field::Icmpv6RsOptLladdr,
        ),
    ] {
        let pre = || {
            let mut v = vec![icmpv6(ty)];
            v.extend(head.map(|()| not_unspec()));
            v
        };
        let mut a = pre();
        a.push(opt(opt_f, kind));
        out.push(drop(a));
        let mut b = pre();
        b.push(not_in(mac_f, "mac"));
        out.push(drop(b));
    }
    out
}

/// Anti-spoofing inside a namespace that routes, first in its forward chain: a packet it
/// forwards must come in by the interface it would route the packet's source back through
/// (strict reverse path over the routes nsfw gave it), so a segment's packets carry that
/// segment's addresses (or those routed behind it), never another segment's or, from
/// inside, the world's. Before conntrack's verdict: a forged packet matching someone's
/// connection is dropped too.
///
/// ```nft
/// fib saddr . iif oif missing counter drop
/// ```
pub(crate) fn reverse_path() -> Rule {
    let fib = nft::Expr::Fib(nft::Fib {
        flags: nft::fib::SADDR | nft::fib::IIF,
        result: nft::FibResult::Oif,
        present: true,
    });
    drop(vec![Stmt::eq(fib, Value::Bool(false))])
}

/// The topology's bridge table; None when it has no namespace interface to judge.
pub(crate) fn table(t: &Topology) -> Option<Table> {
    if t.namespaces.iter().all(|n| n.ifaces.is_empty()) {
        return None;
    }
    let ingress = Chain::new(
        "ingress",
        Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Prerouting,
            priority: BRIDGE_FILTER,
            policy: Policy::Accept,
        }),
        vec![rule(
            vec![lookup(meta(MetaKey::Iifname), "ports", true)],
            Verdict::Goto("identity".into()),
        )],
    );
    Some(Table {
        comment: Some(owner::mark(&t.name)),
        sets: sets(data(t)),
        chains: vec![ingress, identity()],
        ..Table::new(Family::Bridge, &owner::table(&t.name))
    })
}

/// Reads every `bridge nsfw_*` table whole, by name.
pub(crate) fn observe(
    sock: &mut nft::socket::NftSocket,
    s: &NftState,
) -> anyhow::Result<BTreeMap<String, Dumped>> {
    super::side::observe(sock, s, Family::Bridge)
}

/// Plans the topology's bridge table into `p` (`side::diff`).
pub(crate) fn diff(p: &mut NftPlan, t: &Topology, s: &NftState) {
    super::side::diff(p, t, s, Family::Bridge, table(t), &s.bridge);
}

/// The flush of the bridge tables of the topologies `owned` says.
pub(crate) fn flush(p: &mut NftPlan, s: &NftState, owned: &dyn Fn(Option<&str>) -> bool) {
    super::side::flush(p, s, owned, Family::Bridge);
}
