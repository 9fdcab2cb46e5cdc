//! firewalld hosts (Fedora, RHEL, openSUSE): firewalld's `inet firewalld` table rejects
//! forwarded traffic from interfaces in no zone (`filter_FWD_public … reject`), and an accept
//! in nsfw's table cannot override a reject in another base chain. So nsfw binds the host
//! interfaces its traffic is forwarded from (bridges, routed veths) to firewalld's built-in
//! `trusted` zone (target ACCEPT: nsfw's own table still judges the traffic), through
//! firewalld's D-Bus API, as runtime configuration only, and unbinds them at flush.
//!
//! Why `trusted` and not a zone of nsfw's own: firewalld 1.x makes a zone only in its
//! permanent configuration (/etc/firewalld/zones), live only after a reload, and a reload
//! drops every runtime binding of every other tool (Docker's, libvirt's: measured on 1.3.3).
//! A permanent zone would also outlive a reboot, while the record that says it is nsfw's
//! (/run/nsfw) does not. A runtime binding goes with firewalld's runtime, as nsfw's links go
//! with the boot; `apply` at boot (and `watch` after a firewalld restart or reload) makes it
//! again.
//!
//! A binding carries no mark, so the record (`Record::firewalld`) names the bindings nsfw
//! made, written before it makes them: only those are ever removed. An interface someone
//! bound to another zone is left there (that is how a user opts out, per interface), with a
//! warning. D-Bus is only touched when firewalld's table is in the ruleset: on a host without
//! firewalld, nothing talks to the bus (and a record's bindings went with firewalld's runtime).

mod bus;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

use crate::resources::{Desired, LinkKind};
use crate::state::Record;

pub(crate) use bus::{apply, observe};

/// The zone nsfw binds its interfaces to.
pub(crate) const ZONE: &str = "trusted";
/// The nftables table firewalld's nftables backend keeps (`inet firewalld`): its presence is
/// how nsfw knows firewalld runs without asking D-Bus.
pub(crate) const TABLE: &str = "firewalld";

/// What firewalld said, or why it could not be asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Firewalld {
    /// No firewalld table in the ruleset: nothing was asked.
    #[default]
    Absent,
    /// Its table is there but firewalld did not answer on the system bus.
    Unreachable(String),
    /// The runtime zone of each interface asked about ("": none; the default zone judges it).
    Running(BTreeMap<String, String>),
}

/// The host interfaces whose forwarded traffic firewalld would judge: bridges, and veths
/// that are not a bridge's port (routed to a namespace). A bridge's ports need nothing of
/// their own: with br_netfilter, bridged traffic reaches the IP hooks as the bridge's. A
/// bridge that carries a physical port (`ports`) is left out: the outside world's traffic
/// comes in through it too, and `trusted` would open the host to it; which zone it belongs in
/// is its owner's choice.
pub(crate) fn interfaces(d: &Desired) -> BTreeSet<String> {
    let links = &d.host.links;
    let has_port = |bridge: &str| {
        links
            .values()
            .any(|l| matches!(l.kind, LinkKind::Port { .. }) && l.master.as_deref() == Some(bridge))
    };
    links
        .values()
        .filter(|l| match l.kind {
            LinkKind::Bridge => !has_port(&l.name),
            LinkKind::Veth { .. } => l.master.is_none(),
            _ => false,
        })
        .map(|l| l.name.clone())
        .collect()
}

/// One change to firewalld's runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// Bind (true) or unbind.
    pub add: bool,
    pub iface: String,
}

impl Change {
    pub(crate) fn mark(&self) -> char {
        if self.add { '+' } else { '-' }
    }

    pub(crate) fn object(&self) -> String {
        format!("firewalld zone {ZONE}")
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "op": crate::kinds::op_name(self.mark()),
            "object": self.object(),
            "kind": "firewalld-interface",
            "zone": ZONE,
            "interface": self.iface,
            "text": self.to_string(),
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.add {
            write!(
                f,
                "+ interface {} (runtime; not in a firewalld zone)",
                self.iface
            )
        } else {
            write!(f, "- interface {} (runtime)", self.iface)
        }
    }
}

/// The interfaces firewalld should be asked about: those wanted, and those the record says
/// are nsfw's bindings of the topologies `owned` selects.
pub(crate) fn to_ask(
    wanted: &BTreeSet<String>,
    rec: &Record,
    owned: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut v: BTreeSet<String> = wanted.clone();
    v.extend(
        rec.firewalld
            .iter()
            .filter(|(_, t)| owned(t))
            .map(|(i, _)| i.clone()),
    );
    v.into_iter().collect()
}

/// firewalld's part of a plan, and the record's bindings while and after it runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZonePlan {
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
    /// The record's `firewalld` during the run (bindings about to be made added) and after.
    pub during: BTreeMap<String, String>,
    pub after: BTreeMap<String, String>,
}

/// What must change in firewalld for topology `topology` (wanting `wanted`; empty when
/// flushing) given what firewalld said and the record; `owned` selects the topologies the run
/// may touch.
pub(crate) fn plan(
    topology: &str,
    wanted: &BTreeSet<String>,
    fw: &Firewalld,
    rec: &Record,
    owned: &dyn Fn(&str) -> bool,
) -> ZonePlan {
    let mut p = ZonePlan {
        during: rec.firewalld.clone(),
        after: rec.firewalld.clone(),
        ..Default::default()
    };
    let ours = |i: &str| rec.firewalld.get(i).is_some_and(|t| owned(t));
    let zones = match fw {
        Firewalld::Running(z) => z,
        Firewalld::Absent => {
            // firewalld's runtime went with it: the bindings nsfw no longer wants are gone
            // too. Those it wants stay named, to be made again when firewalld is back.
            p.after.retain(|i, t| !owned(t) || wanted.contains(i));
            return p;
        }
        Firewalld::Unreachable(why) => {
            let list = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>().join(", ");
            let left: Vec<&String> = rec
                .firewalld
                .iter()
                .filter(|(i, t)| owned(t) && !wanted.contains(*i))
                .map(|(i, _)| i)
                .collect();
            if !wanted.is_empty() {
                p.warnings.push(format!(
                    "firewalld's table is in the ruleset but firewalld cannot be asked ({why}): {} not put in its zone `{ZONE}`, and its chains may reject their forwarded traffic",
                    list(wanted.iter().collect())
                ));
            }
            if !left.is_empty() {
                p.warnings.push(format!(
                    "firewalld's table is in the ruleset but firewalld cannot be asked ({why}): {} stay in its zone `{ZONE}` until it reloads or a later run takes them out",
                    list(left)
                ));
            }
            return p;
        }
    };
    for i in wanted {
        match zones.get(i).map(String::as_str).unwrap_or("") {
            "" => {
                p.changes.push(Change {
                    add: true,
                    iface: i.clone(),
                });
                p.during.insert(i.clone(), topology.to_string());
                p.after.insert(i.clone(), topology.to_string());
            }
            // Bound by nsfw (the record says so) or by someone else, who then keeps it.
            ZONE => {}
            z => {
                if ours(i) {
                    p.after.remove(i);
                }
                p.warnings.push(format!(
                    "interface {i} is in firewalld zone `{z}`, not nsfw's: left there, so that zone judges its forwarded traffic too (firewall-cmd --zone={z} --remove-interface={i} lets nsfw put it in `{ZONE}`)"
                ));
            }
        }
    }
    for (i, t) in &rec.firewalld {
        if !owned(t) || wanted.contains(i) {
            continue;
        }
        if zones.get(i).map(String::as_str) == Some(ZONE) {
            p.changes.push(Change {
                add: false,
                iface: i.clone(),
            });
        }
        p.after.remove(i);
    }
    p
}

/// What a user would type to do what nsfw does, for doctor.
pub(crate) fn command_for(iface: &str) -> String {
    format!("firewall-cmd --zone={ZONE} --add-interface={iface}")
}

/// Whether the host's ruleset holds firewalld's table.
pub(crate) fn table_present(tables: &[nft::dump::TableInfo]) -> bool {
    tables
        .iter()
        .any(|t| t.family == nft::Family::Inet && t.name == TABLE)
}

#[cfg(test)]
mod tests;
