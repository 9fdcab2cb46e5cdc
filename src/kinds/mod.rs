//! Every kind of object nsfw changes, one module each: what it compares between the file
//! and the kernel, its changes (a [`Step`] variant each: how it reads in `nsfw diff`, text
//! and JSON, and when in a run it is made), and the rtnetlink requests a change becomes.
//! `plan` decides which changes a run needs and carries them out a stage at a time; `cni`
//! makes its bridge and veth pairs with the same requests.
//!
//! Links: [`link`] (the attributes every kind shares, compared in one place; a link's
//! settings changed, a link deleted), [`bridge`], [`veth`] (a pair, its host end on a bridge
//! and its other end in a namespace), [`port`] (an interface of someone else's enslaved to a
//! bridge, and what moves with it), [`macvlan`] (a child of a host uplink, in a namespace or
//! the host's shim). The rest: [`namespace`], [`addr`], [`route`],
//! [`sysctl`], [`resolv`], [`neigh`], [`netem`].

pub(crate) mod addr;
pub(crate) mod adopt;
pub(crate) mod announce;
pub(crate) mod bridge;
pub(crate) mod fdb;
pub(crate) mod link;
pub(crate) mod macvlan;
pub(crate) mod namespace;
pub(crate) mod neigh;
pub(crate) mod netem;
pub(crate) mod port;
pub(crate) mod resolv;
pub(crate) mod route;
pub(crate) mod sysctl;
pub(crate) mod veth;
pub(crate) mod vxlan;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vxlan_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::OwnedFd;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use crate::plumbing::Req;
use crate::resources::Place;

pub(crate) use addr::{AddAddr, DelAddr};
pub(crate) use adopt::{Adopt, Adoptee};
pub(crate) use announce::{Announce, BridgePort};
pub(crate) use bridge::CreateBridge;
pub(crate) use fdb::{AddFdb, DelFdb};
pub(crate) use link::{DeleteLink, LinkAttr, SetLink};
pub(crate) use macvlan::CreateMacvlan;
pub(crate) use namespace::{CreateNamespace, DeleteNamespace, MarkNamespace};
pub(crate) use neigh::ForgetNeighbours;
pub(crate) use netem::SetNetem;
pub(crate) use resolv::{RemoveResolv, WriteResolv};
pub(crate) use route::{DelRoute, SetRoute};
pub(crate) use sysctl::SetSysctl;
pub(crate) use veth::CreateVeth;
pub(crate) use vxlan::CreateVxlan;

/// The order in which the executor runs steps: a stage at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Removals, so names are free.
    Teardown,
    Namespaces,
    /// Bridges, veth pairs, host link settings, host addresses that are added.
    HostBuild,
    /// Everything inside namespaces, one visit per namespace.
    NsConfig,
    /// Host addresses that go (after their replacements are in place), routes, files.
    HostFinish,
}

impl Stage {
    /// What the stage is doing, for the progress line.
    pub(crate) fn doing(self) -> &'static str {
        match self {
            Stage::Teardown => "removing",
            Stage::Namespaces => "creating namespaces",
            Stage::HostBuild => "building the host side",
            Stage::NsConfig => "configuring namespaces",
            Stage::HostFinish => "finishing",
        }
    }

    /// The stage of a change made from `place`'s connection: `host` on the host, the
    /// namespace's visit (`NsConfig`) inside one.
    fn at(place: &Place, host: Stage) -> Stage {
        match place {
            Place::Host => host,
            Place::Ns(_) => Stage::NsConfig,
        }
    }
}

/// What every kind of change says about itself.
pub(crate) trait Change: fmt::Display {
    /// When in a run it is made.
    fn stage(&self) -> Stage;
    /// `+` create, `-` delete, `~` modify.
    fn mark(&self) -> char;
    /// What it concerns, for grouping: a namespace, a host link, the host's routes or sysctls.
    fn object(&self) -> String;
    /// The namespace it works inside, if any (the executor visits each once per stage).
    fn inside(&self) -> Option<&str> {
        None
    }
    /// Its kind and fields in JSON (docs/json.md), besides `op`, `object`, `kind`, `text`.
    fn json(&self) -> (&'static str, Value);
    /// Its rtnetlink requests, sent in order over a connection bound to the place it works
    /// in; None when requests alone do not make it (a namespace, a sysctl, a file, forgotten
    /// neighbours).
    fn requests(&self, _at: &At) -> Option<Result<Vec<Req>>> {
        None
    }
    /// For a link made from the host and born inside a namespace (a veth pair's peer): that
    /// namespace. The executor opens it for the requests (`At::ns`), and visits it once the
    /// link is made to send `finish_inside`.
    fn born_in(&self) -> Option<&str> {
        None
    }
    /// What the visit of the namespace a link was born in sends once it is made.
    fn finish_inside(&self) -> Vec<Req> {
        Vec::new()
    }
}

/// What requests are built from: the owner's mark (a link's alias), the link indexes of the
/// place the connection is bound to, and for a link born in another namespace that
/// namespace, open.
pub(crate) struct At<'a> {
    pub mark: &'a str,
    pub ix: &'a Indexes,
    pub ns: Option<&'a OwnedFd>,
}

impl<'a> At<'a> {
    pub(crate) fn new(mark: &'a str, ix: &'a Indexes) -> At<'a> {
        At { mark, ix, ns: None }
    }
}

/// `Step`, one variant per kind of change (the kind's own struct), with the dispatch to its
/// `Change` and `From` each kind: a new kind of change is one name in the list below.
macro_rules! steps {
    ($($kind:ident),* $(,)?) => {
        /// One change to the kernel or the file system.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub(crate) enum Step {
            $($kind($kind)),*
        }

        impl Step {
            /// The change's own description.
            fn change(&self) -> &dyn Change {
                match self {
                    $(Step::$kind(s) => s),*
                }
            }
        }

        $(impl From<$kind> for Step {
            fn from(s: $kind) -> Step {
                Step::$kind(s)
            }
        })*
    };
}

steps!(
    DeleteNamespace,
    DeleteLink,
    RemoveResolv,
    CreateNamespace,
    MarkNamespace,
    CreateBridge,
    CreateVeth,
    CreateMacvlan,
    SetLink,
    AddAddr,
    DelAddr,
    SetRoute,
    DelRoute,
    SetSysctl,
    WriteResolv,
    ForgetNeighbours,
    SetNetem,
    Adopt,
    Announce,
    CreateVxlan,
    AddFdb,
    DelFdb,
);

impl Step {
    pub(crate) fn stage(&self) -> Stage {
        self.change().stage()
    }

    pub(crate) fn inside(&self) -> Option<&str> {
        self.change().inside()
    }

    pub(crate) fn mark(&self) -> char {
        self.change().mark()
    }

    pub(crate) fn object(&self) -> String {
        self.change().object()
    }

    /// Its requests (see [`Change::requests`]).
    pub(crate) fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        self.change().requests(at)
    }

    pub(crate) fn born_in(&self) -> Option<&str> {
        self.change().born_in()
    }

    pub(crate) fn finish_inside(&self) -> Vec<Req> {
        self.change().finish_inside()
    }

    /// The change as a JSON object (docs/json.md).
    pub(crate) fn json(&self) -> Value {
        let (kind, fields) = self.change().json();
        let mut v = json!({"op": op_name(self.mark()), "object": self.object(), "kind": kind, "text": self.to_string()});
        if let (Some(m), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, x) in extra {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.change().fmt(f)
    }
}

/// The JSON `op` of a mark: `create`, `delete`, `modify`.
pub(crate) fn op_name(mark: char) -> &'static str {
    match mark {
        '+' => "create",
        '-' => "delete",
        _ => "modify",
    }
}

/// The object a change to interface `ifname` of `place` is grouped under: the host link
/// itself, or the whole namespace.
fn object_of(place: &Place, ifname: &str) -> String {
    match place {
        Place::Host => format!("link {ifname}"),
        Place::Ns(ns) => format!("namespace {ns}"),
    }
}

/// Link indexes by name, in the place a connection is bound to.
pub(crate) type Indexes = BTreeMap<String, u32>;

pub(crate) fn index_of(ix: &Indexes, name: &str) -> Result<u32> {
    ix.get(name)
        .copied()
        .ok_or_else(|| anyhow!("no interface {name}"))
}
