//! A named network namespace: made (and marked from inside, `lo` up with the owner's alias,
//! before it is published in /run/netns), marked again when someone took `lo` down, deleted
//! with the host ends of the veth pairs into it.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Stage};
use crate::plumbing::{Req, msgs};

/// A namespace's mark, sent from inside it: `lo` up with the alias `mark`.
pub(crate) fn mark_request(mark: &str) -> Req {
    msgs::mark_lo(mark)
}

/// A namespace deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeleteNamespace {
    pub name: String,
    /// Host veth ends whose peers live in the namespace: they go with it. Deleting them one
    /// by one would cost an RCU grace period (~20 ms) each; the kernel tears a dying
    /// namespace's pairs down in one batch.
    pub takes: Vec<String>,
    pub why: &'static str,
}

impl Change for DeleteNamespace {
    fn stage(&self) -> Stage {
        Stage::Teardown
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.name)
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "namespace",
            json!({"name": self.name, "takes": self.takes, "why": self.why}),
        )
    }
}

impl fmt::Display for DeleteNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "- namespace {}", self.name)?;
        if !self.takes.is_empty() {
            write!(f, " (with {})", self.takes.join(", "))?;
        }
        write!(f, ": {}", self.why)
    }
}

/// A namespace made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateNamespace {
    pub name: String,
}

impl Change for CreateNamespace {
    fn stage(&self) -> Stage {
        Stage::Namespaces
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.name)
    }
    fn json(&self) -> (&'static str, Value) {
        ("namespace", json!({"name": self.name}))
    }
}

impl fmt::Display for CreateNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+ namespace {}", self.name)
    }
}

/// `lo` up and marked with the owner's alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MarkNamespace {
    pub name: String,
}

impl Change for MarkNamespace {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(vec![mark_request(at.mark)]))
    }
    fn stage(&self) -> Stage {
        Stage::Namespaces
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.name)
    }
    fn inside(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn json(&self) -> (&'static str, Value) {
        ("namespace", json!({"name": self.name}))
    }
}

impl fmt::Display for MarkNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "~ namespace {}: lo down → up", self.name)
    }
}
