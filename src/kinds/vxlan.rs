//! A VXLAN link in the host: a bridge's segment carried to other hosts in UDP. nsfw keeps
//! its MTU (the bridge's) and its bridge; a link of another VNI, local address or port, or
//! with learning off or a TTL set behind nsfw's back, is made again ([`drift`] says which). It is made down, without a
//! kernel-made IPv6 link-local address (a bridge port has no business on the segment
//! itself), marked, then up; it joins its bridge with the links set afterwards (by index,
//! once the bridges exist). Its peers are `fdb`'s.

use std::fmt;
use std::net::IpAddr;

use anyhow::Result;
use serde_json::{Value, json};

use super::link::{Keeps, LinkAttr, Seen, differ};
use super::{At, Change, Stage};
use crate::plumbing::{Link, Req, VxlanObs, msgs};
use crate::resources::{LinkKind, LinkSpec};

/// What a VXLAN link keeps as the file says: its bridge.
const KEEPS: Keeps = Keeps {
    nf_call: false,
    mac: false,
    port: true,
};

/// How the kernel's link is not the file's tunnel (None: it is), said as the reason it is
/// made again: a VXLAN link of that VNI, local address and port, learning the MACs behind
/// its peers, with the kernel's TTL (0, "auto": 64 for unicast peers). The kernel changes
/// neither VNI nor port in place; `local`, `learning` and `ttl` it would, but remaking the
/// tunnel puts back everything at once (and its peers with it), the same way whatever
/// drifted, for the cost of a moment without the segment that drift has already broken.
pub(crate) fn drift(spec: &LinkSpec, l: &Link) -> Option<&'static str> {
    let LinkKind::Vxlan { id, local, port } = spec.kind else {
        return Some("not a VXLAN link");
    };
    let Some(x) = l.vxlan.filter(|_| l.kind.as_deref() == Some("vxlan")) else {
        return Some("not a VXLAN link");
    };
    let want = VxlanObs::new(id, Some(local), port);
    [
        (x.id != want.id, "another VNI than the file's"),
        (
            x.local != want.local,
            "another local address than the file's",
        ),
        (x.port != want.port, "another UDP port than the file's"),
        (!x.learning, "learning turned off (nsfw's tunnels learn)"),
        (
            x.ttl != want.ttl,
            "a TTL set (nsfw's tunnels keep the kernel's: auto)",
        ),
        (
            x.odd.is_some(),
            "an attribute set that nsfw's tunnels leave at the kernel's default (`ip -d link` shows it)",
        ),
    ]
    .into_iter()
    .find_map(|(differs, why)| differs.then_some(why))
}

/// Why hand-made link `l` is not taken over as the file's tunnel `spec` (None: it is exactly
/// what nsfw would make, and its all-zeros FDB entries are peers the file lists). Once marked
/// as nsfw's, a drifted tunnel would be made again and an entry the file does not list
/// deleted: what somebody built by hand, and what a running segment may need, lost.
pub(crate) fn not_adoptable(
    spec: &LinkSpec,
    l: &Link,
    fdb: &[crate::plumbing::Fdb],
    peers: &std::collections::BTreeSet<(String, IpAddr)>,
) -> Option<String> {
    if let Some(odd) = l.vxlan.and_then(|x| x.odd_name()) {
        return Some(format!(
            "`{odd}` is set, which nsfw's tunnels leave at the kernel's default"
        ));
    }
    if let Some(why) = drift(spec, l) {
        return Some(why.to_string());
    }
    let extra: Vec<String> = fdb
        .iter()
        .filter(|f| f.index == l.index)
        .filter(|f| !f.via.is_own() || !peers.contains(&(spec.name.clone(), f.dst)))
        .map(|f| format!("dst {}{}", f.dst, f.via))
        .collect();
    (!extra.is_empty()).then(|| {
        format!(
            "its FDB holds all-zeros entries the file does not list as peers ({}), which adopting would delete",
            extra.join(", ")
        )
    })
}

/// Why `--adopt` leaves hand-made link `l` as it is, refusing the run (None: not a tunnel of
/// the file's VNI, refused as any foreign link of the file's name is).
pub(crate) fn refusal(
    l: &Link,
    spec: &LinkSpec,
    fdb: &[crate::plumbing::Fdb],
    d: &crate::resources::Desired,
) -> Option<String> {
    let LinkKind::Vxlan { id, .. } = spec.kind else {
        return None;
    };
    l.vxlan
        .filter(|x| x.id == id && l.kind.as_deref() == Some("vxlan"))?;
    let why = not_adoptable(spec, l, fdb, &d.host.fdb)?;
    Some(format!(
        "{}: tunnel {} is not adopted: {why}; it is left as it is. Make it as nsfw would, or take the bridge's `vxlan` key out of the file (the tunnel then stays on its bridge as it is)",
        d.source, l.name
    ))
}

/// The attributes that differ from the file's.
pub(crate) fn attrs(spec: &LinkSpec, seen: &Seen) -> Vec<LinkAttr> {
    differ(spec, seen, KEEPS)
}

/// A VXLAN link made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateVxlan {
    pub name: String,
    pub id: u32,
    pub local: IpAddr,
    pub port: u16,
    pub mtu: u32,
    pub mac: crate::topology::Mac,
    /// Its bridge, which it joins when the links are set.
    pub master: String,
}

impl CreateVxlan {
    pub(crate) fn of(spec: &LinkSpec) -> Option<CreateVxlan> {
        let LinkKind::Vxlan { id, local, port } = spec.kind else {
            return None;
        };
        Some(CreateVxlan {
            name: spec.name.clone(),
            id,
            local,
            port,
            mtu: spec.mtu,
            mac: spec.mac?,
            master: spec.master.clone().unwrap_or_default(),
        })
    }
}

impl Change for CreateVxlan {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        let n = &self.name;
        let mut reqs = vec![msgs::create_vxlan(
            n,
            (self.mtu, self.mac),
            self.id,
            self.local,
            self.port,
        )];
        if self.mtu >= crate::compile::IPV6_MIN_MTU {
            reqs.push(msgs::no_link_local(n));
        }
        reqs.push(msgs::mark(n, at.mark));
        reqs.push(msgs::up(n));
        Some(Ok(reqs))
    }
    fn stage(&self) -> Stage {
        Stage::HostBuild
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        format!("link {}", self.name)
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "vxlan",
            json!({"name": self.name, "id": self.id, "local": self.local.to_string(), "port": self.port, "mtu": self.mtu, "master": self.master}),
        )
    }
}

impl fmt::Display for CreateVxlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CreateVxlan {
            name,
            id,
            local,
            port,
            mtu,
            master,
            ..
        } = self;
        write!(
            f,
            "+ vxlan {name} id {id} local {local} dstport {port} mtu {mtu} master {master}"
        )
    }
}
