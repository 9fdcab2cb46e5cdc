//! CHECK: nsfw's diff, for one container. What ADD made is compared with the kernel — the
//! bridge (marked, up), IPv4 forwarding, the host end (marked, a port of the bridge, up), the
//! container's interface with the MAC, addresses and routes of `prevResult`, the network's
//! table (its structure, through the engine's table diff), the container's and the network's
//! elements, the FORWARD accepts — and every difference is named in the error (code 101), as
//! `nsfw diff` would name it.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};

use super::config::NetConf;
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::{ipam, links, result, ruleset, table};
use crate::owner;
use crate::plumbing::Conn;
use crate::plumbing::observe::read_node;
use crate::state::Access;
use ::nft::diff::table_diff;
use ::nft::socket::NftSocket;
use ::nft::{Element, Family};

pub(super) fn check(env: &Env, c: &NetConf) -> CniResult<()> {
    let prev = c.prev_result.as_ref().ok_or_else(|| {
        CniError::config("CHECK needs prevResult: the result of the container's ADD")
    })?;
    let want = result::expected(prev, &env.ifname, &env.netns);
    let mut drift = Vec::new();
    {
        // Shared: no ADD or DEL is half-way while CHECK looks.
        let _lock = super::lock(Access::Shared)?;
        links_drift(env, c, &want, &mut drift)?;
        nft_drift(env, c, &want, &mut drift)?;
    }
    if !drift.is_empty() {
        return Err(CniError::new(
            code::DRIFT,
            format!(
                "container {} on network {}: {}",
                env.container_id, c.name, drift[0]
            ),
        )
        .with_details(drift.join("; ")));
    }
    // The IPAM plugin checks its own side (its lease).
    ipam::exec(c, env, "CHECK", None, &c.raw)?;
    Ok(())
}

fn links_drift(
    env: &Env,
    c: &NetConf,
    want: &result::Expected,
    drift: &mut Vec<String>,
) -> CniResult<()> {
    let mut conn = Conn::open("host")?;
    let bridge = links::get_link(&mut conn, &c.bridge)?;
    match &bridge {
        None => drift.push(format!("bridge {} is missing", c.bridge)),
        Some(b) if b.alias.as_deref() != Some(owner::network_mark(&c.name).as_str()) => drift.push(
            format!("bridge {} is not marked as network {}'s", c.bridge, c.name),
        ),
        Some(b) if !b.up => drift.push(format!("bridge {} is down", c.bridge)),
        Some(_) => {}
    }
    // Without forwarding nothing of the containers' leaves the host, nor reaches a published
    // port from outside.
    if crate::plumbing::sysctl::read("net.ipv4.ip_forward")?.as_deref() != Some("1") {
        drift.push("IPv4 forwarding is off (net.ipv4.ip_forward is not 1)".into());
    }
    let alias = owner::veth_alias(&c.name, &env.container_id, &env.ifname);
    match links::find_host_end(&mut conn, &c.name, &env.container_id, &env.ifname)? {
        None => drift.push(format!(
            "the host end of its veth (alias {alias}) is missing"
        )),
        Some(h) => {
            if h.alias.as_deref() != Some(alias.as_str()) {
                drift.push(format!("host veth {} is not marked {alias}", h.name));
            }
            if bridge.as_ref().is_some_and(|b| h.master != Some(b.index)) {
                drift.push(format!(
                    "host veth {} is not a port of {}",
                    h.name, c.bridge
                ));
            }
            if !h.up {
                drift.push(format!("host veth {} is down", h.name));
            }
        }
    }
    let Some(ns) = super::netns::open_netns(&env.netns)? else {
        drift.push(format!("its network namespace {} is gone", env.netns));
        return Ok(());
    };
    let node = links::in_netns(&env.netns, &ns, read_node)?;
    let Some(l) = node.link(&env.ifname) else {
        drift.push(format!(
            "interface {} is missing in the container",
            env.ifname
        ));
        return Ok(());
    };
    let ifn = &env.ifname;
    if let (Some(m), Some(have)) = (&want.mac, l.mac)
        && *m != have.to_string()
    {
        drift.push(format!("{ifn} has MAC {have}, not {m}"));
    }
    if !l.up {
        drift.push(format!("{ifn} is down"));
    }
    for a in &want.addrs {
        let there = node
            .addrs
            .iter()
            .any(|x| x.index == l.index && x.net == IpNetwork::V4(*a));
        if !there {
            drift.push(format!("address {a} is missing on {ifn}"));
        }
    }
    for (dst, gw) in &want.routes {
        let there = node.routes.iter().any(|r| {
            r.dst == IpNetwork::V4(*dst)
                && r.oif == Some(l.index)
                && gw.is_none_or(|g| r.gateway == Some(IpAddr::V4(g)))
        });
        if !there {
            let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
            drift.push(format!("route {dst}{via} is missing on {ifn}"));
        }
    }
    Ok(())
}

fn nft_drift(
    env: &Env,
    c: &NetConf,
    want: &result::Expected,
    drift: &mut Vec<String>,
) -> CniResult<()> {
    let mut sock = NftSocket::open()?;
    let held = match ruleset::read(&mut sock, &c.name) {
        Ok(h) => h,
        Err(e) if e.code == code::CONFLICT => {
            drift.push(e.msg);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let tname = owner::cni_table(&c.name);
    if !held.exists {
        drift.push(format!("nftables table inet {tname} is missing"));
        return Ok(());
    }
    // The structure: the table ADD would make, holding the elements the kernel holds, must
    // equal the kernel's table; element drift is checked one by one below.
    if let Some(dumped) = sock.table(Family::Inet, &tname)? {
        let mut desired = table::table(c);
        for s in desired.sets.iter_mut() {
            if let Some(k) = held.sets.get(&s.name) {
                s.elements = k.elements.clone();
            }
        }
        for line in table_diff(&desired, Some(&dumped)).lines {
            drift.push(format!("nft: {line}"));
        }
    }
    let Some(addr) = want.addrs.first() else {
        drift.push("prevResult names no IPv4 address for the container".into());
        return Ok(());
    };
    let owner = owner::element_owner(&env.container_id, &env.ifname);
    let subnet = Ipv4Network::new(addr.network(), addr.prefix()).unwrap_or(*addr);
    let show = |set: &str, e: &Element| format!("{set} {}", ::nft::render::element(e));
    for (set, e) in table::container_elements(addr.ip(), &c.ports, &owner) {
        let ok = held.sets.get(set).is_some_and(|s| {
            s.elements
                .iter()
                .any(|x| table::same_entry(x, &e) && x.comment.as_deref() == Some(owner.as_str()))
        });
        if !ok {
            drift.push(format!("nft element {} is missing", show(set, &e)));
        }
    }
    for (set, e) in table::network_elements(c, subnet) {
        if !held.has(set, &e) {
            drift.push(format!("nft element {} is missing", show(set, &e)));
        }
    }
    for (set, e) in held.owned_by(&owner) {
        let wanted = table::container_elements(addr.ip(), &c.ports, &owner)
            .iter()
            .any(|(s, w)| *s == set && table::same_entry(w, &e));
        if !wanted {
            drift.push(format!(
                "nft element {} is not the container's any more",
                show(&set, &e)
            ));
        }
    }
    for l in ruleset::accept_drift(&held, &c.bridge) {
        drift.push(format!("iptables: {l}"));
    }
    Ok(())
}
