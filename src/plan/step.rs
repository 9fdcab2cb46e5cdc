//! One step of a plan: a change to one resource, with the old value where there is one, and
//! how it reads in `nsfw diff` (text and JSON, docs/json.md).

use std::fmt;

use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use crate::netem::Netem;
use crate::plumbing::resolv_path;
use crate::resources::{AddrOrig, Place, RouteSpec};
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
    /// A port of `new` (None: of no bridge).
    Master {
        old: Option<String>,
        new: Option<String>,
    },
}

impl fmt::Display for LinkAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkAttr::Mtu { old, new } => write!(f, "mtu {old} → {new}"),
            LinkAttr::Mac { old, new } => match old {
                Some(o) => write!(f, "mac {o} → {new}"),
                None => write!(f, "mac → {new}"),
            },
            LinkAttr::Up => write!(f, "state down → up"),
            LinkAttr::Arp => write!(f, "arp off → on"),
            LinkAttr::NfCall { new } => write!(
                f,
                "bridged traffic to the IP hooks {}",
                if *new { "off → on" } else { "on → off" }
            ),
            LinkAttr::Hairpin { new } => {
                write!(f, "hairpin {}", if *new { "off → on" } else { "on → off" })
            }
            LinkAttr::Master { old, new } => write!(
                f,
                "master {} → {}",
                old.as_deref().unwrap_or("none"),
                new.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// One change to the kernel or the file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    DeleteNamespace {
        name: String,
        /// Host veth ends whose peers live in the namespace: they go with it. Deleting them one
        /// by one would cost an RCU grace period (~20 ms) each; the kernel tears a dying
        /// namespace's pairs down in one batch.
        takes: Vec<String>,
        why: &'static str,
    },
    DeleteLink {
        place: Place,
        name: String,
        index: u32,
        kind: Option<String>,
        why: &'static str,
    },
    RemoveResolv {
        ns: String,
    },
    CreateNamespace {
        name: String,
    },
    /// `lo` up and marked with the owner's alias.
    MarkNamespace {
        name: String,
    },
    CreateBridge {
        name: String,
        mtu: u32,
        mac: Mac,
        /// nf_call_iptables/ip6tables on (see `LinkSpec::nf_call`).
        nf_call: bool,
    },
    CreateVeth {
        ns: String,
        host: String,
        peer: String,
        bridge: String,
        mtu: u32,
        /// The namespace end's MAC, and the host end's.
        mac: Option<Mac>,
        host_mac: Option<Mac>,
        /// addrgenmode none on both ends.
        no_link_local: bool,
        /// Hairpin mode on the host end's bridge port.
        hairpin: bool,
    },
    SetLink {
        place: Place,
        name: String,
        attrs: Vec<LinkAttr>,
    },
    AddAddr {
        place: Place,
        ifname: String,
        net: IpNetwork,
        /// Flags and lifetimes of an address given back to a physical port (None: nsfw's).
        orig: Option<AddrOrig>,
    },
    DelAddr {
        place: Place,
        ifname: String,
        net: IpNetwork,
    },
    SetRoute {
        place: Place,
        route: RouteSpec,
        /// What was there to the same destination; `again`: it looked right but an address it
        /// depends on changes in this run.
        old: Option<RouteSpec>,
        again: bool,
    },
    DelRoute {
        place: Place,
        route: RouteSpec,
    },
    SetSysctl {
        place: Place,
        key: String,
        old: Option<String>,
        new: String,
        /// Putting back the value from before nsfw.
        restore: bool,
    },
    WriteResolv {
        ns: String,
        content: String,
    },
    /// Forget the neighbour entries learnt on an interface: addresses or MACs on its segment
    /// changed, and an entry still naming the old MAC would hold for many seconds.
    ForgetNeighbours {
        place: Place,
        ifname: String,
    },
    /// The interface's impairment becomes `netem` (empty: none, the default root qdisc back);
    /// `old` is what it had (None: no netem, or one nsfw cannot read).
    SetNetem {
        place: Place,
        ifname: String,
        netem: Netem,
        old: Option<Netem>,
    },
}

/// The order in which the executor runs steps: a stage at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Removals, so names are free.
    Teardown,
    Namespaces,
    /// Bridges, veth pairs, host link settings, host addresses that are added.
    HostBuild,
    /// Everything inside namespaces, one visit per namespace.
    NsConfig,
    /// Host addresses that go (after their replacements are in place), routes, files.
    HostFinish,
}

impl Stage {
    /// What the stage is doing, for the progress line.
    pub(crate) fn doing(self) -> &'static str {
        match self {
            Stage::Teardown => "removing",
            Stage::Namespaces => "creating namespaces",
            Stage::HostBuild => "building the host side",
            Stage::NsConfig => "configuring namespaces",
            Stage::HostFinish => "finishing",
        }
    }
}

impl Step {
    pub(crate) fn stage(&self) -> Stage {
        match self {
            Step::DeleteNamespace { .. } | Step::RemoveResolv { .. } => Stage::Teardown,
            Step::DeleteLink { .. } => Stage::Teardown,
            Step::CreateNamespace { .. } | Step::MarkNamespace { .. } => Stage::Namespaces,
            Step::CreateBridge { .. } | Step::CreateVeth { .. } => Stage::HostBuild,
            Step::SetLink { place, attrs, .. } => match place {
                // A foreign port is let go before its bridge may be deleted.
                Place::Host
                    if attrs
                        .iter()
                        .any(|a| matches!(a, LinkAttr::Master { new: None, .. })) =>
                {
                    Stage::Teardown
                }
                Place::Host => Stage::HostBuild,
                Place::Ns(_) => Stage::NsConfig,
            },
            Step::AddAddr { place, .. } | Step::SetSysctl { place, .. } => match place {
                Place::Host => Stage::HostBuild,
                Place::Ns(_) => Stage::NsConfig,
            },
            Step::DelAddr { place, .. }
            | Step::SetRoute { place, .. }
            | Step::DelRoute { place, .. } => match place {
                Place::Host => Stage::HostFinish,
                Place::Ns(_) => Stage::NsConfig,
            },
            Step::WriteResolv { .. } => Stage::HostFinish,
            Step::ForgetNeighbours { place, .. } | Step::SetNetem { place, .. } => match place {
                Place::Host => Stage::HostFinish,
                Place::Ns(_) => Stage::NsConfig,
            },
        }
    }

    /// The namespace a step works inside, if any (the executor visits each once per stage).
    pub(crate) fn inside(&self) -> Option<&str> {
        match self {
            Step::SetLink { place, .. }
            | Step::AddAddr { place, .. }
            | Step::DelAddr { place, .. }
            | Step::SetRoute { place, .. }
            | Step::DelRoute { place, .. }
            | Step::SetSysctl { place, .. }
            | Step::ForgetNeighbours { place, .. }
            | Step::SetNetem { place, .. }
            | Step::DeleteLink { place, .. } => place.ns(),
            Step::MarkNamespace { name } => Some(name),
            _ => None,
        }
    }

    /// `+` create, `-` delete, `~` modify.
    pub(crate) fn mark(&self) -> char {
        match self {
            Step::DeleteNamespace { .. }
            | Step::DeleteLink { .. }
            | Step::RemoveResolv { .. }
            | Step::DelAddr { .. }
            | Step::DelRoute { .. } => '-',
            Step::CreateNamespace { .. }
            | Step::CreateBridge { .. }
            | Step::CreateVeth { .. }
            | Step::AddAddr { .. }
            | Step::WriteResolv { .. } => '+',
            Step::SetRoute {
                old: None,
                again: false,
                ..
            } => '+',
            _ => '~',
        }
    }

    /// What the change concerns, for grouping: a namespace, a host link, the host's sysctls.
    pub(crate) fn object(&self) -> String {
        let on = |place: &Place, ifname: &str| match place {
            Place::Host => format!("link {ifname}"),
            Place::Ns(ns) => format!("namespace {ns}"),
        };
        match self {
            Step::DeleteLink { place, name, .. } | Step::SetLink { place, name, .. } => {
                on(place, name)
            }
            Step::CreateBridge { name, .. } => format!("link {name}"),
            Step::AddAddr { place, ifname, .. } | Step::DelAddr { place, ifname, .. } => {
                on(place, ifname)
            }
            Step::DeleteNamespace { name, .. }
            | Step::CreateNamespace { name }
            | Step::MarkNamespace { name } => format!("namespace {name}"),
            Step::CreateVeth { ns, .. }
            | Step::RemoveResolv { ns }
            | Step::WriteResolv { ns, .. } => {
                format!("namespace {ns}")
            }
            Step::SetRoute { place, .. } | Step::DelRoute { place, .. } => match place {
                Place::Host => "host routes".into(),
                Place::Ns(ns) => format!("namespace {ns}"),
            },
            Step::SetSysctl { place, .. } => match place {
                Place::Host => "host sysctls".into(),
                Place::Ns(ns) => format!("namespace {ns}"),
            },
            Step::ForgetNeighbours { place, ifname } | Step::SetNetem { place, ifname, .. } => {
                on(place, ifname)
            }
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mark();
        match self {
            Step::DeleteNamespace { name, takes, why } => {
                write!(f, "- namespace {name}")?;
                if !takes.is_empty() {
                    write!(f, " (with {})", takes.join(", "))?;
                }
                write!(f, ": {why}")
            }
            Step::DeleteLink {
                place,
                name,
                kind,
                why,
                ..
            } => write!(
                f,
                "- link {} ({}): {why}",
                place.link(name),
                kind.as_deref().unwrap_or("device")
            ),
            Step::RemoveResolv { ns } => write!(f, "- file {}", resolv_path(ns).display()),
            Step::CreateNamespace { name } => write!(f, "+ namespace {name}"),
            Step::MarkNamespace { name } => write!(f, "~ namespace {name}: lo down → up"),
            Step::CreateBridge { name, mtu, mac, .. } => {
                write!(f, "+ bridge {name} mtu {mtu} mac {mac}")
            }
            Step::CreateVeth {
                ns,
                host,
                peer,
                bridge,
                mtu,
                mac,
                ..
            } => {
                write!(f, "+ veth {host} (on {bridge}) ⇄ {ns}:{peer} mtu {mtu}")?;
                if let Some(mac) = mac {
                    write!(f, " mac {mac}")?;
                }
                Ok(())
            }
            Step::SetLink { place, name, attrs } => {
                let a: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
                write!(f, "~ link {}: {}", place.link(name), a.join(", "))
            }
            Step::AddAddr {
                place, ifname, net, ..
            }
            | Step::DelAddr { place, ifname, net } => {
                write!(f, "{m} address {net} on {}", place.link(ifname))
            }
            Step::SetRoute {
                place,
                route,
                old,
                again,
            } => {
                let at = match place {
                    Place::Host => "host".to_string(),
                    Place::Ns(ns) => ns.clone(),
                };
                match (old, again) {
                    (_, true) => write!(
                        f,
                        "~ route {at}: {route} (again: an address under it changes)"
                    ),
                    (None, false) => write!(f, "+ route {at}: {route}"),
                    (Some(o), false) => write!(f, "~ route {at}: {o} → {route}"),
                }
            }
            Step::DelRoute { place, route } => {
                let at = match place {
                    Place::Host => "host".to_string(),
                    Place::Ns(ns) => ns.clone(),
                };
                write!(f, "- route {at}: {route}")
            }
            Step::SetSysctl {
                place,
                key,
                old,
                new,
                restore,
            } => {
                let at = match place {
                    Place::Host => String::new(),
                    Place::Ns(ns) => format!("{ns}:"),
                };
                match old {
                    Some(o) => write!(f, "~ sysctl {at}{key}: {o} → {new}")?,
                    None => write!(f, "~ sysctl {at}{key} → {new}")?,
                }
                if *restore {
                    write!(f, " (its value before nsfw)")?;
                }
                Ok(())
            }
            Step::WriteResolv { ns, .. } => write!(f, "+ file {}", resolv_path(ns).display()),
            Step::ForgetNeighbours { place, ifname } => write!(
                f,
                "~ neighbours on {}: forgotten (an address or MAC on the segment changes)",
                place.link(ifname)
            ),
            Step::SetNetem {
                place,
                ifname,
                netem,
                old,
            } => {
                let old = old.map_or("none".to_string(), |o| o.to_string());
                write!(f, "~ netem {}: {old} → {netem}", place.link(ifname))
            }
        }
    }
}

fn op_word(mark: char) -> &'static str {
    match mark {
        '+' => "create",
        '-' => "delete",
        _ => "modify",
    }
}

impl Step {
    /// The change as a JSON object (docs/json.md).
    pub(crate) fn json(&self) -> Value {
        let (kind, fields) = match self {
            Step::DeleteLink {
                place,
                name,
                kind,
                why,
                ..
            } => (
                "link",
                json!({"name": name, "namespace": place.ns(), "link_kind": kind, "why": why}),
            ),
            Step::DeleteNamespace { name, takes, why } => (
                "namespace",
                json!({"name": name, "takes": takes, "why": why}),
            ),
            Step::CreateNamespace { name } | Step::MarkNamespace { name } => {
                ("namespace", json!({"name": name}))
            }
            Step::RemoveResolv { ns } | Step::WriteResolv { ns, .. } => (
                "file",
                json!({"path": resolv_path(ns).display().to_string(), "namespace": ns}),
            ),
            Step::CreateBridge { name, mtu, mac, .. } => (
                "bridge",
                json!({"name": name, "mtu": mtu, "mac": mac.to_string()}),
            ),
            Step::CreateVeth {
                ns,
                host,
                peer,
                bridge,
                mtu,
                mac,
                ..
            } => (
                "veth",
                json!({"name": host, "namespace": ns, "peer": peer, "bridge": bridge, "mtu": mtu, "mac": mac.map(|m| m.to_string())}),
            ),
            Step::SetLink { place, name, attrs } => {
                let attrs: Vec<Value> = attrs
                    .iter()
                    .map(|a| match a {
                        LinkAttr::Mtu { old, new } => json!({"attr": "mtu", "old": old, "new": new}),
                        LinkAttr::Mac { old, new } => {
                            json!({"attr": "mac", "old": old.map(|m| m.to_string()), "new": new.to_string()})
                        }
                        LinkAttr::Up => json!({"attr": "state", "old": "down", "new": "up"}),
                        LinkAttr::Arp => json!({"attr": "arp", "old": "off", "new": "on"}),
                        LinkAttr::NfCall { new } => json!({"attr": "nf_call_iptables", "old": !new, "new": new}),
                        LinkAttr::Hairpin { new } => json!({"attr": "hairpin", "old": !new, "new": new}),
                        LinkAttr::Master { old, new } => json!({"attr": "master", "old": old, "new": new}),
                    })
                    .collect();
                (
                    "link",
                    json!({"name": name, "namespace": place.ns(), "attrs": attrs}),
                )
            }
            Step::AddAddr {
                place, ifname, net, ..
            }
            | Step::DelAddr { place, ifname, net } => (
                "address",
                json!({"address": net.to_string(), "interface": ifname, "namespace": place.ns()}),
            ),
            Step::SetRoute {
                place, route, old, ..
            } => (
                "route",
                json!({"namespace": place.ns(), "destination": dest(route), "interface": route.dev,
                       "old": old.as_ref().and_then(|o| o.via.map(|v| v.to_string())),
                       "new": route.via.map(|v| v.to_string())}),
            ),
            Step::DelRoute { place, route } => (
                "route",
                json!({"namespace": place.ns(), "destination": dest(route), "interface": route.dev,
                       "old": route.via.map(|v| v.to_string()), "new": null}),
            ),
            Step::ForgetNeighbours { place, ifname } => (
                "neighbours",
                json!({"interface": ifname, "namespace": place.ns()}),
            ),
            Step::SetNetem {
                place,
                ifname,
                netem,
                old,
            } => (
                "netem",
                json!({"interface": ifname, "namespace": place.ns(),
                       "old": old.map(|o| o.to_string()), "new": netem.to_string()}),
            ),
            Step::SetSysctl {
                place,
                key,
                old,
                new,
                ..
            } => (
                "sysctl",
                json!({"name": key, "namespace": place.ns(), "old": old, "new": new}),
            ),
        };
        let mut v = json!({"op": op_word(self.mark()), "object": self.object(), "kind": kind, "text": self.to_string()});
        if let (Some(m), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, x) in extra {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

fn dest(r: &RouteSpec) -> String {
    if r.dst.prefix() == 0 {
        "default".into()
    } else {
        r.dst.to_string()
    }
}

pub(crate) fn op_name(mark: char) -> &'static str {
    op_word(mark)
}
