//! An interface's qdiscs: its impairment and rate limit (`plumbing::qdisc`: a netem root, a
//! tbf root, or a netem with a tbf below it), or none. Named for the first of them.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Indexes, Stage, object_of};
use crate::plumbing::{Req, qdisc};
use crate::rate::{Shape, Shaped};
use crate::resources::Place;

/// The interface's qdiscs come to say `shape` (empty: none, the default root qdisc back);
/// `old` is what nsfw's said (None: the kernel's default root; Err: nsfw's, but holding
/// something the file cannot say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetNetem {
    pub place: Place,
    pub ifname: String,
    pub shape: Shape,
    pub old: Option<Result<Shaped, String>>,
}

impl SetNetem {
    pub(crate) fn requests(&self, ix: &Indexes) -> Result<Vec<Req>> {
        let i = super::index_of(ix, &self.ifname)?;
        Ok(qdisc::converge(
            &self.ifname,
            i,
            &self.shape,
            self.old.as_ref(),
        ))
    }

    fn old_text(&self) -> String {
        match &self.old {
            None => "none".to_string(),
            Some(Ok(s)) => s.to_string(),
            Some(Err(why)) => why.clone(),
        }
    }
}

impl Change for SetNetem {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.requests(at.ix))
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
            "qdisc",
            json!({"interface": self.ifname, "namespace": self.place.ns(),
                   "old": self.old.as_ref().map(|_| self.old_text()),
                   "new": self.shape.to_string()}),
        )
    }
}

impl fmt::Display for SetNetem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = self.place.link(&self.ifname);
        write!(f, "~ qdisc {link}: {} → {}", self.old_text(), self.shape)
    }
}
