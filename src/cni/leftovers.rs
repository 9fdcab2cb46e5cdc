//! The write-ahead record of the links an ADD makes. The kernel takes a link's alias only once
//! the link exists, so a plugin killed between making the network's bridge (or a container's
//! host veth) and marking it would leave an unmarked link that looks like somebody else's: the
//! next ADD would refuse the bridge name for ever. So, as apply does, an ADD names the links it
//! is about to make — with the MAC each is made with — in `/run/nsfw/record` (pending, under
//! the network's `cni:<network>`) before it makes them, and drops them from there once they
//! are marked.
//!
//! Every ADD, DEL and GC holds nsfw's lock while it makes or removes links, so an entry a
//! command finds there under the lock is a killed command's: it sweeps them first — an
//! unmarked link of the recorded name and MAC goes (a veth's peer in the container with it),
//! a marked one is left to the usual paths — and the entries go.

use anyhow::Result;

use super::links;
use crate::owner::network_user;
use crate::plumbing::{Conn, msgs};
use crate::state::{Lock, Record};
use crate::topology::Mac;

/// Records that `network`'s ADD is about to make `made` (name, MAC).
pub(super) fn intend(lock: &Lock, network: &str, made: &[(&str, Mac)]) -> Result<()> {
    let mut rec = Record::load(lock.dir());
    let p = rec.pending.entry(network_user(network)).or_default();
    for (name, mac) in made {
        p.links.insert((*name).to_string(), mac.to_string());
    }
    rec.save(lock.dir())
}

/// The links of `network` the record names are marked (or gone): their entries go.
pub(super) fn settled(lock: &Lock, network: &str) -> Result<()> {
    let mut rec = Record::load(lock.dir());
    if rec.pending.remove(&network_user(network)).is_some() {
        rec.save(lock.dir())?;
    }
    Ok(())
}

/// Whether `l` is a link a killed command of `network` left unmarked (the record names it with
/// its MAC): the next ADD, DEL or GC removes it.
pub(super) fn is_leftover(lock: &Lock, network: &str, l: &crate::plumbing::Link) -> bool {
    let rec = Record::load(lock.dir());
    rec.pending.get(&network_user(network)).is_some_and(|p| {
        l.alias.is_none()
            && l.mac
                .is_some_and(|m| p.links.get(&l.name) == Some(&m.to_string()))
    })
}

/// Removes what a killed command of `network` left unmarked, and its entries.
pub(super) fn sweep(lock: &Lock, conn: &mut Conn, network: &str) -> Result<()> {
    let rec = Record::load(lock.dir());
    let Some(p) = rec.pending.get(&network_user(network)) else {
        return Ok(());
    };
    for (name, mac) in &p.links {
        if let Some(l) = links::get_link(conn, name)?
            && l.alias.is_none()
            && l.mac.is_some_and(|m| m.to_string() == *mac)
        {
            conn.run_all(&[msgs::del_link(&l.name, l.index)])?;
        }
    }
    settled(lock, network)
}
