//! An interface's impairment: a netem root qdisc (`plumbing::qdisc`), or none.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Indexes, Stage, object_of};
use crate::netem::Netem;
use crate::plumbing::{Req, qdisc};
use crate::resources::Place;

/// The interface's impairment becomes `netem` (empty: none, the default root qdisc back);
/// `old` is what it had (None: no netem, or one nsfw cannot read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetNetem {
    pub place: Place,
    pub ifname: String,
    pub netem: Netem,
    pub old: Option<Netem>,
}

impl SetNetem {
    pub(crate) fn request(&self, ix: &Indexes) -> Result<Req> {
        let i = super::index_of(ix, &self.ifname)?;
        Ok(qdisc::converge(&self.ifname, i, &self.netem))
    }
}

impl Change for SetNetem {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.request(at.ix).map(|r| vec![r]))
    }
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
            "netem",
            json!({"interface": self.ifname, "namespace": self.place.ns(),
                   "old": self.old.map(|o| o.to_string()), "new": self.netem.to_string()}),
        )
    }
}

impl fmt::Display for SetNetem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let old = self.old.map_or("none".to_string(), |o| o.to_string());
        let (link, netem) = (self.place.link(&self.ifname), &self.netem);
        write!(f, "~ netem {link}: {old} → {netem}")
    }
}
