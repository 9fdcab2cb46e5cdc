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

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};

    use crate::netem::Netem;
    use crate::plumbing::qdisc::converge;
    use crate::rate::{Shape, Shaped};

    /// A change in place never grafts over a root that is no longer nsfw's: no REPLACE, no
    /// CREATE (the kernel then refuses when 6e73: is gone); a fresh tree never replaces.
    #[test]
    fn a_change_in_place_cannot_replace_a_foreign_root() {
        let n = |us| Netem {
            latency_us: Some(us),
            ..Netem::default()
        };
        let want = Shape {
            netem: n(2000),
            rate: None,
        };
        let had = Ok(Shaped {
            netem: n(1000),
            tbf: None,
        });
        let change = converge("a", 7, &want, Some(&had));
        assert_eq!(change.len(), 1);
        assert_eq!(change[0].flags, 0);
        let fresh = converge("a", 7, &want, None);
        assert!(fresh.iter().all(|r| r.flags == NLM_F_CREATE | NLM_F_EXCL));
        for r in change.iter().chain(&fresh) {
            assert_eq!(r.flags & NLM_F_REPLACE, 0);
        }
    }
}
