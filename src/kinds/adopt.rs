//! Taking over an object somebody built by hand (`apply --adopt`): it is kept exactly as it
//! is and only marked as the topology's, so that nothing inside it notices: a namespace keeps
//! its processes and sockets, a link its index, addresses and neighbours.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Stage};
use crate::plumbing::{Req, msgs};

/// What is taken over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Adoptee {
    /// A named namespace: its `lo` gets the mark (and is brought up, as nsfw's are).
    Namespace(String),
    /// A host link (a bridge, a veth's host end): its alias becomes the mark.
    Link(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Adopt {
    pub what: Adoptee,
}

impl Change for Adopt {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(vec![match &self.what {
            Adoptee::Namespace(_) => super::namespace::mark_request(at.mark),
            Adoptee::Link(name) => msgs::mark(name, at.mark),
        }]))
    }
    // Marked before anything else is done: links with the removals (so the nftables batch,
    // which follows them, never loads before the links it judges are nsfw's), namespaces
    // from inside in their stage.
    fn stage(&self) -> Stage {
        match self.what {
            Adoptee::Namespace(_) => Stage::Namespaces,
            Adoptee::Link(_) => Stage::Teardown,
        }
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        match &self.what {
            Adoptee::Namespace(n) => format!("namespace {n}"),
            Adoptee::Link(l) => format!("link {l}"),
        }
    }
    fn inside(&self) -> Option<&str> {
        match &self.what {
            Adoptee::Namespace(n) => Some(n),
            Adoptee::Link(_) => None,
        }
    }
    fn json(&self) -> (&'static str, Value) {
        match &self.what {
            Adoptee::Namespace(n) => ("adopt", json!({"namespace": n})),
            Adoptee::Link(l) => ("adopt", json!({"link": l})),
        }
    }
}

impl fmt::Display for Adopt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            Adoptee::Namespace(n) => write!(
                f,
                "~ namespace {n}: adopted in place (marked; its processes and links stay)"
            ),
            Adoptee::Link(l) => write!(f, "~ link {l}: adopted in place (marked)"),
        }
    }
}
