//! An address on a link: added (nsfw's, or one given back to a physical port as it was, with
//! its flags and lifetimes), removed.

use std::fmt;

use anyhow::Result;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use super::{At, Change, Indexes, Stage, index_of, object_of};
use crate::plumbing::{Req, msgs};
use crate::resources::{AddrOrig, Place};

fn json_of(place: &Place, ifname: &str, net: &IpNetwork) -> (&'static str, Value) {
    (
        "address",
        json!({"address": net.to_string(), "interface": ifname, "namespace": place.ns()}),
    )
}

/// An address added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddAddr {
    pub place: Place,
    pub ifname: String,
    pub net: IpNetwork,
    /// Flags and lifetimes of an address given back to a physical port (None: nsfw's).
    pub orig: Option<AddrOrig>,
}

impl AddAddr {
    pub(crate) fn request(&self, ix: &Indexes) -> Result<Req> {
        let index = index_of(ix, &self.ifname)?;
        Ok(match &self.orig {
            Some(o) => msgs::add_addr_as(&self.ifname, index, self.net, o),
            None => msgs::add_addr(&self.ifname, index, self.net),
        })
    }
}

impl Change for AddAddr {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.request(at.ix).map(|r| vec![r]))
    }
    /// On the host, before the namespaces: a gateway is there before its routes.
    fn stage(&self) -> Stage {
        Stage::at(&self.place, Stage::HostBuild)
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.ifname)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        json_of(&self.place, &self.ifname, &self.net)
    }
}

impl fmt::Display for AddAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+ address {} on {}",
            self.net,
            self.place.link(&self.ifname)
        )
    }
}

/// An address removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DelAddr {
    pub place: Place,
    pub ifname: String,
    pub net: IpNetwork,
}

impl DelAddr {
    pub(crate) fn request(&self, ix: &Indexes) -> Result<Req> {
        let index = index_of(ix, &self.ifname)?;
        Ok(msgs::del_addr(&self.ifname, index, self.net))
    }
}

impl Change for DelAddr {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.request(at.ix).map(|r| vec![r]))
    }
    /// On the host, last: after its replacement is in place.
    fn stage(&self) -> Stage {
        Stage::at(&self.place, Stage::HostFinish)
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.ifname)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        json_of(&self.place, &self.ifname, &self.net)
    }
}

impl fmt::Display for DelAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "- address {} on {}",
            self.net,
            self.place.link(&self.ifname)
        )
    }
}
