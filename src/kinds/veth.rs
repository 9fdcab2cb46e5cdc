//! A veth pair: its host end a port of a bridge (marked, hairpin where a publish leads), its
//! other end born inside a namespace. Made from the host in one request, the peer inside its
//! namespace (IFLA_NET_NS_FD); each end then gets `addrgenmode none` while still down (the
//! kernel refuses it at creation and applies it only after IFF_UP in a setlink) and goes up —
//! the host end from the host, the peer from inside (a peer cannot be created up: the kernel
//! opens it before its other end exists, ENOTCONN). Apply and CNI both make pairs so.

use std::fmt;
use std::os::fd::OwnedFd;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::link::{Keeps, LinkAttr, Seen, differ};
use super::{At, Change, Stage, index_of};
use crate::plumbing::{Link, Req, msgs};
use crate::resources::LinkSpec;
use crate::topology::Mac;

/// What the host end keeps: its bridge and hairpin mode (its MAC only tells a half-made pair
/// from someone else's link, see `compile`, unless the file gives it: `host_mac`).
const HOST_END: Keeps = Keeps {
    nf_call: false,
    mac: false,
    port: true,
};

/// What the namespace end keeps: its MAC.
const PEER: Keeps = Keeps {
    nf_call: false,
    mac: true,
    port: false,
};

/// Whether `host` and `peer` are the two ends of one pair.
pub(crate) fn whole(host: &Link, peer: &Link) -> bool {
    host.kind.as_deref() == Some("veth")
        && peer.kind.as_deref() == Some("veth")
        && host.peer_index == Some(peer.index)
        && peer.peer_index == Some(host.index)
}

/// The host end's attributes that differ from the file's (`seen` with its master's name).
pub(crate) fn host_end_attrs(spec: &LinkSpec, seen: &Seen) -> Vec<LinkAttr> {
    let keeps = match spec.kind {
        crate::resources::LinkKind::Veth { keep_mac: true, .. } => Keeps {
            mac: true,
            ..HOST_END
        },
        _ => HOST_END,
    };
    differ(spec, seen, keeps)
}

/// The namespace end's attributes that differ from the file's.
pub(crate) fn peer_attrs(spec: &LinkSpec, have: &Link) -> Vec<LinkAttr> {
    differ(spec, &Seen::alone(have), PEER)
}

/// The pair, both ends down: `host` here, a port of bridge `master` if given; `peer` born in
/// the namespace `peer_ns` with its MAC.
pub(crate) fn create(
    host: &str,
    master: Option<u32>,
    mtu: u32,
    host_mac: Option<Mac>,
    peer: &str,
    peer_ns: &OwnedFd,
    peer_mac: Option<Mac>,
) -> Req {
    msgs::create_veth(host, master, mtu, host_mac, peer, peer_ns, peer_mac)
}

/// The host end once made: marked with `alias` first (from then on it is findable as
/// nsfw's), no IPv6 link-local address (no DAD, router solicitations and MLD flooded to every
/// port), up, and hairpin mode — a port flag, set once the link is a port of its bridge.
pub(crate) fn host_end(host: &str, alias: &str, no_link_local: bool, hairpin: bool) -> Vec<Req> {
    let mut reqs = vec![msgs::mark(host, alias)];
    if no_link_local {
        reqs.push(msgs::no_link_local(host));
    }
    reqs.push(msgs::up(host));
    if hairpin {
        reqs.push(msgs::hairpin(host, true));
    }
    reqs
}

/// The namespace end once made, sent from inside its namespace.
pub(crate) fn peer_end(peer: &str, no_link_local: bool) -> Vec<Req> {
    let mut reqs = Vec::new();
    if no_link_local {
        reqs.push(msgs::no_link_local(peer));
    }
    reqs.push(msgs::up(peer));
    reqs
}

/// A veth pair made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateVeth {
    pub ns: String,
    pub host: String,
    pub peer: String,
    pub bridge: String,
    pub mtu: u32,
    /// The namespace end's MAC, and the host end's.
    pub mac: Option<Mac>,
    pub host_mac: Option<Mac>,
    /// addrgenmode none on both ends.
    pub no_link_local: bool,
    /// Hairpin mode on the host end's bridge port.
    pub hairpin: bool,
    /// Isolation of the host end's bridge port.
    pub isolated: bool,
}

impl CreateVeth {
    /// The pair of host end `spec`, whose other end is `peer` in `ns` (`peer_spec`: what the
    /// file says of that end).
    pub(crate) fn of(
        spec: &LinkSpec,
        ns: &str,
        peer: &str,
        peer_spec: Option<&LinkSpec>,
    ) -> CreateVeth {
        CreateVeth {
            ns: ns.to_string(),
            host: spec.name.clone(),
            peer: peer.to_string(),
            bridge: spec.master.clone().unwrap_or_default(),
            mtu: spec.mtu,
            mac: peer_spec.and_then(|p| p.mac),
            host_mac: spec.mac,
            no_link_local: spec.no_link_local,
            hairpin: spec.hairpin,
            isolated: spec.isolated,
        }
    }

    /// From the host: the pair made on its bridge (by index), its peer in the namespace
    /// `at.ns`, and the host end marked and brought up.
    fn make(&self, at: &At) -> Result<Vec<Req>> {
        let master = index_of(at.ix, &self.bridge)?;
        let fd = at
            .ns
            .ok_or_else(|| anyhow!("namespace {} is not open", self.ns))?;
        let mut reqs = vec![create(
            &self.host,
            Some(master),
            self.mtu,
            self.host_mac,
            &self.peer,
            fd,
            self.mac,
        )];
        reqs.extend(host_end(
            &self.host,
            at.mark,
            self.no_link_local,
            self.hairpin,
        ));
        if self.isolated {
            reqs.push(msgs::isolated(&self.host, true));
        }
        Ok(reqs)
    }
}

impl Change for CreateVeth {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.make(at))
    }
    fn born_in(&self) -> Option<&str> {
        Some(&self.ns)
    }
    /// The peer, from inside its namespace.
    fn finish_inside(&self) -> Vec<Req> {
        peer_end(&self.peer, self.no_link_local)
    }
    fn stage(&self) -> Stage {
        Stage::HostBuild
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.ns)
    }
    fn json(&self) -> (&'static str, Value) {
        let CreateVeth {
            ns,
            host,
            peer,
            bridge,
            mtu,
            mac,
            ..
        } = self;
        (
            "veth",
            json!({"name": host, "namespace": ns, "peer": peer, "bridge": bridge, "mtu": mtu, "mac": mac.map(|m| m.to_string())}),
        )
    }
}

impl fmt::Display for CreateVeth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CreateVeth {
            ns,
            host,
            peer,
            bridge,
            mtu,
            mac,
            isolated,
            ..
        } = self;
        let port = if *isolated { ", isolated" } else { "" };
        write!(
            f,
            "+ veth {host} (on {bridge}{port}) ⇄ {ns}:{peer} mtu {mtu}"
        )?;
        if let Some(mac) = mac {
            write!(f, " mac {mac}")?;
        }
        Ok(())
    }
}
