//! What every kind of link shares: its attributes, compared with the file's in one place and
//! one order whatever the kind (each kind says which it keeps), changed in one setlink; and a
//! link deleted.

use std::fmt;

use anyhow::Result;
use serde_json::{Value, json};

use super::{At, Change, Indexes, Stage, index_of, object_of};
use crate::plumbing::{Link, Req, msgs};
use crate::resources::{LinkSpec, Place};
use crate::topology::Mac;

/// One attribute of a link to change, with its old value for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkAttr {
    Mtu {
        old: u32,
        new: u32,
    },
    Mac {
        old: Option<Mac>,
        new: Mac,
    },
    Up,
    /// Administratively down again (a port nsfw brought up, given back as it was).
    Down,
    /// ARP back on (someone switched it off).
    Arp,
    /// A bridge's nf_call_iptables/ip6tables.
    NfCall {
        new: bool,
    },
    /// Hairpin mode on a bridge port (see `LinkSpec::hairpin`).
    Hairpin {
        new: bool,
    },
    /// Isolation of a bridge port (see `LinkSpec::isolated`).
    Isolated {
        new: bool,
    },
    /// A port of `new` (None: of no bridge).
    Master {
        old: Option<String>,
        new: Option<String>,
    },
}

impl fmt::Display for LinkAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |new: bool| if new { "off → on" } else { "on → off" };
        match self {
            LinkAttr::Mtu { old, new } => write!(f, "mtu {old} → {new}"),
            LinkAttr::Mac { old, new } => match old {
                Some(o) => write!(f, "mac {o} → {new}"),
                None => write!(f, "mac → {new}"),
            },
            LinkAttr::Up => write!(f, "state down → up"),
            LinkAttr::Down => write!(f, "state up → down"),
            LinkAttr::Arp => write!(f, "arp off → on"),
            LinkAttr::NfCall { new } => {
                write!(f, "bridged traffic to the IP hooks {}", on_off(*new))
            }
            LinkAttr::Hairpin { new } => write!(f, "hairpin {}", on_off(*new)),
            LinkAttr::Isolated { new } => write!(f, "isolated {}", on_off(*new)),
            LinkAttr::Master { old, new } => write!(
                f,
                "master {} → {}",
                old.as_deref().unwrap_or("none"),
                new.as_deref().unwrap_or("none")
            ),
        }
    }
}

impl LinkAttr {
    fn json(&self) -> Value {
        match self {
            LinkAttr::Mtu { old, new } => json!({"attr": "mtu", "old": old, "new": new}),
            LinkAttr::Mac { old, new } => {
                json!({"attr": "mac", "old": old.map(|m| m.to_string()), "new": new.to_string()})
            }
            LinkAttr::Up => json!({"attr": "state", "old": "down", "new": "up"}),
            LinkAttr::Down => json!({"attr": "state", "old": "up", "new": "down"}),
            LinkAttr::Arp => json!({"attr": "arp", "old": "off", "new": "on"}),
            LinkAttr::NfCall { new } => {
                json!({"attr": "nf_call_iptables", "old": !new, "new": new})
            }
            LinkAttr::Hairpin { new } => json!({"attr": "hairpin", "old": !new, "new": new}),
            LinkAttr::Isolated { new } => json!({"attr": "isolated", "old": !new, "new": new}),
            LinkAttr::Master { old, new } => json!({"attr": "master", "old": old, "new": new}),
        }
    }
}

/// The attributes a kind of link keeps as the file says, beyond the MTU, ARP and the link
/// being up, which every kind keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Keeps {
    /// A bridge's nf_call_iptables/ip6tables.
    pub nf_call: bool,
    /// The MAC, where the file (or a derivation) gives one.
    pub mac: bool,
    /// Its bridge, and hairpin mode on it: a port of one of nsfw's bridges.
    pub port: bool,
}

/// A link as the kernel holds it, for the comparison: for a bridge port, also the name of its
/// master (None: none) and whether that master is made anew in this run (its ports join it
/// again).
pub(crate) struct Seen<'a> {
    pub link: &'a Link,
    pub master: Option<&'a str>,
    pub master_new: bool,
}

impl<'a> Seen<'a> {
    /// A link that is no bridge port.
    pub(crate) fn alone(link: &'a Link) -> Seen<'a> {
        Seen {
            link,
            master: None,
            master_new: false,
        }
    }
}

/// The attributes of `seen` that differ from `spec`, among those `keeps` names, in the one
/// order every kind shares: nf_call, master, hairpin, MTU, MAC, ARP, up.
pub(crate) fn differ(spec: &LinkSpec, seen: &Seen, keeps: Keeps) -> Vec<LinkAttr> {
    let l = seen.link;
    let mut attrs = Vec::new();
    if keeps.nf_call && l.nf_call != spec.nf_call {
        attrs.push(LinkAttr::NfCall { new: spec.nf_call });
    }
    if keeps.port {
        let moves = seen.master != spec.master.as_deref() || seen.master_new;
        if moves {
            attrs.push(LinkAttr::Master {
                old: seen.master.map(str::to_string),
                new: spec.master.clone(),
            });
        }
        // A port made anew (another master) starts without hairpin: set it again after.
        if l.hairpin != spec.hairpin || (moves && spec.hairpin) {
            attrs.push(LinkAttr::Hairpin { new: spec.hairpin });
        }
        // Likewise isolation (a port flag the bridge forgets with the port).
        if l.isolated != spec.isolated || (moves && spec.isolated) {
            attrs.push(LinkAttr::Isolated { new: spec.isolated });
        }
    }
    if spec.mtu != 0 && l.mtu != spec.mtu {
        attrs.push(LinkAttr::Mtu {
            old: l.mtu,
            new: spec.mtu,
        });
    }
    if keeps.mac
        && let Some(mac) = spec.mac
        && l.mac != Some(mac)
    {
        attrs.push(LinkAttr::Mac {
            old: l.mac,
            new: mac,
        });
    }
    if l.noarp {
        attrs.push(LinkAttr::Arp);
    }
    if !l.up {
        attrs.push(LinkAttr::Up);
    }
    attrs
}

/// Attributes of a link to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetLink {
    pub place: Place,
    pub name: String,
    pub attrs: Vec<LinkAttr>,
}

impl SetLink {
    /// A foreign port let go of its bridge: before its bridge may be deleted.
    fn lets_go(&self) -> bool {
        self.attrs
            .iter()
            .any(|a| matches!(a, LinkAttr::Master { new: None, .. }))
    }

    /// One setlink for the link's own attributes (`ix`: the indexes of the bridges it joins,
    /// in its place), then one request per bridge or bridge-port option.
    pub(crate) fn requests(&self, ix: &Indexes) -> Result<Vec<Req>> {
        let name = &self.name;
        let (mut mtu, mut mac, mut up, mut master, mut arp) = (None, None, false, None, false);
        let mut out = Vec::new();
        for a in &self.attrs {
            match a {
                LinkAttr::NfCall { new } => out.push(msgs::bridge_nf_call(name, *new)),
                LinkAttr::Hairpin { new } => out.push(msgs::hairpin(name, *new)),
                LinkAttr::Isolated { new } => out.push(msgs::isolated(name, *new)),
                LinkAttr::Mtu { new, .. } => mtu = Some(*new),
                LinkAttr::Mac { new, .. } => mac = Some(*new),
                LinkAttr::Up => up = true,
                LinkAttr::Down => out.push(msgs::set_down(name)),
                LinkAttr::Arp => arp = true,
                LinkAttr::Master { new, .. } => {
                    master = Some(match new {
                        Some(b) => Some(index_of(ix, b)?),
                        None => None,
                    })
                }
            }
        }
        out.insert(0, msgs::set_link(name, mtu, mac, up, master, arp));
        Ok(out)
    }
}

impl Change for SetLink {
    fn requests(&self, at: &At) -> Option<Result<Vec<Req>>> {
        Some(SetLink::requests(self, at.ix))
    }
    fn stage(&self) -> Stage {
        match self.place {
            Place::Host if self.lets_go() => Stage::Teardown,
            _ => Stage::at(&self.place, Stage::HostBuild),
        }
    }
    fn mark(&self) -> char {
        '~'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.name)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        let attrs: Vec<Value> = self.attrs.iter().map(LinkAttr::json).collect();
        (
            "link",
            json!({"name": self.name, "namespace": self.place.ns(), "attrs": attrs}),
        )
    }
}

impl fmt::Display for SetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a: Vec<String> = self.attrs.iter().map(|a| a.to_string()).collect();
        write!(
            f,
            "~ link {}: {}",
            self.place.link(&self.name),
            a.join(", ")
        )
    }
}

/// A link deleted (its index as observed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeleteLink {
    pub place: Place,
    pub name: String,
    pub index: u32,
    pub kind: Option<String>,
    pub why: &'static str,
}

impl DeleteLink {
    pub(crate) fn of(place: Place, l: &Link, why: &'static str) -> DeleteLink {
        DeleteLink {
            place,
            name: l.name.clone(),
            index: l.index,
            kind: l.kind.clone(),
            why,
        }
    }

    pub(crate) fn request(&self) -> Req {
        msgs::del_link(&self.name, self.index)
    }
}

impl Change for DeleteLink {
    fn requests(&self, _: &At) -> Option<Result<Vec<Req>>> {
        Some(Ok(vec![self.request()]))
    }
    fn stage(&self) -> Stage {
        Stage::Teardown
    }
    fn mark(&self) -> char {
        '-'
    }
    fn object(&self) -> String {
        object_of(&self.place, &self.name)
    }
    fn inside(&self) -> Option<&str> {
        self.place.ns()
    }
    fn json(&self) -> (&'static str, Value) {
        (
            "link",
            json!({"name": self.name, "namespace": self.place.ns(), "link_kind": self.kind, "why": self.why}),
        )
    }
}

impl fmt::Display for DeleteLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "- link {} ({}): {}",
            self.place.link(&self.name),
            self.kind.as_deref().unwrap_or("device"),
            self.why
        )
    }
}
