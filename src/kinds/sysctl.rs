//! A sysctl of the host or of a namespace (written from inside it), with its old value for
//! the record; `restore`: the value from before nsfw put back.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{Change, Stage};
use crate::plumbing::sysctl;
use crate::resources::Place;

/// A sysctl set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetSysctl {
    pub place: Place,
    pub key: String,
    pub old: Option<String>,
    pub new: String,
    /// Putting back the value from before nsfw.
    pub restore: bool,
}

impl SetSysctl {
    /// Written in the namespace of the calling thread.
    pub(crate) fn apply(&self) -> Result<()> {
        sysctl::write(&self.key, &self.new)
    }
}

impl Change for SetSysctl {
    fn stage(&self) -> Stage {
        Stage::at(&self.place, Stage::HostBuild)
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        match &self.place {
            Place::Host => "host sysctls".into(),
            Place::Ns(ns) => format!("namespace {ns}"),
        }
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "sysctl",
            json!({"name": self.key, "namespace": self.place.ns(), "old": self.old, "new": self.new}),
        )
    }
}

impl fmt::Display for SetSysctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SetSysctl { key, new, .. } = self;
        let at = match &self.place {
            Place::Host => String::new(),
            Place::Ns(ns) => format!("{ns}:"),
        };
        match &self.old {
            Some(o) => write!(f, "~ sysctl {at}{key}: {o} → {new}")?,
            None => write!(f, "~ sysctl {at}{key} → {new}")?,
        }
        if self.restore {
            write!(f, " (its value before nsfw)")?;
        }
        // Switched off by hand (it drops the link's IPv6 addresses): said, since the
        // addresses put back with it are the visible part of the repair.
        if key.ends_with(".disable_ipv6") && self.old.as_deref() == Some("1") && new == "0" {
            write!(f, " (IPv6 was switched off; the file gives the link IPv6)")?;
        }
        Ok(())
    }
}
