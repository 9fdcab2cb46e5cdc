//! A namespace's resolv.conf, `/etc/netns/<ns>/resolv.conf` (`plumbing::files`): written
//! with nsfw's marker first, removed when no longer wanted.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{Change, Stage};
use crate::plumbing::{files, resolv_path};

fn json_of(ns: &str) -> (&'static str, Value) {
    (
        "file",
        json!({"path": resolv_path(ns).display().to_string(), "namespace": ns}),
    )
}

/// A resolv.conf written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriteResolv {
    pub ns: String,
    pub content: String,
}

impl WriteResolv {
    pub(crate) fn apply(&self) -> Result<()> {
        files::write_resolv(&self.ns, &self.content)
    }
}

impl Change for WriteResolv {
    fn stage(&self) -> Stage {
        Stage::HostFinish
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.ns)
    }
    fn json(&self) -> (&'static str, Value) {
        json_of(&self.ns)
    }
}

impl fmt::Display for WriteResolv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+ file {}", resolv_path(&self.ns).display())
    }
}

/// A resolv.conf removed (with its directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoveResolv {
    pub ns: String,
}

impl RemoveResolv {
    pub(crate) fn apply(&self) -> Result<()> {
        files::remove_resolv(&self.ns)
    }
}

impl Change for RemoveResolv {
    fn stage(&self) -> Stage {
        Stage::Teardown
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        format!("namespace {}", self.ns)
    }
    fn json(&self) -> (&'static str, Value) {
        json_of(&self.ns)
    }
}

impl fmt::Display for RemoveResolv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "- file {}", resolv_path(&self.ns).display())
    }
}
