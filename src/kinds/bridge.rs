//! A bridge in the host: one L2 segment. nsfw keeps its MTU, MAC and nf_call_iptables as the
//! file says. It is made without kernel-made IPv6 link-local addresses, and marked as nsfw's
//! (plan) or the CNI network's (cni) by a request of its own: the kernel takes an alias only
//! once the link exists.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::link::{Keeps, LinkAttr, Seen, differ};
use super::{At, Change, Stage};
use crate::plumbing::{Link, Req, msgs};
use crate::resources::LinkSpec;
use crate::topology::Mac;

/// What a bridge keeps as the file says.
const KEEPS: Keeps = Keeps {
    nf_call: true,
    mac: true,
    port: false,
};

/// Whether the kernel's link is a bridge at all (else it is made again).
pub(crate) fn is(l: &Link) -> bool {
    l.kind.as_deref() == Some("bridge")
}

/// The bridge's attributes that differ from the file's.
pub(crate) fn attrs(spec: &LinkSpec, have: &Link) -> Vec<LinkAttr> {
    differ(spec, &Seen::alone(have), KEEPS)
}

/// The requests that make a bridge, up, with its MTU and MAC (a MAC set by hand keeps the
/// bridge from taking its smallest port's), and no kernel-made IPv6 link-local address: it
/// would sit tentative (unusable for neighbour discovery of forwarded packets) for a second
/// of DAD; an IPv6 segment gets its link-local address from the plan, without DAD. Set before
/// any port gives the bridge a carrier, which is when the kernel would make one. Below IPv6's
/// minimum MTU the link has no IPv6 at all, and the kernel refuses the setting
/// (EAFNOSUPPORT): nothing to switch off.
pub(crate) fn create(name: &str, mtu: u32, mac: Mac, nf_call: bool) -> Vec<Req> {
    let mut out = vec![msgs::create_bridge(name, mtu, mac, nf_call)];
    if mtu >= crate::compile::IPV6_MIN_MTU {
        out.push(msgs::no_link_local(name));
    }
    out
}

/// A bridge made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateBridge {
    pub name: String,
    pub mtu: u32,
    pub mac: Mac,
    /// nf_call_iptables/ip6tables on (see `LinkSpec::nf_call`).
    pub nf_call: bool,
}

impl CreateBridge {
    pub(crate) fn of(spec: &LinkSpec) -> CreateBridge {
        CreateBridge {
            name: spec.name.clone(),
            mtu: spec.mtu,
            mac: spec.mac.unwrap_or(Mac([2, 0, 0, 0, 0, 1])),
            nf_call: spec.nf_call,
        }
    }

    /// Made and marked with `mark`, in one go.
    pub(crate) fn requests(&self, mark: &str) -> Vec<Req> {
        let mut reqs = create(&self.name, self.mtu, self.mac, self.nf_call);
        reqs.push(msgs::mark(&self.name, mark));
        reqs
    }
}

impl Change for CreateBridge {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(CreateBridge::requests(self, at.mark)))
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
            "bridge",
            json!({"name": self.name, "mtu": self.mtu, "mac": self.mac.to_string()}),
        )
    }
}

impl fmt::Display for CreateBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CreateBridge { name, mtu, mac, .. } = self;
        write!(f, "+ bridge {name} mtu {mtu} mac {mac}")
    }
}
