//! ADD: the container's veth, address and routes, and its elements in the network's table.
//!
//! In order: refuse a second ADD of the same attachment before anything else (so its failure
//! cannot release the first one's lease); ask the IPAM plugin for a lease (outside the lock:
//! the plugin has its own); then under nsfw's lock sweep what a killed command left (see
//! `leftovers`), read the table, check the lease against the reserved ranges and the host's
//! routes (`validate`) and the address and ports are free — everything that can be refused is
//! refused here, before the host changes — then record the links about to be made, turn on
//! forwarding, make the bridge and the pair, and send the one batch. An error after the checks
//! undoes everything the ADD did, as a DEL would, and releases the lease.

use std::net::Ipv4Addr;

use ipnetwork::IpNetwork;
use std::os::fd::OwnedFd;

use serde_json::Value;

use super::config::NetConf;
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::ipam::{self, Lease};
use super::links::{self, Plug};
use super::result::{self, Iface};
use super::{forwarding, leftovers, names, ruleset, table, validate};
use crate::owner;
use crate::plumbing::Conn;
use ::nft::socket::NftSocket;
use ::nft::{Element, Value as NValue};

pub(super) fn add(env: &Env, c: &NetConf) -> CniResult<Value> {
    c.need_addresses()?;
    if c.prev_result.is_some() {
        return Err(CniError::config(
            "prevResult on ADD: nsfw makes the container's interface, so it must come first in the conflist's plugins",
        ));
    }
    let ns = super::netns::open_netns(&env.netns)?.ok_or_else(|| {
        CniError::env(format!(
            "CNI_NETNS={:?}: no such network namespace",
            env.netns
        ))
    })?;
    let mut conn = Conn::open("host")?;
    let host_end = names::host_veth(&c.name, &env.container_id, &env.ifname);
    if let Some(l) = links::get_link(&mut conn, &host_end)? {
        let what = if l.alias.as_deref()
            == Some(owner::veth_alias(&c.name, &env.container_id, &env.ifname).as_str())
        {
            "ADD was called twice without a DEL in between"
        } else {
            "an interface of the name nsfw derives for it is in the way"
        };
        return Err(CniError::new(
            code::CONFLICT,
            format!(
                "container {} is attached to network {} as {} already ({host_end} exists: {what})",
                env.container_id, c.name, env.ifname
            ),
        ));
    }
    if links::container_has(&env.netns, &ns, &env.ifname)? {
        return Err(CniError::new(
            code::CONFLICT,
            format!(
                "the container already has an interface {} (CNI_NETNS {})",
                env.ifname, env.netns
            ),
        ));
    }
    let lease = match &c.ipam {
        Some(_) => {
            let v = ipam::exec(c, env, "ADD", None, &c.raw)?
                .ok_or_else(|| CniError::new(code::IPAM, "the IPAM plugin gave no result"))?;
            match ipam::lease_of(c, &v) {
                Ok(l) => Some(l),
                Err(e) => {
                    release(env, c);
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let r = attach_locked(env, c, &ns, lease, &mut conn);
    if r.is_err() {
        release(env, c);
    }
    r
}

/// Gives the lease back after a failed ADD (best effort: the ADD's error is what matters).
fn release(env: &Env, c: &NetConf) {
    if c.ipam.is_some()
        && let Err(e) = ipam::exec(c, env, "DEL", None, &c.raw)
    {
        crate::output::err(format_args!("nsfw: releasing the lease failed too: {e}"));
    }
}

fn addr_of(e: &Element) -> Option<Ipv4Addr> {
    match e.key.first() {
        Some(NValue::Ipv4(a)) => Some(*a),
        _ => None,
    }
}

/// The element of the same key another container holds, if any: an address or a published
/// port is one container's.
fn taken_by(h: &ruleset::Held, set: &str, e: &Element, owner: &str) -> Option<String> {
    let s = h.sets.get(set)?;
    s.elements
        .iter()
        .find(|x| table::same_key(x, e) && x.comment.as_deref() != Some(owner))
        .map(|x| x.comment.clone().unwrap_or_else(|| "nobody's".into()))
}

/// The IPAM plugin's lease, or one of nsfw's own from the subnet (an address no other
/// container of the network holds), checked.
fn lease_for(c: &NetConf, lease: Option<Lease>, held: &ruleset::Held) -> CniResult<Lease> {
    let lease = match (lease, c.subnet) {
        (Some(l), _) => l,
        (None, Some(subnet)) => {
            let used: Vec<Ipv4Addr> = held
                .sets
                .get(table::ADDRS4)
                .map(|s| s.elements.iter().filter_map(addr_of).collect())
                .unwrap_or_default();
            ipam::allocate(c, subnet, &used)?
        }
        (None, None) => return Err(CniError::config("no subnet and no ipam")),
    };
    validate::lease(&lease)?;
    Ok(lease)
}

fn attach_locked(
    env: &Env,
    c: &NetConf,
    ns: &OwnedFd,
    lease: Option<Lease>,
    conn: &mut Conn,
) -> CniResult<Value> {
    let lock = super::lock(crate::state::Access::Exclusive)?;
    leftovers::sweep(&lock, conn, &c.name)?;
    let mut sock = NftSocket::open()?;
    let held = ruleset::read(&mut sock, &c.name)?;
    let lease = lease_for(c, lease, &held)?;
    let owner = owner::element_owner(&env.container_id, &env.ifname);
    let mine = table::container_elements(lease.addr.ip(), &c.ports, &owner);
    for (set, e) in &mine {
        if let Some(who) = taken_by(&held, set, e, &owner) {
            let what = if *set == table::ADDRS4 {
                format!("address {}", lease.addr.ip())
            } else {
                format!("host port {}", ::nft::render::element(e))
            };
            return Err(CniError::new(
                code::CONFLICT,
                format!("{what} is taken by container {who} on network {}", c.name),
            ));
        }
    }
    others_ports(&mut sock, c)?;
    let bridge = links::bridge_state(conn, c)?;
    let had_gateway = validate::host(conn, &lease, c.mtu, bridge.as_ref())?;
    // A bridge of the network's that lacks its gateway address gets it back from this ADD:
    // the undo of a failure takes it away again (with the prefix route the kernel made).
    let added_to = bridge
        .as_ref()
        .filter(|_| !had_gateway)
        .map(|b| (b.name.clone(), b.index));
    // Everything is checked: from here on the host changes, and an error undoes it all.
    let host_end = names::host_veth(&c.name, &env.container_id, &env.ifname);
    let host_mac = names::mac(&c.name, &env.container_id, &env.ifname, "host");
    let mut made = vec![(host_end.as_str(), host_mac)];
    if bridge.is_none() {
        made.push((c.bridge.as_str(), links::bridge_mac(c)));
    }
    leftovers::intend(&lock, &c.name, &made)?;
    let lease_gw = lease.gateway_net();
    let r = build(
        env, c, ns, &lease, mine, &held, bridge, &lock, conn, &mut sock,
    );
    match &r {
        // Undone as a DEL would — this container's veth, and the network's table, bridge and
        // forwarding when it was the only one — after the links the record names that never
        // got their mark (a bridge made but refused its alias).
        Err(e) => {
            let undone = leftovers::sweep(&lock, conn, &c.name)
                .map_err(CniError::from)
                .and_then(|()| {
                    super::del::remove_locked(
                        &lock,
                        conn,
                        &mut sock,
                        c,
                        &env.container_id,
                        &env.ifname,
                    )
                });
            let undone = undone.and_then(|()| take_back(conn, added_to.as_ref(), lease_gw));
            if let Err(u) = undone {
                crate::output::err(format_args!(
                    "nsfw: undoing the failed ADD ({e}) failed too: {u}"
                ));
            }
        }
        // Everything is marked: the record's entries are done with (if they cannot be
        // dropped now, the next command's sweep finds the links marked and drops them).
        Ok(_) => {
            if let Err(e) = leftovers::settled(&lock, &c.name) {
                crate::output::err(format_args!("nsfw: warning: {e:#}"));
            }
        }
    }
    // Its release would wait for the commit's clean-up, a grace period the runtime waits too.
    let _ = sock.close_detached();
    r
}

/// The gateway address a failed ADD gave an existing bridge of the network, removed again
/// (with the prefix route the kernel made for it).
fn take_back(
    conn: &mut Conn,
    added_to: Option<&(String, u32)>,
    gw: ipnetwork::Ipv4Network,
) -> CniResult<()> {
    match added_to {
        Some((name, index)) if links::get_link(conn, name)?.is_some() => conn
            .run_all(&[crate::plumbing::msgs::del_addr(
                name,
                *index,
                IpNetwork::V4(gw),
            )])
            .map_err(CniError::from),
        _ => Ok(()),
    }
}

/// The changes of an ADD, all checked before: forwarding, the bridge, the pair, the batch.
#[allow(clippy::too_many_arguments)]
fn build(
    env: &Env,
    c: &NetConf,
    ns: &OwnedFd,
    lease: &Lease,
    mine: Vec<table::Elem>,
    held: &ruleset::Held,
    bridge: Option<crate::plumbing::Link>,
    lock: &crate::state::Lock,
    conn: &mut Conn,
    sock: &mut NftSocket,
) -> CniResult<Value> {
    forwarding::need_forwarding(lock, &c.name)?;
    let bridge = links::ensure_bridge(conn, c, bridge, lease.gateway_net())?;
    // A route without its own next hop goes through the lease's gateway (the result says so).
    let routes: Vec<_> = lease
        .routes
        .iter()
        .map(|(d, gw)| (*d, Some(gw.unwrap_or(lease.gateway))))
        .collect();
    let plug = Plug {
        conf: c,
        container: &env.container_id,
        ifname: &env.ifname,
        netns_path: &env.netns,
        netns: ns,
        addr: lease.addr,
        routes: &routes,
    };
    let att = links::attach(conn, &plug, &bridge)?;
    let ops = ruleset::add_ops(held, c, table::network_elements(c, lease.subnet()), mine);
    ruleset::send(sock, &ops)?;
    Ok(result::build(
        c,
        &[
            Iface {
                name: &bridge.name,
                mac: bridge.mac,
                sandbox: None,
            },
            Iface {
                name: &att.host.name,
                mac: att.host.mac,
                sandbox: None,
            },
            Iface {
                name: &env.ifname,
                mac: Some(att.peer_mac),
                sandbox: Some(&env.netns),
            },
        ],
        lease,
    ))
}

/// A host port another nsfw table publishes (a topology's, another CNI network's) is refused:
/// each table's prerouting chain would take it, and which one wins depends on the order the
/// kernel registered them in. (A topology applied later refuses the port the same way.)
fn others_ports(sock: &mut NftSocket, c: &NetConf) -> CniResult<()> {
    if c.ports.is_empty() {
        return Ok(());
    }
    let mine = owner::cni_table(&c.name);
    let mut others = Vec::new();
    for info in sock.tables()? {
        if info.family == ::nft::Family::Inet
            && crate::owner::is_table(&info.name)
            && info.name != mine
        {
            others.push(sock.read_table(&info)?);
        }
    }
    let taken = crate::firewall::clash::Taken::of(others.iter());
    for p in &c.ports {
        if let Some(who) = taken.holder(false, p.proto, p.host_port, p.host_ip.map(Into::into)) {
            return Err(CniError::new(
                code::CONFLICT,
                format!(
                    "network {}: host port {} is already published by {who}",
                    c.name, p.host_port
                ),
            ));
        }
    }
    Ok(())
}
