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
    ]
    .into_iter()
    .find_map(|(differs, why)| differs.then_some(why))
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
