//! DEL and GC: what a container owns goes — its host veth (the peer in the container goes
//! with it), its elements (found by their comment), its lease — and when the network's last
//! container is gone, the network's table, its FORWARD accepts and its bridge go too (and
//! forwarding returns to its value from before, when nothing else needs it).
//!
//! DEL succeeds when there is nothing to remove (never ADDed, already DELeted, the namespace
//! gone): the spec asks DEL to be idempotent and best-effort.

use std::collections::BTreeSet;

use super::config::{Attachment, NetConf};
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::{forwarding, ipam, leftovers, links, ruleset};
use crate::owner;
use crate::plumbing::{Conn, msgs};
use crate::state::{Access, Lock};
use ::nft::socket::NftSocket;

pub(super) fn del(env: &Env, c: &NetConf) -> CniResult<()> {
    {
        let lock = super::lock(Access::Exclusive)?;
        let mut conn = Conn::open("host")?;
        leftovers::sweep(&lock, &mut conn, &c.name)?;
        let mut sock = NftSocket::open()?;
        let removed = remove_locked(
            &lock,
            &mut conn,
            &mut sock,
            c,
            &env.container_id,
            &env.ifname,
        );
        // Its release would wait for the commit's clean-up (see ADD).
        let _ = sock.close_detached();
        removed?;
    }
    // The lease last, outside the lock (the plugin has its own): it is released even when
    // there was nothing else to remove.
    ipam::exec(c, env, "DEL", None, &c.raw)?;
    Ok(())
}

/// What attachment (`container`, `ifname`) owns goes — its host veth, its elements — and the
/// network's table, accepts, bridge and forwarding with it when it was the last (DEL, and a
/// failed ADD undoing itself). Under the lock.
pub(super) fn remove_locked(
    lock: &Lock,
    conn: &mut Conn,
    sock: &mut NftSocket,
    c: &NetConf,
    container: &str,
    ifname: &str,
) -> CniResult<()> {
    if let Some(l) = links::find_host_end(conn, &c.name, container, ifname)? {
        conn.run_all(&[msgs::del_link(&l.name, l.index)])?;
    }
    let owner = owner::element_owner(container, ifname);
    match ruleset::read(sock, &c.name) {
        Ok(held) => {
            let mine = held.owned_by(&owner);
            let gone: BTreeSet<String> = [owner].into();
            finish(lock, conn, sock, c, &held, mine, &gone)
        }
        // Another owner's table of that name: nothing of this container's can be in it.
        Err(e) if e.code == code::CONFLICT => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes `elems` and, when no container of the network is left, the table, the accepts
/// and the bridge, in one batch.
fn finish(
    lock: &Lock,
    conn: &mut Conn,
    sock: &mut NftSocket,
    c: &NetConf,
    held: &ruleset::Held,
    elems: Vec<(String, ::nft::Element)>,
    gone: &BTreeSet<String>,
) -> CniResult<()> {
    let others = held
        .elements()
        .any(|(_, e)| e.comment.as_deref().is_some_and(|o| !gone.contains(o)));
    let ports_left = !others && bridge_in_use(conn, c)?;
    if others || ports_left {
        ruleset::send(sock, &ruleset::del_ops(held, elems))?;
        return Ok(());
    }
    ruleset::send(sock, &ruleset::remove_ops(held))?;
    if let Some(b) = links::get_link(conn, &c.bridge)?
        && b.alias.as_deref() == Some(owner::network_mark(&c.name).as_str())
    {
        conn.run_all(&[msgs::del_link(&b.name, b.index)])?;
    }
    forwarding::release_forwarding(lock, &c.name)?;
    Ok(())
}

/// Whether the network's bridge still has a port (another container's, one someone added by
/// hand): then it stays.
fn bridge_in_use(conn: &mut Conn, c: &NetConf) -> CniResult<bool> {
    let Some(b) = links::get_link(conn, &c.bridge)? else {
        return Ok(false);
    };
    Ok(crate::plumbing::links::links(conn)?
        .iter()
        .any(|l| l.master == Some(b.index)))
}

/// GC: everything of the network's that no attachment in `cni.dev/valid-attachments` owns.
pub(super) fn gc(env: &Env, c: &NetConf) -> CniResult<()> {
    let valid: BTreeSet<String> = c
        .valid
        .iter()
        .map(|a: &Attachment| owner::element_owner(&a.container_id, &a.ifname))
        .collect();
    let mut stale: BTreeSet<(String, String)> = BTreeSet::new();
    {
        let lock = super::lock(Access::Exclusive)?;
        let mut conn = Conn::open("host")?;
        leftovers::sweep(&lock, &mut conn, &c.name)?;
        for (l, ct, ifn) in links::host_ends(&mut conn, &c.name)? {
            if !valid.contains(&owner::element_owner(&ct, &ifn)) {
                conn.run_all(&[msgs::del_link(&l.name, l.index)])?;
                stale.insert((ct, ifn));
            }
        }
        let mut sock = NftSocket::open()?;
        match ruleset::read(&mut sock, &c.name) {
            Ok(held) => {
                let mut elems = Vec::new();
                let mut gone = BTreeSet::new();
                for (set, e) in held.elements() {
                    let Some(o) = e.comment.as_deref() else {
                        continue;
                    };
                    if valid.contains(o) {
                        continue;
                    }
                    if let Some((ct, ifn)) = owner::parse_element_owner(o) {
                        stale.insert((ct.to_string(), ifn.to_string()));
                    }
                    gone.insert(o.to_string());
                    elems.push((set.to_string(), e.clone()));
                }
                if !elems.is_empty() || !held.has_containers() {
                    finish(&lock, &mut conn, &mut sock, c, &held, elems, &gone)?;
                }
            }
            Err(e) if e.code == code::CONFLICT => {}
            Err(e) => return Err(e),
        }
    }
    // The stale containers' leases: a DEL to the IPAM plugin for each (Debian's host-local
    // predates GC), then GC itself to a plugin that speaks 1.1.0, for leases nsfw never saw.
    let mut errors = Vec::new();
    if c.ipam.is_some() {
        for (ct, ifn) in &stale {
            if let Err(e) = ipam::exec(c, env, "DEL", Some((ct, ifn)), &c.raw) {
                errors.push(e.to_string());
            }
        }
        if ipam::speaks(c, env, "1.1.0")
            && let Err(e) = ipam::exec(c, env, "GC", None, &c.raw)
        {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::IPAM,
            format!(
                "GC removed the stale containers' links and elements, but not every lease: {}",
                errors.join("; ")
            ),
        ))
    }
}
