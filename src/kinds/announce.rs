//! An address that moved between a port and its bridge (`take_addresses`, and back),
//! announced on its new interface: the LAN's neighbour entries name the old MAC otherwise, and
//! nothing of the LAN reaches the host until they go stale (`plumbing::announce`). Likewise an
//! IPv4 address arriving on a namespace's new interface (another namespace may have held it in
//! an earlier run): announced from inside, by the kernel, in the namespace's visit.

use std::fmt;

use anyhow::Result;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use super::{At, Change, Stage, index_of, object_of};
use crate::plumbing::Req;
use crate::resources::Place;
use crate::topology::Mac;

/// Address `net` announced on interface `ifname` of `place`, at `mac` (the interface's own,
/// inside a namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announce {
    pub place: Place,
    pub ifname: String,
    /// Inside a namespace: the host end of the interface's pair, a bridge port that must
    /// forward before the announcement can cross it.
    pub port: Option<BridgePort>,
    pub net: IpNetwork,
    pub mac: Mac,
}

/// The host end of a namespace's interface, and the bridge it is a port of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BridgePort {
    pub name: String,
    pub bridge: String,
}

impl Announce {
    /// On the host, sent as raw frames: a lost announcement costs the LAN seconds, not the run, so a failure is a
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
    /// After the address is in place: on the host, added in the host build; inside, once the
    /// namespace's visit made it, in a visit of its own (`plan::execute::announce_inside`).
    fn stage(&self) -> Stage {
        Stage::HostFinish
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
            "announce",
            json!({"interface": self.ifname, "namespace": self.place.ns(), "address": self.net.ip().to_string(), "mac": self.mac.to_string()}),
        )
    }
    /// Inside a namespace, the kernel's own gratuitous ARP; an IPv6 address is not planned
    /// there (`plan::neighbours` announces IPv4 only), and sends nothing. On the host, none:
    /// raw frames (`apply`).
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        let Place::Ns(_) = self.place else {
            return None;
        };
        let IpNetwork::V4(net) = self.net else {
            return Some(Ok(Vec::new()));
        };
        Some(index_of(at.ix, &self.ifname).map(|i| {
            vec![crate::plumbing::announce::by_kernel(
                &self.ifname,
                i,
                net.ip(),
            )]
        }))
    }
}

impl fmt::Display for Announce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.net.is_ipv4() {
            "gratuitous ARP"
        } else {
            "unsolicited neighbour advertisement"
        };
        match &self.place {
            Place::Host => write!(
                f,
                "~ announce {} on {} ({how}: the address moved)",
                self.net.ip(),
                self.ifname
            ),
            Place::Ns(_) => write!(
                f,
                "~ announce {} on {} ({how}: the address may have been held before)",
                self.net.ip(),
                self.place.link(&self.ifname)
            ),
        }
    }
}
