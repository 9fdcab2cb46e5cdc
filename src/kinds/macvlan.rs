//! A macvlan (or macvtap) child of a host uplink nsfw does not own: a namespace's interface
//! on the uplink's LAN, made from the host with the uplink's index and born in its namespace
//! (IFLA_NET_NS_FD), then brought up from inside; or the host's shim on the uplink (marked,
//! up), through which the host reaches its children. Its mode and uplink are what it is made
//! with: a child with another mode or on another uplink is made again (see `plan::links`).

use std::fmt;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::link::{Keeps, LinkAttr, Seen, differ};
use super::{At, Change, Stage, index_of, object_of};
use crate::plumbing::{Link, Req, msgs};
use crate::resources::{LinkKind, LinkSpec, Place};
use crate::topology::{Mac, MacvlanMode};

/// What a child keeps beyond MTU, ARP and up: its MAC (the LAN's ARP caches know it).
const KEEPS: Keeps = Keeps {
    nf_call: false,
    mac: true,
    port: false,
};

/// Whether the kernel's `have` is the child `spec` describes, on uplink index `uplink`: its
/// kind, its mode, its uplink. None when it is: else why it is made again.
pub(crate) fn mismatch(spec: &LinkSpec, have: &Link, uplink: Option<u32>) -> Option<&'static str> {
    let LinkKind::Macvlan { mode, tap, .. } = &spec.kind else {
        return None;
    };
    let kind = if *tap { "macvtap" } else { "macvlan" };
    if have.kind.as_deref() != Some(kind) {
        Some("not a macvlan of the kind the file says")
    } else if have.macvlan_mode != Some(mode.number()) {
        Some("its mode differs from the file's")
    } else if uplink.is_none() || have.peer_index != uplink {
        Some("it is not on the uplink the file says")
    } else {
        None
    }
}

/// Why the host's link `up` (the host's addresses `host_addrs`, with their links) cannot be
/// the uplink of child
/// `spec` (with addresses `addrs`),
/// found before anything changes: a link nsfw made (another topology's bridge, this file's
/// veth host end, a shim: flushing its owner would take the child with it), an MTU the kernel
/// would refuse part-way, or one of the host's own addresses on it (an ARP conflict on the
/// LAN).
pub(crate) fn unfit_uplink<'a>(
    spec: &LinkSpec,
    up: &Link,
    host_addrs: &[(std::net::IpAddr, &str)],
    mut addrs: impl Iterator<Item = &'a ipnetwork::IpNetwork>,
) -> Option<String> {
    if let Some(owner) = up
        .alias
        .as_deref()
        .filter(|a| crate::owner::Mark::parse(a).is_some())
    {
        return Some(format!(
            "it is a link nsfw made (marked {owner:?}); an uplink must be the host's own interface"
        ));
    }
    if spec.mtu > up.mtu {
        return Some(format!(
            "mtu = {} is above the uplink's {} (a child's MTU is at most its uplink's)",
            spec.mtu, up.mtu
        ));
    }
    let (ip, on) = addrs.find_map(|a| host_addrs.iter().find(|(h, _)| *h == a.ip()))?;
    let on = match *on == up.name {
        true => "the uplink".to_string(),
        false => (*on).to_string(),
    };
    Some(format!("address {ip} is the host's own (on {on})"))
}

/// Its attributes that differ from the file's; `uplink_mtu` (the uplink's MTU, when the host
/// has it) is the MTU of a child the file gives none, as the kernel made it: a child whose
/// MTU was changed by hand is put back.
pub(crate) fn attrs(spec: &LinkSpec, have: &Link, uplink_mtu: Option<u32>) -> Vec<LinkAttr> {
    match uplink_mtu.filter(|_| spec.mtu == 0) {
        Some(mtu) => differ(
            &LinkSpec {
                mtu,
                ..spec.clone()
            },
            &Seen::alone(have),
            KEEPS,
        ),
        None => differ(spec, &Seen::alone(have), KEEPS),
    }
}

/// A child made on its uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CreateMacvlan {
    /// Where it lives: a namespace (born there from the host), or the host (the shim).
    pub place: Place,
    pub name: String,
    pub uplink: String,
    pub mode: MacvlanMode,
    pub tap: bool,
    /// 0: the uplink's.
    pub mtu: u32,
    pub mac: Option<Mac>,
    pub no_link_local: bool,
    /// Its owner's mark, set from inside too: a child moved out of its namespace carries
    /// it, and is found as nsfw's wherever nsfw looks.
    pub alias: String,
}

impl CreateMacvlan {
    pub(crate) fn of(place: Place, spec: &LinkSpec, alias: &str) -> Option<CreateMacvlan> {
        let LinkKind::Macvlan { uplink, mode, tap } = &spec.kind else {
            return None;
        };
        Some(CreateMacvlan {
            place,
            name: spec.name.clone(),
            uplink: uplink.clone(),
            mode: *mode,
            tap: *tap,
            mtu: spec.mtu,
            mac: spec.mac,
            no_link_local: spec.no_link_local,
            alias: alias.to_string(),
        })
    }

    /// From the host: the child on its uplink (by index), born in its namespace; the shim
    /// marked and brought up at once.
    fn make(&self, at: &At) -> Result<Vec<Req>> {
        let index = index_of(at.ix, &self.uplink)?;
        let ns = match &self.place {
            Place::Host => None,
            Place::Ns(n) => Some(at.ns.ok_or_else(|| anyhow!("namespace {n} is not open"))?),
        };
        let kind = (self.mode, self.tap);
        let uplink = (self.uplink.as_str(), index);
        let mut reqs = vec![msgs::create_macvlan(
            &self.name, uplink, kind, self.mtu, self.mac, ns,
        )];
        if self.place == Place::Host {
            reqs.extend(self.finish_inside());
        }
        Ok(reqs)
    }
}

impl Change for CreateMacvlan {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(self.make(at))
    }
    fn born_in(&self) -> Option<&str> {
        self.place.ns()
    }
    /// Marked, no IPv6 link-local address unless nsfw gives one, then up.
    fn finish_inside(&self) -> Vec<Req> {
        let mut reqs = vec![msgs::mark(&self.name, &self.alias)];
        if self.no_link_local {
            reqs.push(msgs::no_link_local(&self.name));
        }
        reqs.push(msgs::up(&self.name));
        reqs
    }
    fn stage(&self) -> Stage {
        Stage::HostBuild
    }
    fn mark(&self) -> char {
        '+'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.name)
    }
    fn json(&self) -> (&'static str, Value) {
        let kind = if self.tap { "macvtap" } else { "macvlan" };
        (
            kind,
            json!({"name": self.name, "namespace": self.place.ns(), "uplink": self.uplink, "mode": self.mode.as_str(), "mtu": (self.mtu != 0).then_some(self.mtu), "mac": self.mac.map(|m| m.to_string())}),
        )
    }
}

impl fmt::Display for CreateMacvlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.tap { "macvtap" } else { "macvlan" };
        let what = if self.place == Place::Host {
            " (the host's shim)"
        } else {
            ""
        };
        write!(
            f,
            "+ {kind} {} on {} mode {}{what}",
            self.place.link(&self.name),
            self.uplink,
            self.mode
        )?;
        if self.mtu != 0 {
            write!(f, " mtu {}", self.mtu)?;
        }
        if let Some(mac) = self.mac {
            write!(f, " mac {mac}")?;
        }
        Ok(())
    }
}
