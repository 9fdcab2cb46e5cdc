//! The neighbour entries learnt on an interface, forgotten: addresses or MACs on its segment
//! changed, and an entry still naming the old MAC would hold for many seconds.

use std::fmt;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::{Change, Indexes, Stage, object_of};
use crate::plumbing::{Conn, neigh};
use crate::resources::Place;

/// An interface's neighbours forgotten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForgetNeighbours {
    pub place: Place,
    pub ifname: String,
}

impl ForgetNeighbours {
    /// Over `c`, bound to the step's place (a dump of the entries, then their deletion).
    pub(crate) fn apply(&self, c: &mut Conn, ix: &Indexes) -> Result<()> {
        let i = ix
            .get(&self.ifname)
            .ok_or_else(|| anyhow!("no interface {}", self.ifname))?;
        neigh::forget(c, *i, &self.ifname)
    }
}

impl Change for ForgetNeighbours {
    /// After the addresses and routes of the same place.
    fn stage(&self) -> Stage {
        Stage::at(&self.place, Stage::HostFinish)
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.ifname)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "neighbours",
            json!({"interface": self.ifname, "namespace": self.place.ns()}),
        )
    }
}

impl fmt::Display for ForgetNeighbours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "~ neighbours on {}: forgotten (an address or MAC on the segment changes)",
            self.place.link(&self.ifname)
        )
    }
}
