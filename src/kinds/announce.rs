//! An address that moved between a port and its bridge (`take_addresses`, and back),
//! announced on its new interface: the LAN's neighbour entries name the old MAC otherwise, and
//! nothing of the LAN reaches the host until they go stale (`plumbing::announce`).

use std::fmt;

use anyhow::Result;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use super::{Change, Stage, object_of};
use crate::resources::Place;
use crate::topology::Mac;

/// Address `net` announced on host interface `ifname`, at `mac`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announce {
    pub ifname: String,
    pub net: IpNetwork,
    pub mac: Mac,
}

impl Announce {
    /// Sent: a lost announcement costs the LAN seconds, not the run, so a failure is a
    /// warning.
    pub(crate) fn apply(&self) -> Result<()> {
        if let Err(e) = crate::plumbing::announce::announce(&self.ifname, self.net.ip(), self.mac.0)
        {
            crate::warning!(
                "{e:#}: the LAN's neighbour entries for {} follow in a few seconds",
                self.net.ip()
            );
        }
        Ok(())
    }
}

impl Change for Announce {
    /// After the address is in place (added in the host build).
    fn stage(&self) -> Stage {
        Stage::HostFinish
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        object_of(&Place::Host, &self.ifname)
    }
    fn inside(&self) -> Option<&str> {
        None
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "announce",
            json!({"interface": self.ifname, "address": self.net.ip().to_string(), "mac": self.mac.to_string()}),
        )
    }
}

impl fmt::Display for Announce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.net.is_ipv4() {
            "gratuitous ARP"
        } else {
            "unsolicited neighbour advertisement"
        };
        write!(
            f,
            "~ announce {} on {} ({how}: the address moved)",
            self.net.ip(),
            self.ifname
        )
    }
}
