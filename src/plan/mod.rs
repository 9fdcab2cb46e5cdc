//! The plan: what must change for the kernel to match a topology, computed from the desired
//! [`Topology`] and the [`Observed`] state alone, ordered so that carrying it out step by step is
//! valid. `apply` executes it, `diff` prints it, `flush` is the plan towards nothing.

mod execute;

use std::fmt;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

pub use execute::execute;

use crate::firewall::{self, NftPlan};
use crate::plumbing::{Link, Observed, resolv_path};
use crate::topology::{Mac, Topology, owner_mark, resolv_marker};

/// Where a link lives: the host, or a named namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Host,
    Ns(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Host => write!(f, "host"),
            Place::Ns(n) => write!(f, "{n}"),
        }
    }
}

/// One attribute of a link to change, with its old value for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAttr {
    Mtu {
        old: u32,
        new: u32,
    },
    Mac {
        old: Option<Mac>,
        new: Mac,
    },
    /// Set the bridge's MTU again after ports with a smaller one joined: the kernel lowers a
    /// bridge to its smallest port unless the MTU was set on the running bridge.
    PinMtu {
        new: u32,
    },
    Up,
    Master {
        old: Option<String>,
        new: String,
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
            LinkAttr::PinMtu { new } => write!(f, "mtu pinned at {new} (above smaller ports)"),
            LinkAttr::Master { old, new } => {
                write!(f, "master {} → {new}", old.as_deref().unwrap_or("none"))
            }
        }
    }
}

/// One change to the kernel or the file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    DeleteLink {
        name: String,
        index: u32,
        kind: Option<String>,
        why: &'static str,
    },
    DeleteNamespace {
        name: String,
        /// Host veth ends whose peers live in the namespace: they go with it. Deleting them one
        /// by one would cost an RCU grace period (~20 ms) each; the kernel tears a dying
        /// namespace's pairs down in one batch.
        takes: Vec<String>,
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
    },
    CreateVeth {
        ns: String,
        host: String,
        peer: String,
        bridge: String,
        mtu: u32,
        mac: Mac,
    },
    SetLink {
        place: Place,
        name: String,
        attrs: Vec<LinkAttr>,
    },
    AddAddr {
        place: Place,
        ifname: String,
        net: Ipv4Network,
    },
    DelAddr {
        place: Place,
        ifname: String,
        net: Ipv4Network,
    },
    SetDefaultRoute {
        ns: String,
        ifname: String,
        gateway: Ipv4Addr,
        old: Option<Ipv4Addr>,
    },
    SetIpForward {
        old: Option<bool>,
        new: bool,
    },
    SetBrNetfilter {
        old: Option<bool>,
        new: bool,
    },
    WriteResolv {
        ns: String,
        content: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::DeleteLink {
                name, kind, why, ..
            } => {
                write!(
                    f,
                    "- link {name} ({}): {why}",
                    kind.as_deref().unwrap_or("device")
                )
            }
            Change::DeleteNamespace { name, takes } => {
                write!(f, "- namespace {name}")?;
                if !takes.is_empty() {
                    write!(f, " (with {})", takes.join(", "))?;
                }
                Ok(())
            }
            Change::RemoveResolv { ns } => write!(f, "- file {}", resolv_path(ns).display()),
            Change::CreateNamespace { name } => write!(f, "+ namespace {name}"),
            Change::MarkNamespace { name } => write!(f, "~ namespace {name}: lo down → up"),
            Change::CreateBridge { name, mtu, mac } => {
                write!(f, "+ bridge {name} mtu {mtu} mac {mac}")
            }
            Change::CreateVeth {
                ns,
                host,
                peer,
                bridge,
                mtu,
                mac,
            } => {
                write!(
                    f,
                    "+ veth {host} (on {bridge}) ⇄ {ns}:{peer} mtu {mtu} mac {mac}"
                )
            }
            Change::SetLink { place, name, attrs } => {
                let a: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
                match place {
                    Place::Host => write!(f, "~ link {name}: {}", a.join(", ")),
                    Place::Ns(ns) => write!(f, "~ link {ns}:{name}: {}", a.join(", ")),
                }
            }
            Change::AddAddr { place, ifname, net } => match place {
                Place::Host => write!(f, "+ address {net} on {ifname}"),
                Place::Ns(ns) => write!(f, "+ address {net} on {ns}:{ifname}"),
            },
            Change::DelAddr { place, ifname, net } => match place {
                Place::Host => write!(f, "- address {net} on {ifname}"),
                Place::Ns(ns) => write!(f, "- address {net} on {ns}:{ifname}"),
            },
            Change::SetDefaultRoute {
                ns,
                ifname,
                gateway,
                old,
            } => match old {
                None => write!(f, "+ route {ns}: default via {gateway} dev {ifname}"),
                Some(o) => write!(
                    f,
                    "~ route {ns}: default via {o} → via {gateway} dev {ifname}"
                ),
            },
            Change::SetIpForward { old, new } => {
                let s = |b: bool| if b { "1" } else { "0" };
                match old {
                    Some(o) => write!(f, "~ sysctl net.ipv4.ip_forward: {} → {}", s(*o), s(*new)),
                    None => write!(f, "~ sysctl net.ipv4.ip_forward → {}", s(*new)),
                }
            }
            Change::SetBrNetfilter { old, new } => {
                let s = |b: bool| if b { "1" } else { "0" };
                match old {
                    Some(o) => write!(
                        f,
                        "~ sysctl net.bridge.bridge-nf-call-iptables: {} → {}",
                        s(*o),
                        s(*new)
                    ),
                    None => write!(
                        f,
                        "~ sysctl net.bridge.bridge-nf-call-iptables → {}",
                        s(*new)
                    ),
                }
            }
            Change::WriteResolv { ns, .. } => write!(f, "+ file {}", resolv_path(ns).display()),
        }
    }
}

/// The ordered changes, plus conflicts that forbid carrying any of them out.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Plumbing changes, carried out in order.
    pub changes: Vec<Change>,
    /// The nftables changes: one batch, after the plumbing.
    pub nft: NftPlan,
    /// Objects in the way that nsfw does not own: any of these makes apply refuse to start.
    pub conflicts: Vec<String>,
    /// Things worth saying that change nothing.
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.nft.ops.is_empty()
    }
}

impl fmt::Display for Plan {
    /// The plan grouped by the object each change concerns, objects in the order the plan
    /// first touches them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        let items = self
            .changes
            .iter()
            .map(|c| (c.object(), c.to_string()))
            .chain(self.nft.lines.iter().map(|l| (l.object(), l.to_string())));
        for (obj, line) in items {
            match groups.iter_mut().find(|(o, _)| *o == obj) {
                Some((_, v)) => v.push(line),
                None => groups.push((obj, vec![line])),
            }
        }
        for (obj, lines) in groups {
            writeln!(f, "{obj}")?;
            for l in lines {
                writeln!(f, "  {l}")?;
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The number of changes, plumbing and nft.
    pub fn len(&self) -> usize {
        self.changes.len() + self.nft.lines.len()
    }

    /// The plan in the stable JSON schema of docs/diff-json.md.
    pub fn to_json(&self, topology: &str, file: &str) -> serde_json::Value {
        let mut changes: Vec<serde_json::Value> = self.changes.iter().map(Change::json).collect();
        changes.extend(self.nft.lines.iter().map(|l| {
            let mut c = serde_json::json!({
                "op": op_word(l.mark),
                "object": l.object(),
                "kind": format!("nft-{}", l.kind),
                "table": l.table,
                "chain": l.chain,
                "rule": if l.kind == "rule" { Some(&l.detail) } else { None },
                "detail": if l.kind != "rule" && !l.detail.is_empty() { Some(&l.detail) } else { None },
                "text": l.to_string(),
            });
            // Set and element changes name their set (fields are only ever added).
            if let (Some(set), Some(obj)) = (&l.set, c.as_object_mut()) {
                obj.insert("set".into(), set.clone().into());
            }
            c
        }));
        serde_json::json!({
            "schema": 1,
            "topology": topology,
            "file": file,
            "in_sync": self.is_empty(),
            "changes": changes,
            "conflicts": self.conflicts,
            "warnings": self.warnings,
        })
    }
}

fn op_word(mark: char) -> &'static str {
    match mark {
        '+' => "create",
        '-' => "delete",
        _ => "modify",
    }
}

impl Change {
    /// The kind of step, for timing reports.
    pub fn step(&self) -> &'static str {
        match self {
            Change::DeleteLink { .. } => "delete link",
            Change::DeleteNamespace { .. } => "delete namespace",
            Change::RemoveResolv { .. } => "remove resolv.conf",
            Change::CreateNamespace { .. } => "create namespace",
            Change::MarkNamespace { .. } => "mark namespace",
            Change::CreateBridge { .. } => "create bridge",
            Change::CreateVeth { .. } => "create veth",
            Change::SetLink { .. } => "set link",
            Change::AddAddr { .. } => "add address",
            Change::DelAddr { .. } => "delete address",
            Change::SetDefaultRoute { .. } => "set route",
            Change::SetIpForward { .. } | Change::SetBrNetfilter { .. } => "set sysctl",
            Change::WriteResolv { .. } => "write resolv.conf",
        }
    }

    /// What the change concerns, for grouping: a namespace, a host link, the host's sysctls.
    pub fn object(&self) -> String {
        match self {
            Change::DeleteLink { name, .. } | Change::CreateBridge { name, .. } => {
                format!("link {name}")
            }
            Change::SetLink {
                place: Place::Host,
                name,
                ..
            } => format!("link {name}"),
            Change::AddAddr {
                place: Place::Host,
                ifname,
                ..
            }
            | Change::DelAddr {
                place: Place::Host,
                ifname,
                ..
            } => format!("link {ifname}"),
            Change::DeleteNamespace { name, .. }
            | Change::CreateNamespace { name }
            | Change::MarkNamespace { name } => format!("namespace {name}"),
            Change::SetLink {
                place: Place::Ns(ns),
                ..
            }
            | Change::AddAddr {
                place: Place::Ns(ns),
                ..
            }
            | Change::DelAddr {
                place: Place::Ns(ns),
                ..
            }
            | Change::CreateVeth { ns, .. }
            | Change::SetDefaultRoute { ns, .. }
            | Change::RemoveResolv { ns }
            | Change::WriteResolv { ns, .. } => format!("namespace {ns}"),
            Change::SetIpForward { .. } | Change::SetBrNetfilter { .. } => "host sysctls".into(),
        }
    }

    /// The change as a JSON object (docs/diff-json.md).
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        let text = self.to_string();
        let op = op_word(text.chars().next().unwrap_or('~'));
        let object = self.object();
        let b = |v: bool| if v { "1" } else { "0" };
        let (kind, fields) = match self {
            Change::DeleteLink {
                name, kind, why, ..
            } => ("link", json!({"name": name, "link_kind": kind, "why": why})),
            Change::DeleteNamespace { name, takes } => {
                ("namespace", json!({"name": name, "takes": takes}))
            }
            Change::CreateNamespace { name } | Change::MarkNamespace { name } => {
                ("namespace", json!({"name": name}))
            }
            Change::RemoveResolv { ns } | Change::WriteResolv { ns, .. } => (
                "file",
                json!({"path": resolv_path(ns).display().to_string(), "namespace": ns}),
            ),
            Change::CreateBridge { name, mtu, mac } => (
                "bridge",
                json!({"name": name, "mtu": mtu, "mac": mac.to_string()}),
            ),
            Change::CreateVeth {
                ns,
                host,
                peer,
                bridge,
                mtu,
                mac,
            } => (
                "veth",
                json!({"name": host, "namespace": ns, "peer": peer, "bridge": bridge, "mtu": mtu, "mac": mac.to_string()}),
            ),
            Change::SetLink { place, name, attrs } => {
                let attrs: Vec<serde_json::Value> = attrs
                    .iter()
                    .map(|a| match a {
                        LinkAttr::Mtu { old, new } => json!({"attr": "mtu", "old": old, "new": new}),
                        LinkAttr::PinMtu { new } => json!({"attr": "mtu", "old": null, "new": new}),
                        LinkAttr::Mac { old, new } => json!({"attr": "mac", "old": old.map(|m| m.to_string()), "new": new.to_string()}),
                        LinkAttr::Up => json!({"attr": "state", "old": "down", "new": "up"}),
                        LinkAttr::Master { old, new } => json!({"attr": "master", "old": old, "new": new}),
                    })
                    .collect();
                (
                    "link",
                    json!({"name": name, "namespace": ns_of(place), "attrs": attrs}),
                )
            }
            Change::AddAddr { place, ifname, net } | Change::DelAddr { place, ifname, net } => (
                "address",
                json!({"address": net.to_string(), "interface": ifname, "namespace": ns_of(place)}),
            ),
            Change::SetDefaultRoute {
                ns,
                ifname,
                gateway,
                old,
            } => (
                "route",
                json!({"namespace": ns, "destination": "default", "interface": ifname, "old": old.map(|g| g.to_string()), "new": gateway.to_string()}),
            ),
            Change::SetIpForward { old, new } => (
                "sysctl",
                json!({"name": "net.ipv4.ip_forward", "old": old.map(b), "new": b(*new)}),
            ),
            Change::SetBrNetfilter { old, new } => (
                "sysctl",
                json!({"name": "net.bridge.bridge-nf-call-iptables", "old": old.map(b), "new": b(*new)}),
            ),
        };
        let mut v = json!({"op": op, "object": object, "kind": kind, "text": text});
        if let (Some(m), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, x) in extra {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }
}

fn ns_of(place: &Place) -> Option<&str> {
    match place {
        Place::Host => None,
        Place::Ns(n) => Some(n),
    }
}

/// The phases of a plan, in the order they must run: removals first (so names are free), then
/// namespaces, bridges, veths, and what configures them.
#[derive(Default)]
struct Phases {
    delete_links: Vec<Change>,
    delete_ns: Vec<Change>,
    remove_files: Vec<Change>,
    namespaces: Vec<Change>,
    bridges: Vec<Change>,
    host_addrs: Vec<Change>,
    veths: Vec<Change>,
    set_links: Vec<Change>,
    pin_mtu: Vec<Change>,
    ns_config: Vec<Change>,
    sysctls: Vec<Change>,
    files: Vec<Change>,
}

impl Phases {
    fn into_changes(self) -> Vec<Change> {
        [
            self.delete_links,
            self.delete_ns,
            self.remove_files,
            self.namespaces,
            self.bridges,
            self.host_addrs,
            self.veths,
            self.set_links,
            self.pin_mtu,
            self.ns_config,
            self.sysctls,
            self.files,
        ]
        .concat()
    }
}

fn foreign(l: &Link, mark: &str) -> bool {
    l.alias.as_deref() != Some(mark)
}

fn describe_owner(alias: Option<&str>) -> String {
    match alias {
        Some(a) if a.starts_with("nsfw:") => format!("it belongs to nsfw topology {:?}", &a[5..]),
        Some(a) => format!("its alias is {a:?}, not nsfw's"),
        None => "it carries no nsfw mark".to_string(),
    }
}

/// The plan that makes the kernel match `t`.
pub fn diff(t: &Topology, o: &Observed) -> anyhow::Result<Plan> {
    let mark = t.owner_mark();
    let file = t.source.display().to_string();
    let mut p = Phases::default();
    let mut conflicts = Vec::new();

    let want_links: Vec<&str> = t
        .bridges
        .iter()
        .map(|b| b.name.as_str())
        .chain(t.namespaces.iter().map(|n| n.host_ifname.as_str()))
        .collect();

    // Objects in the way that are not ours.
    for b in &t.bridges {
        if let Some(l) = o.host_link(&b.name).filter(|l| foreign(l, &mark)) {
            conflicts.push(format!(
                "{file}: bridges.{0}: interface {0} already exists on the host and nsfw does not own it ({1}); remove or rename it, or rename the bridge",
                b.name,
                describe_owner(l.alias.as_deref())
            ));
        }
    }
    for n in &t.namespaces {
        if let Some(l) = o.host_link(&n.host_ifname).filter(|l| foreign(l, &mark)) {
            conflicts.push(format!(
                "{file}: namespaces.{}.host_ifname = {:?}: interface already exists on the host and nsfw does not own it ({})",
                n.name,
                n.host_ifname,
                describe_owner(l.alias.as_deref())
            ));
        }
        if let Some(why) = o.broken.get(&n.name) {
            conflicts.push(format!("{file}: namespaces.{}: {why}", n.name));
        }
        if let Some(ns) = o.namespaces.get(&n.name)
            && ns.owner.as_deref() != Some(mark.as_str())
        {
            conflicts.push(format!(
                    "{file}: namespaces.{0}: namespace {0} already exists and nsfw does not own it ({1}); remove it (ip netns del {0}) or rename it in the file",
                    n.name,
                    describe_owner(ns.owner.as_deref())
                ));
        }
        if let Some(content) = o.resolv.get(&n.name)
            && !n.dns.is_empty()
            && content.lines().next() != Some(resolv_marker(&t.name).as_str())
        {
            conflicts.push(format!(
                    "{file}: namespaces.{}.dns: {} exists and was not written by nsfw; remove it or drop `dns`",
                    n.name,
                    resolv_path(&n.name).display()
                ));
        }
    }

    // Ours, but no longer in the file.
    let doomed: Vec<&str> = o
        .namespaces
        .values()
        .filter(|ns| {
            ns.owner.as_deref() == Some(mark.as_str())
                && !t.namespaces.iter().any(|n| n.name == ns.name)
        })
        .map(|ns| ns.name.as_str())
        .collect();
    remove(&mut p, o, &doomed, "no longer in the file", |l| {
        l.alias.as_deref() == Some(mark.as_str()) && !want_links.contains(&l.name.as_str())
    });
    for (ns, content) in &o.resolv {
        let wanted = t
            .namespaces
            .iter()
            .any(|n| &n.name == ns && !n.dns.is_empty());
        if !wanted && content.lines().next() == Some(resolv_marker(&t.name).as_str()) {
            p.remove_files.push(Change::RemoveResolv { ns: ns.clone() });
        }
    }

    // Bridges.
    let mut recreated_bridges: Vec<&str> = Vec::new();
    for b in &t.bridges {
        let have = o.host_link(&b.name).filter(|l| !foreign(l, &mark));
        let have = match have {
            Some(l) if l.kind.as_deref() != Some("bridge") => {
                p.delete_links.push(Change::DeleteLink {
                    name: l.name.clone(),
                    index: l.index,
                    kind: l.kind.clone(),
                    why: "not a bridge",
                });
                None
            }
            other => other,
        };
        match have {
            None => {
                if o.host_link(&b.name).is_some_and(|l| foreign(l, &mark)) {
                    continue; // a conflict, reported above
                }
                recreated_bridges.push(&b.name);
                p.bridges.push(Change::CreateBridge {
                    name: b.name.clone(),
                    mtu: b.mtu,
                    mac: b.mac,
                });
                p.host_addrs.push(Change::AddAddr {
                    place: Place::Host,
                    ifname: b.name.clone(),
                    net: b.address,
                });
            }
            Some(l) => {
                let mut attrs = Vec::new();
                if l.mtu != b.mtu {
                    attrs.push(LinkAttr::Mtu {
                        old: l.mtu,
                        new: b.mtu,
                    });
                }
                if l.mac != Some(b.mac) {
                    attrs.push(LinkAttr::Mac {
                        old: l.mac,
                        new: b.mac,
                    });
                }
                if !l.up {
                    attrs.push(LinkAttr::Up);
                }
                if !attrs.is_empty() {
                    p.set_links.push(Change::SetLink {
                        place: Place::Host,
                        name: b.name.clone(),
                        attrs,
                    });
                }
                let addrs: Vec<Ipv4Network> = o
                    .host_addrs
                    .iter()
                    .filter(|a| a.index == l.index)
                    .map(|a| a.net)
                    .collect();
                if !addrs.contains(&b.address) {
                    p.host_addrs.push(Change::AddAddr {
                        place: Place::Host,
                        ifname: b.name.clone(),
                        net: b.address,
                    });
                }
                for a in addrs.into_iter().filter(|a| *a != b.address) {
                    p.host_addrs.push(Change::DelAddr {
                        place: Place::Host,
                        ifname: b.name.clone(),
                        net: a,
                    });
                }
            }
        }
    }

    // Namespaces and their veths.
    for n in &t.namespaces {
        if o.broken.contains_key(&n.name) {
            continue;
        }
        let obs = o.namespaces.get(&n.name);
        if obs.is_some_and(|ns| ns.owner.as_deref() != Some(mark.as_str())) {
            continue; // a conflict, reported above
        }
        let host = o.host_link(&n.host_ifname).filter(|l| !foreign(l, &mark));
        if o.host_link(&n.host_ifname)
            .is_some_and(|l| foreign(l, &mark))
        {
            continue;
        }
        let ns = Place::Ns(n.name.clone());
        match obs {
            None => p.namespaces.push(Change::CreateNamespace {
                name: n.name.clone(),
            }),
            Some(ns) if !ns.link("lo").is_some_and(|l| l.up) => {
                p.namespaces.push(Change::MarkNamespace {
                    name: n.name.clone(),
                })
            }
            Some(_) => {}
        }
        // The pair is whole when both ends exist and point at each other.
        let peer = obs.and_then(|ns| ns.link(&n.ifname));
        let whole = match (host, peer) {
            (Some(h), Some(pe)) => {
                h.kind.as_deref() == Some("veth")
                    && h.peer_index == Some(pe.index)
                    && pe.peer_index == Some(h.index)
                    && pe.kind.as_deref() == Some("veth")
            }
            _ => false,
        };
        if !whole {
            if let Some(h) = host {
                p.delete_links.push(Change::DeleteLink {
                    name: h.name.clone(),
                    index: h.index,
                    kind: h.kind.clone(),
                    why: "its peer is not in place",
                });
            }
            p.veths.push(Change::CreateVeth {
                ns: n.name.clone(),
                host: n.host_ifname.clone(),
                peer: n.ifname.clone(),
                bridge: n.bridge.clone(),
                mtu: n.mtu,
                mac: n.mac,
            });
            p.ns_config.push(Change::AddAddr {
                place: ns.clone(),
                ifname: n.ifname.clone(),
                net: n.address,
            });
            p.ns_config.push(Change::SetDefaultRoute {
                ns: n.name.clone(),
                ifname: n.ifname.clone(),
                gateway: n.gateway,
                old: None,
            });
            continue;
        }
        let (Some(h), Some(pe), Some(obs)) = (host, peer, obs) else {
            continue;
        };
        // Host end: on the right bridge, up, right MTU.
        let mut attrs = Vec::new();
        let master = h
            .master
            .and_then(|i| o.host_link_by_index(i))
            .map(|l| l.name.clone());
        if master.as_deref() != Some(n.bridge.as_str())
            || recreated_bridges.contains(&n.bridge.as_str())
        {
            attrs.push(LinkAttr::Master {
                old: master,
                new: n.bridge.clone(),
            });
        }
        if h.mtu != n.mtu {
            attrs.push(LinkAttr::Mtu {
                old: h.mtu,
                new: n.mtu,
            });
        }
        if !h.up {
            attrs.push(LinkAttr::Up);
        }
        if !attrs.is_empty() {
            p.set_links.push(Change::SetLink {
                place: Place::Host,
                name: h.name.clone(),
                attrs,
            });
        }
        // Namespace end.
        let mut attrs = Vec::new();
        if pe.mtu != n.mtu {
            attrs.push(LinkAttr::Mtu {
                old: pe.mtu,
                new: n.mtu,
            });
        }
        if pe.mac != Some(n.mac) {
            attrs.push(LinkAttr::Mac {
                old: pe.mac,
                new: n.mac,
            });
        }
        if !pe.up {
            attrs.push(LinkAttr::Up);
        }
        if !attrs.is_empty() {
            p.set_links.push(Change::SetLink {
                place: ns.clone(),
                name: pe.name.clone(),
                attrs,
            });
        }
        let addrs: Vec<Ipv4Network> = obs
            .addrs
            .iter()
            .filter(|a| a.index == pe.index)
            .map(|a| a.net)
            .collect();
        if !addrs.contains(&n.address) {
            p.ns_config.push(Change::AddAddr {
                place: ns.clone(),
                ifname: n.ifname.clone(),
                net: n.address,
            });
        }
        for a in addrs.into_iter().filter(|a| *a != n.address) {
            p.ns_config.push(Change::DelAddr {
                place: ns.clone(),
                ifname: n.ifname.clone(),
                net: a,
            });
        }
        let default = obs.routes.iter().find(|r| r.dst.prefix() == 0);
        let right =
            default.is_some_and(|r| r.gateway == Some(n.gateway) && r.oif == Some(pe.index));
        // A route through a link that is being brought up again is flushed with it: re-add.
        let link_down = !pe.up;
        if !right || link_down {
            p.ns_config.push(Change::SetDefaultRoute {
                ns: n.name.clone(),
                ifname: n.ifname.clone(),
                gateway: n.gateway,
                old: default.and_then(|r| r.gateway),
            });
        }
    }

    // A port smaller than its bridge, joining now, drags the bridge's MTU down with it.
    for b in &t.bridges {
        let lowered = p.veths.iter().any(|c| {
            matches!(c, Change::CreateVeth { bridge, mtu, .. } if *bridge == b.name && *mtu < b.mtu)
        });
        if lowered {
            p.pin_mtu.push(Change::SetLink {
                place: Place::Host,
                name: b.name.clone(),
                attrs: vec![LinkAttr::PinMtu { new: b.mtu }],
            });
        }
    }

    // Sysctls and files.
    if let Some(want) = t.host.ip_forward
        && o.ip_forward != Some(want)
    {
        p.sysctls.push(Change::SetIpForward {
            old: o.ip_forward,
            new: want,
        });
    }
    for n in &t.namespaces {
        if let Some(content) = t.resolv_conf(n)
            && o.resolv.get(&n.name) != Some(&content)
        {
            p.files.push(Change::WriteResolv {
                ns: n.name.clone(),
                content,
            });
        }
    }

    let mut nft = firewall::diff(t, &o.nft)?;
    if let Some((old, new)) = nft.br_nf.take() {
        p.sysctls.push(Change::SetBrNetfilter { old, new });
    }
    conflicts.append(&mut nft.conflicts);
    let warnings = std::mem::take(&mut nft.warnings);
    Ok(Plan {
        changes: p.into_changes(),
        nft,
        conflicts,
        warnings,
    })
}

/// Plans the removal of the `doomed` namespaces and of the host links `pick` selects: links
/// whose veth peer is in a doomed namespace go with it; the rest are deleted one by one, veths
/// before bridges (so no bridge is deleted with ports attached).
fn remove(
    p: &mut Phases,
    o: &Observed,
    doomed: &[&str],
    why: &'static str,
    pick: impl Fn(&Link) -> bool,
) {
    let (takes, mut alone) = split_by_peer_ns(o, doomed, pick);
    alone.sort_by_key(|l| l.kind.as_deref() == Some("bridge"));
    for l in alone {
        p.delete_links.push(Change::DeleteLink {
            name: l.name.clone(),
            index: l.index,
            kind: l.kind.clone(),
            why,
        });
    }
    for ns in doomed {
        p.delete_ns.push(Change::DeleteNamespace {
            name: ns.to_string(),
            takes: takes.get(*ns).cloned().unwrap_or_default(),
        });
    }
}

/// Splits the host links that `pick` selects into those whose veth peer lives in one of the
/// `doomed` namespaces (by namespace: they go with it) and the rest (deleted one by one).
/// A pair is recognised from both ends: each names the other's ifindex.
fn split_by_peer_ns<'a>(
    o: &'a Observed,
    doomed: &[&str],
    pick: impl Fn(&Link) -> bool,
) -> (
    std::collections::BTreeMap<String, Vec<String>>,
    Vec<&'a Link>,
) {
    let mut peers: std::collections::HashMap<u32, Vec<(&str, u32)>> = Default::default();
    for ns in doomed {
        if let Some(obs) = o.namespaces.get(*ns) {
            for l in obs
                .links
                .iter()
                .filter(|l| l.kind.as_deref() == Some("veth"))
            {
                if let Some(p) = l.peer_index {
                    peers.entry(p).or_default().push((ns, l.index));
                }
            }
        }
    }
    let mut takes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut alone = Vec::new();
    for l in o.host_links.iter().filter(|l| pick(l)) {
        let with = peers.get(&l.index).and_then(|c| {
            c.iter()
                .find(|(_, idx)| l.kind.as_deref() == Some("veth") && l.peer_index == Some(*idx))
        });
        match with {
            Some((ns, _)) => takes
                .entry(ns.to_string())
                .or_default()
                .push(l.name.clone()),
            None => alone.push(l),
        }
    }
    (takes, alone)
}

/// The plan that removes everything owned by the topologies named in `owners` (every nsfw
/// topology when `owners` is None).
pub fn flush(owners: Option<&[String]>, o: &Observed) -> Plan {
    let owned = |alias: Option<&str>| -> bool {
        match (alias, owners) {
            (Some(a), None) => a.starts_with("nsfw:"),
            (Some(a), Some(names)) => names.iter().any(|n| owner_mark(n) == a),
            (None, _) => false,
        }
    };
    let mut p = Phases::default();
    let doomed: Vec<&str> = o
        .namespaces
        .values()
        .filter(|ns| owned(ns.owner.as_deref()))
        .map(|ns| ns.name.as_str())
        .collect();
    remove(&mut p, o, &doomed, "flush", |l| owned(l.alias.as_deref()));
    for (ns, content) in &o.resolv {
        let first = content.lines().next().unwrap_or("");
        let ours = match owners {
            None => first.starts_with("# written by nsfw for topology "),
            Some(names) => names.iter().any(|n| first == resolv_marker(n)),
        };
        if ours {
            p.remove_files.push(Change::RemoveResolv { ns: ns.clone() });
        }
    }
    Plan {
        changes: p.into_changes(),
        nft: firewall::flush(owners, &o.nft),
        conflicts: Vec::new(),
        warnings: Vec::new(),
    }
}
