//! A VXLAN link's peer: an all-zeros forwarding entry (`plumbing::fdb`). nsfw owns every
//! such entry of the links it owns: one the file does not name goes.

use std::fmt;
use std::net::IpAddr;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Stage, index_of};
use crate::plumbing::{Req, Via, fdb};

/// A peer added to VXLAN link `link` of the host (its index looked up when sent: the link
/// may be made in the same run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddFdb {
    pub link: String,
    pub dst: IpAddr,
}

impl Change for AddFdb {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(index_of(at.ix, &self.link).map(|i| vec![fdb::add(&self.link, i, self.dst)]))
    }
    fn stage(&self) -> Stage {
        Stage::HostBuild
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        format!("link {}", self.link)
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "fdb",
            json!({"link": self.link, "dst": self.dst.to_string()}),
        )
    }
}

impl fmt::Display for AddFdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+ fdb {} 00:00:00:00:00:00 dst {}", self.link, self.dst)
    }
}

/// A peer removed from VXLAN link `link` (its index as observed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DelFdb {
    pub link: String,
    pub index: u32,
    pub dst: IpAddr,
    /// The entry's port, VNI and device where not the link's own (so the kernel deletes
    /// this entry and not the right one beside it).
    pub via: Via,
    pub why: &'static str,
}

impl Change for DelFdb {
    fn requests(&self, _: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(vec![fdb::del(
            &self.link, self.index, self.dst, self.via,
        )]))
    }
    fn stage(&self) -> Stage {
        Stage::Teardown
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        format!("link {}", self.link)
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "fdb",
            json!({"link": self.link, "dst": self.dst.to_string(), "port": self.via.port,
                "vni": self.via.vni, "ifindex": self.via.dev, "why": self.why}),
        )
    }
}

impl fmt::Display for DelFdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "- fdb {} 00:00:00:00:00:00 dst {}{}: {}",
            self.link, self.dst, self.via, self.why
        )
    }
}
