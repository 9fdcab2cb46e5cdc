//! A CNI network's table, `inet nsfw_cni_<network>`: the layout of nsfw's host table
//! (firewall/table.rs), with the data in sets and maps so that a container's ADD and DEL
//! change elements only, in one batch, and a packet costs the same few lookups however many
//! containers are attached.
//!
//! ```nft
//! table inet nsfw_cni_labnet {                      # comment "nsfw-cni:labnet"
//!     set bridges { type ifname; elements = { "nsfw-labnet" } }
//!     set same { type ifname . ifname; elements = { "nsfw-labnet" . "nsfw-labnet" } }  # not when isolate
//!     set src4 { type ifname . ipv4_addr; flags interval; elements = { "nsfw-labnet" . 10.88.0.0/16 } }
//!     set src6 { type ifname . ipv6_addr; flags interval; }      # empty: no IPv6 from containers
//!     set addrs4 { type ipv4_addr; elements = { 10.88.0.2 comment "c1:eth0" } }
//!     map publish4 { type inet_proto . inet_service : ipv4_addr . inet_service
//!                    elements = { tcp . 8080 : 10.88.0.2 . 80 comment "c1:eth0" } }
//!     map publish4_at { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!     chain forward { type filter hook forward priority filter; policy accept;
//!         iifname @bridges goto judge
//!         oifname @bridges goto judge }
//!     chain judge {
//!         ct state established,related accept
//!         ct state invalid drop
//!         iifname @bridges ip saddr != @addrs4 drop               # anti-spoofing, per container
//!         iifname @bridges iifname . ip6 saddr != @src6 drop      # no IPv6
//!         iifname . oifname @same accept                          # container to container
//!         ct status dnat accept                                   # published ports
//!         oifname @bridges drop }                                 # nothing unsolicited in
//!     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr @addrs4 oifname != @bridges masquerade          # when masquerade
//!         ct status dnat oifname . ip saddr @src4 masquerade       # hairpin
//!         ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade }
//!     chain prerouting, chain output: the DNAT of firewall/publish.rs
//!     chain guard { type filter hook prerouting priority raw; policy accept;
//!         iifname != "lo" ip daddr 127.0.0.0/8 drop }             # route_localnet's guard
//! }
//! ```

use ipnetwork::{IpNetwork, Ipv4Network};

use super::config::{NetConf, PortMap};
use crate::firewall::build::{concat, ct_dnat, field, in_net, lookup, meta, net_elem, rule, set};
use crate::firewall::publish;
use crate::owner;
use ::nft::{
    Base, Chain, ChainType, Datatype, ElemData, Element, Family, Field, Hook, MetaKey, Policy,
    PortNat, Rule, Set, Stmt, Table, Value, Verdict, ct_state, prio,
};

pub(crate) const BRIDGES: &str = "bridges";
pub(crate) const SAME: &str = "same";
pub(crate) const SRC4: &str = "src4";
pub(crate) const SRC6: &str = "src6";
pub(crate) const ADDRS4: &str = "addrs4";

/// What one element is: the set it belongs to, and itself.
pub(crate) type Elem = (&'static str, Element);

/// The sets and maps, empty.
fn declarations() -> Vec<Set> {
    let to = Some(vec![Datatype::Ipv4Addr, Datatype::InetService]);
    vec![
        set(BRIDGES, vec![Datatype::Ifname], None, false, vec![]),
        set(
            SAME,
            vec![Datatype::Ifname, Datatype::Ifname],
            None,
            false,
            vec![],
        ),
        set(
            SRC4,
            vec![Datatype::Ifname, Datatype::Ipv4Addr],
            None,
            true,
            vec![],
        ),
        set(
            SRC6,
            vec![Datatype::Ifname, Datatype::Ipv6Addr],
            None,
            true,
            vec![],
        ),
        set(ADDRS4, vec![Datatype::Ipv4Addr], None, false, vec![]),
        set(
            publish::ANY,
            vec![Datatype::InetProto, Datatype::InetService],
            to.clone(),
            false,
            vec![],
        ),
        set(
            publish::AT,
            vec![
                Datatype::Ipv4Addr,
                Datatype::InetProto,
                Datatype::InetService,
            ],
            to,
            false,
            vec![],
        ),
    ]
}

/// The declaration of set `name` (elements empty), for element ops.
pub(crate) fn declaration(name: &str) -> Option<Set> {
    declarations().into_iter().find(|s| s.name == name)
}

fn judge() -> Chain {
    let iif = || meta(MetaKey::Iifname);
    let from_bridge = || lookup(iif(), BRIDGES, true);
    Chain::new(
        "judge",
        None,
        vec![
            // ct state established,related accept
            rule(
                vec![Stmt::ct_state(ct_state::ESTABLISHED | ct_state::RELATED)],
                Verdict::Accept,
            ),
            // ct state invalid drop
            rule(vec![Stmt::ct_state(ct_state::INVALID)], Verdict::Drop),
            // iifname @bridges ip saddr != @addrs4 drop: only an attached container's own
            // address may come from the bridge.
            rule(
                vec![from_bridge(), lookup(field(Field::IpSaddr), ADDRS4, false)],
                Verdict::Drop,
            ),
            // iifname @bridges iifname . ip6 saddr != @src6 drop: src6 stays empty.
            rule(
                vec![
                    from_bridge(),
                    lookup(concat(vec![iif(), field(Field::Ip6Saddr)]), SRC6, false),
                ],
                Verdict::Drop,
            ),
            // iifname . oifname @same accept
            rule(
                vec![lookup(
                    concat(vec![iif(), meta(MetaKey::Oifname)]),
                    SAME,
                    true,
                )],
                Verdict::Accept,
            ),
            // ct status dnat oifname @bridges accept: published ports only, not any DNAT of
            // the host.
            rule(
                vec![ct_dnat(), lookup(meta(MetaKey::Oifname), BRIDGES, true)],
                Verdict::Accept,
            ),
            // oifname @bridges drop
            rule(
                vec![lookup(meta(MetaKey::Oifname), BRIDGES, true)],
                Verdict::Drop,
            ),
        ],
    )
}

fn postrouting(masquerade: bool) -> Vec<Rule> {
    let mut out = Vec::new();
    if masquerade {
        // ip saddr @addrs4 oifname != @bridges masquerade
        out.push(Rule::new(vec![
            lookup(field(Field::IpSaddr), ADDRS4, true),
            lookup(meta(MetaKey::Oifname), BRIDGES, false),
            Stmt::Masquerade(PortNat::default()),
        ]));
    }
    // ct status dnat oifname . ip saddr @src4 masquerade: a container reaching a published
    // port of its own network through the host gets the answer back the same way.
    out.push(Rule::new(vec![
        ct_dnat(),
        lookup(
            concat(vec![meta(MetaKey::Oifname), field(Field::IpSaddr)]),
            SRC4,
            true,
        ),
        Stmt::Masquerade(PortNat::default()),
    ]));
    // ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade: from the host's
    // 127.0.0.1, a source the container could not answer.
    if let Ok(lo) = "127.0.0.0/8".parse::<IpNetwork>() {
        out.push(Rule::new(vec![
            ct_dnat(),
            lookup(meta(MetaKey::Oifname), BRIDGES, true),
            in_net(lo, true),
            Stmt::Masquerade(PortNat::default()),
        ]));
    }
    out
}

fn base(ty: ChainType, hook: Hook, priority: i32) -> Option<Base> {
    Some(Base {
        ty,
        hook,
        priority,
        policy: Policy::Accept,
    })
}

/// The table, with its sets empty: what a network's first ADD creates (with that container's
/// elements added in the same batch).
pub(crate) fn table(c: &NetConf) -> Table {
    let forward = Chain::new(
        "forward",
        base(ChainType::Filter, Hook::Forward, prio::FILTER),
        vec![
            // iifname @bridges goto judge
            rule(
                vec![lookup(meta(MetaKey::Iifname), BRIDGES, true)],
                Verdict::Goto("judge".into()),
            ),
            // oifname @bridges goto judge
            rule(
                vec![lookup(meta(MetaKey::Oifname), BRIDGES, true)],
                Verdict::Goto("judge".into()),
            ),
        ],
    );
    let mut chains = vec![
        forward,
        judge(),
        Chain::new(
            "postrouting",
            base(ChainType::Nat, Hook::Postrouting, prio::SRCNAT),
            postrouting(c.masquerade),
        ),
    ];
    chains.extend(publish::chains_for(false));
    if let Ok(lo) = "127.0.0.0/8".parse::<IpNetwork>() {
        // iifname != "lo" ip daddr 127.0.0.0/8 drop: the bridge has route_localnet (so the
        // host's 127.0.0.1 reaches published ports); nothing else may send to 127/8 through it.
        chains.push(Chain::new(
            "guard",
            base(ChainType::Filter, Hook::Prerouting, prio::RAW),
            vec![rule(
                vec![Stmt::iifname("lo", false), in_net(lo, false)],
                Verdict::Drop,
            )],
        ));
    }
    ::nft::Table {
        comment: Some(owner::network_mark(&c.name)),
        sets: declarations(),
        chains,
        ..Table::new(Family::Inet, &owner::cni_table(&c.name))
    }
}

/// The elements of the network itself (its bridge and subnet), which every ADD makes sure of.
pub(crate) fn network_elements(c: &NetConf, subnet: Ipv4Network) -> Vec<Elem> {
    let br = || Value::Ifname(c.bridge.clone());
    let mut v = vec![(BRIDGES, Element::key(vec![br()]))];
    if !c.isolate {
        v.push((SAME, Element::key(vec![br(), br()])));
    }
    v.push((SRC4, net_elem(vec![br()], IpNetwork::V4(subnet))));
    v
}

/// A container's elements: its address, and its published ports, each with its comment.
pub(crate) fn container_elements(
    addr: std::net::Ipv4Addr,
    ports: &[PortMap],
    owner: &str,
) -> Vec<Elem> {
    let tag = |mut e: Element| {
        e.comment = Some(owner.to_string());
        e
    };
    let mut v = vec![(ADDRS4, tag(Element::key(vec![Value::Ipv4(addr)])))];
    for p in ports {
        let to = ElemData::Values(vec![Value::Ipv4(addr), Value::Port(p.container_port)]);
        let proto = Value::Proto(p.proto);
        let port = Value::Port(p.host_port);
        match p.host_ip {
            None => v.push((publish::ANY, tag(Element::map(vec![proto, port], to)))),
            Some(a) => v.push((
                publish::AT,
                tag(Element::map(vec![Value::Ipv4(a), proto, port], to)),
            )),
        }
    }
    v
}

/// Whether two elements are the same entry (key, range and data; comments aside).
pub(crate) fn same_entry(a: &Element, b: &Element) -> bool {
    a.key == b.key && a.key_end == b.key_end && a.data == b.data
}

/// Whether two elements have the same key: a map holds one entry per key.
pub(crate) fn same_key(a: &Element, b: &Element) -> bool {
    a.key == b.key && a.key_end == b.key_end
}
