//! The topology's own table, `inet nsfw_<name>`: static rules, the data in sets and maps.
//!
//! ```nft
//! table inet nsfw_lab {
//!     set bridges { type ifname; elements = { "br0" } }
//!     set src4 { type ifname . ipv4_addr; flags interval; elements = { "br0" . 10.10.0.0/24 } }
//!     set src6 { type ifname . ipv6_addr; flags interval; }
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         iifname @bridges goto judge
//!         oifname @bridges goto judge }
//!     chain judge {                                   # (every accept, drop and masquerade
//!                                                     #  rule counts, for `nsfw status`; each
//!                                                     #  drop is a `goto drop_<reason>`: droplog.rs)
//!         ct state established,related accept          # replies always pass
//!         ct state invalid drop
//!         iifname @bridges iifname . ip saddr != @src4 drop    # anti-spoofing
//!         iifname @bridges iifname . ip6 saddr != @src6 drop   # (and no IPv6 where there is none)
//!         iifname . oifname @same accept                # between the ports of one bridge
//!         ct status dnat accept                         # published ports
//!         oifname @bridges drop                         # nothing unsolicited in, no bridge to bridge
//!         accept }                                      # out: what falling off the end did
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.10.0.0/24 oifname != @bridges masquerade
//!         ct status dnat oifname . ip saddr @src4 masquerade       # hairpin
//!         ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade }   # from localhost
//! }
//! ```

use ipnetwork::IpNetwork;

use crate::topology::Topology;
use nft::{
    Arg, Base, Chain, ChainType, CtKey, Datatype, Element, Family, Field, Hook, MetaKey, Policy,
    PortNat, Rule, Set, Stmt, Table, Value, Verdict, ct_state, prio,
};

use super::build::{concat, ct_dnat, field, in_net, lookup, meta, net_elem, rule, set};
use super::{account, droplog, egress, lan, policy, publish, vxlan};

/// The networks that may appear as source addresses from each bridge: its own and what is
/// routed through it. On an L2-only segment any: routers on it forward whatever they route,
/// and the host routes nothing from it.
fn sources(t: &Topology, v6: bool) -> Vec<Element> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let nets = if b.l2_only() {
            let any = if v6 { "::/0" } else { "0.0.0.0/0" };
            any.parse::<IpNetwork>().into_iter().collect()
        } else {
            t.trusted_sources(&b.name, v6)
        };
        for n in nets {
            out.push(net_elem(vec![Value::Ifname(b.name.clone())], n));
        }
        // Neighbour discovery from a namespace's link-local address (a router solicits from
        // it for a packet it forwards), bridged through the IP hooks: it never leaves the
        // segment, the kernel does not route fe80::/64.
        if v6
            && !b.l2_only()
            && b.address6.is_some()
            && let Ok(ll) = "fe80::/64".parse::<IpNetwork>()
        {
            out.push(net_elem(vec![Value::Ifname(b.name.clone())], ll));
        }
    }
    out
}

fn sets(t: &Topology) -> Vec<Set> {
    let names = |f: &dyn Fn(&str) -> Vec<Value>| -> Vec<Element> {
        t.bridges.iter().map(|b| Element::key(f(&b.name))).collect()
    };
    let mut v = vec![
        set(
            "bridges",
            vec![Datatype::Ifname],
            None,
            false,
            names(&|n| vec![Value::Ifname(n.into())]),
        ),
        set(
            "same",
            vec![Datatype::Ifname, Datatype::Ifname],
            None,
            false,
            t.bridges
                .iter()
                .filter(|b| !b.isolate)
                .map(|b| {
                    Element::key(vec![
                        Value::Ifname(b.name.clone()),
                        Value::Ifname(b.name.clone()),
                    ])
                })
                .collect(),
        ),
        set(
            "src4",
            vec![Datatype::Ifname, Datatype::Ipv4Addr],
            None,
            true,
            sources(t, false),
        ),
        set(
            "src6",
            vec![Datatype::Ifname, Datatype::Ipv6Addr],
            None,
            true,
            sources(t, true),
        ),
    ];
    if t.bridges.iter().any(|b| b.egress_deny) {
        v.push(set(
            "egress_deny",
            vec![Datatype::Ifname],
            None,
            false,
            t.bridges
                .iter()
                .filter(|b| b.egress_deny)
                .map(|b| Element::key(vec![Value::Ifname(b.name.clone())]))
                .collect(),
        ));
    }
    if policy::any(t) {
        v.extend(policy::sets(t));
    }
    if egress::any(t) {
        v.extend(egress::sets(t));
    }
    if lan::any(t) {
        v.extend(lan::sets(t));
    }
    if t.bridges.iter().any(|b| b.l2_only()) {
        v.push(l2only(t));
    }
    if publish::any(t) {
        v.extend(publish::maps(t));
    }
    v
}

fn judge(t: &Topology) -> Chain {
    let iif = || meta(MetaKey::Iifname);
    let from_bridge = || lookup(iif(), "bridges", true);
    let mut rules = vec![
        // Replies to what was let in or out pass; invalid packets go nowhere.
        rule(
            vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
            Verdict::Accept,
        ),
        rule(vec![Stmt::ct_state(ct_state::INVALID)], Verdict::Drop),
        // A source address that does not belong to the bridge it comes from is spoofed; a
        // bridge without IPv6 has no IPv6 source address at all.
        rule(
            vec![
                from_bridge(),
                lookup(concat(vec![iif(), field(Field::IpSaddr)]), "src4", false),
            ],
            Verdict::Drop,
        ),
        rule(
            vec![
                from_bridge(),
                lookup(concat(vec![iif(), field(Field::Ip6Saddr)]), "src6", false),
            ],
            Verdict::Drop,
        ),
    ];
    if egress::any(t) {
        rules.push(egress::judge_rule());
    }
    if policy::any(t) {
        // Neighbour discovery is never judged (it is not a connection, and the IPv6 of
        // everything else depends on it); then deny beats allow beats the defaults.
        rules.push(rule(vec![policy::nd()], Verdict::Accept));
        rules.extend(policy::forward_rules(t));
    }
    // Between namespaces on one bridge (seen here when br_netfilter is on), unless isolated.
    rules.push(rule(
        vec![lookup(
            concat(vec![iif(), meta(MetaKey::Oifname)]),
            "same",
            true,
        )],
        Verdict::Accept,
    ));
    if t.bridges.iter().any(|b| b.egress_deny) {
        // No new connection out of a bridge denied egress — a published port reached through
        // the host's address included (it is checked before them): such a jail opens
        // connections only where an allow names them.
        rules.push(rule(
            vec![lookup(iif(), "egress_deny", true)],
            Verdict::Drop,
        ));
    }
    // Published ports: connections translated to an address behind one of nsfw's bridges.
    // Not every translated connection: another DNAT on the host (a port forward, Docker's,
    // kube-proxy's) must not become a way out of an egress-denied bridge.
    rules.push(rule(
        vec![ct_dnat(), lookup(meta(MetaKey::Oifname), "bridges", true)],
        Verdict::Accept,
    ));
    if lan::any(t) {
        // The LAN behind a taken port is reached as it was through the port.
        rules.extend(lan::rules());
    }
    // Nothing unsolicited gets in, and no bridge reaches another.
    rules.push(rule(
        vec![lookup(meta(MetaKey::Oifname), "bridges", true)],
        Verdict::Drop,
    ));
    Chain::new("judge", None, rules)
}

fn postrouting(t: &Topology) -> Vec<Rule> {
    let mut out = Vec::new();
    for b in &t.bridges {
        // The bridge's subnet and the ones routed through it: NAT follows routes.
        let mut nets: Vec<IpNetwork> = Vec::new();
        if b.masquerade {
            nets.extend(t.sources_via(&b.name, false));
        }
        if b.masquerade6 {
            nets.extend(t.sources_via(&b.name, true));
        }
        for net in nets {
            let out_if = match &b.uplink {
                // ip saddr 10.10.0.0/24 oifname "eth0" masquerade
                Some(u) => Stmt::oifname(u, true),
                // ip saddr 10.10.0.0/24 oifname != @bridges masquerade: out of the host, not
                // between its own bridges (where the policy decides, and addresses are kept).
                None => lookup(meta(MetaKey::Oifname), "bridges", false),
            };
            out.push(Rule::new(vec![
                in_net(net, true),
                out_if,
                Stmt::Masquerade(PortNat::default()),
            ]));
        }
    }
    if publish::any(t) {
        // Hairpin: a namespace reaching a published port of its own bridge through the host
        // would get the reply straight from the other namespace; masqueraded, it comes back
        // through the host.
        out.push(Rule::new(vec![
            ct_dnat(),
            lookup(
                concat(vec![meta(MetaKey::Oifname), field(Field::IpSaddr)]),
                "src4",
                true,
            ),
            Stmt::Masquerade(PortNat::default()),
        ]));
        if publish::any6(t) {
            out.push(Rule::new(vec![
                ct_dnat(),
                lookup(
                    concat(vec![meta(MetaKey::Oifname), field(Field::Ip6Saddr)]),
                    "src6",
                    true,
                ),
                Stmt::Masquerade(PortNat::default()),
            ]));
        }
        // From the host's own 127.0.0.1: a source the namespace could not answer.
        if let Ok(lo) = "127.0.0.0/8".parse::<IpNetwork>() {
            out.push(Rule::new(vec![
                ct_dnat(),
                lookup(meta(MetaKey::Oifname), "bridges", true),
                in_net(lo, true),
                Stmt::Masquerade(PortNat::default()),
            ]));
        }
    }
    out
}

/// The guard route_localnet needs (kube-proxy's CVE-2020-8558): with it on a bridge, a
/// neighbour could send to 127.0.0.1 through it; nothing for 127.0.0.0/8 may come in but on lo.
fn guard() -> Option<Chain> {
    let lo: IpNetwork = "127.0.0.0/8".parse().ok()?;
    Some(Chain::new(
        "guard",
        Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Prerouting,
            priority: prio::RAW,
            policy: Policy::Accept,
        }),
        vec![rule(
            vec![Stmt::iifname("lo", false), in_net(lo, false)],
            Verdict::Drop,
        )],
    ))
}

/// The conntrack zone of traffic bridged over L2-only segments (28275: "ns").
pub(super) const BRIDGED_ZONE: u16 = 28275;

/// With br_netfilter, the host's conntrack sees a packet bridged over an L2-only segment
/// (to a router namespace) and again when the router forwards it to the host: the same
/// connection twice, and the first sighting (bridged, never NATed) would decide its NAT, so
/// the host's masquerade would never apply to the subnet behind the router. Everything on an
/// L2-only bridge is bridged (the host has no address there), so its frames get a conntrack
/// zone of their own, and the host's routing sees the connection afresh.
///
/// ```nft
/// set l2only { type ifname; elements = { "br1" } }
/// chain bridged { type filter hook prerouting priority raw; policy accept;
///     iifname @l2only ct zone set 28275 }
/// ```
fn bridged() -> Chain {
    Chain::new(
        "bridged",
        Some(Base {
            ty: ChainType::Filter,
            hook: Hook::Prerouting,
            priority: prio::RAW,
            policy: Policy::Accept,
        }),
        vec![Rule::new(vec![
            lookup(meta(MetaKey::Iifname), "l2only", true),
            Stmt::CtSet(CtKey::Zone, Arg::Value(Value::U16(BRIDGED_ZONE))),
        ])],
    )
}

/// The L2-only bridges, for [`bridged`].
fn l2only(t: &Topology) -> Set {
    set(
        "l2only",
        vec![Datatype::Ifname],
        None,
        false,
        t.bridges
            .iter()
            .filter(|b| b.l2_only())
            .map(|b| Element::key(vec![Value::Ifname(b.name.clone())]))
            .collect(),
    )
}

/// Whether bridge `name` needs route_localnet: a namespace on it is published on 127.0.0.1.
pub(crate) fn needs_localnet(t: &Topology, bridge: &str) -> bool {
    t.ports_of(bridge)
        .any(|(n, _)| n.publish.iter().any(|p| p.on_localhost()))
}

/// The topology's table.
pub(crate) fn table(t: &Topology) -> Table {
    let base = |ty, hook, priority| Base {
        ty,
        hook,
        priority,
        policy: Policy::Accept,
    };
    let forward = Chain::new(
        "forward",
        Some(base(ChainType::Filter, Hook::Forward, prio::FILTER)),
        vec![
            rule(
                vec![lookup(meta(MetaKey::Iifname), "bridges", true)],
                Verdict::Goto("judge".into()),
            ),
            rule(
                vec![lookup(meta(MetaKey::Oifname), "bridges", true)],
                Verdict::Goto("judge".into()),
            ),
        ],
    );
    let mut chains = vec![forward, judge(t)];
    chains.extend(policy::host_chains(t));
    let post = postrouting(t);
    if !post.is_empty() {
        chains.push(Chain::new(
            "postrouting",
            Some(base(ChainType::Nat, Hook::Postrouting, prio::SRCNAT)),
            post,
        ));
    }
    if t.bridges.iter().any(|b| b.l2_only()) {
        chains.push(bridged());
    }
    let tunnels = vxlan::any(t);
    if tunnels {
        chains.push(vxlan::chain());
    }
    if publish::any(t) {
        chains.extend(publish::chains(t));
        if t.bridges.iter().any(|b| needs_localnet(t, &b.name)) {
            chains.extend(guard());
        }
    }
    for c in &mut chains {
        counted(c);
    }
    let mut sets = sets(t);
    if tunnels {
        sets.extend(vxlan::sets(t));
    }
    if account::attribute(&mut chains) {
        droplog::route(&mut chains, &t.name);
        chains.push(account::chain(t));
        sets.extend(account::sets(t));
    }
    Table {
        comment: Some(crate::owner::mark(&t.name)),
        sets,
        chains,
        ..Table::new(Family::Inet, &crate::owner::table(&t.name))
    }
}

/// Puts a counter before the verdict of every rule that ends in accept, drop or masquerade:
/// what `nsfw status` reports per chain. A packet meets at most one such rule per chain, so
/// this costs one per-CPU increment per packet. Rules ending in a goto or a map-driven dnat
/// get none (a counter before a dnat from a map would count the packets the lookup misses).
/// `judge` also ends in an explicit `accept`, which is what falling off its end did (the
/// policy of the base chain that went there), so that what it lets out is counted too.
fn counted(c: &mut Chain) {
    if c.name == "judge" {
        c.rules
            .push(Rule::new(vec![Stmt::Verdict(Verdict::Accept)]));
    }
    for r in &mut c.rules {
        let last = r.stmts.len().saturating_sub(1);
        let terminal = matches!(
            r.stmts.last(),
            Some(Stmt::Verdict(Verdict::Accept | Verdict::Drop))
                | Some(Stmt::Masquerade(_) | Stmt::Reject(_))
        );
        if terminal {
            r.stmts.insert(last, Stmt::Counter(nft::Counter::default()));
        }
    }
}
