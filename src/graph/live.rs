//! The kernel's truth over the picture: what the engine's plan would change (the same observe
//! and plan as `nsfw diff`) marks the object it concerns as drifted, with the change as the
//! reason; the counters `nsfw status` reads go on the boxes as labels. [`gather`] reads the
//! kernel (root, under the shared lock); [`Live::overlay`] is pure.

use anyhow::Result;

use super::model::{Line, Model, Tone};
use super::text::{MAX_CHARS, wrap};
use crate::engine::{self, Target};
use crate::plan::{Plan, Step};
use crate::state::{self, Access, Record};
use crate::status;
use crate::topology::Topology;
use nft::socket::NftSocket;

/// What the kernel says of one topology.
#[derive(Clone, Debug, Default)]
pub(crate) struct Live {
    /// Each change the plan holds: the object it concerns (`namespace ns1`, `link br0`,
    /// `host routes`, or for nftables the set it is in) and the change.
    pub changes: Vec<Change>,
    /// Conflicts and what could not be looked into.
    pub problems: Vec<String>,
    /// The topology as `nsfw status` reads it (None: nothing of it on the host).
    pub status: Option<status::Topology>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// `namespace ns1`, `link veth-ns1`, `host routes`, `host sysctls`, or `nft` for the
    /// ruleset.
    pub object: String,
    /// The set or map an nftables change is in.
    pub set: Option<String>,
    /// The change as `nsfw diff` prints it, without the mark.
    pub text: String,
    pub mark: char,
}

impl Change {
    /// `missing: route ns1: default via 10.10.0.1 dev eth0`.
    fn reason(&self) -> String {
        let word = match self.mark {
            '+' => "missing",
            '-' => "not in the file",
            _ => "differs",
        };
        format!("{word}: {}", self.text)
    }
}

/// The plan's changes, as [`Change`]s.
pub(crate) fn changes(p: &Plan) -> Vec<Change> {
    let mut v = Vec::new();
    for s in &p.steps {
        // A consequence of another change, not something that drifted.
        if matches!(s, Step::ForgetNeighbours { .. }) {
            continue;
        }
        let text = s.to_string();
        v.push(Change {
            object: s.object(),
            set: None,
            text: text.get(2..).unwrap_or(&text).to_string(),
            mark: s.mark(),
        });
    }
    for l in &p.nft.lines {
        // The table is the topology's own: its name says nothing here.
        let text = l.to_string().replacen(&format!(" {} ", l.table), " ", 1);
        v.push(Change {
            object: "nft".into(),
            set: l.set.clone(),
            text: text.get(2..).unwrap_or(&text).to_string(),
            mark: l.mark,
        });
    }
    v
}

/// Reads the kernel: the plan towards `t` and its counters. Needs root.
pub(crate) fn gather(t: &Topology) -> Result<Live> {
    let lock = state::acquire(Access::Shared, true)?;
    let tg = Target::apply(t);
    let rec = Record::load(lock.dir());
    let mut nft = NftSocket::open()?;
    let o = engine::observe(&tg, &rec, &mut nft)?;
    let p = engine::plan(&tg, &o, &rec)?;
    drop(lock);
    let st = status::gather(&o.net, &o.nft)
        .into_iter()
        .find(|x| x.name == t.name);
    let mut problems = p.conflicts.clone();
    problems.extend(p.unreachable.iter().cloned());
    Ok(Live {
        changes: changes(&p),
        problems,
        status: st,
    })
}

fn bad(text: String) -> Line {
    Line {
        text,
        tone: Tone::Bad,
    }
}

fn count(text: String) -> Line {
    Line {
        text,
        tone: Tone::Count,
    }
}

/// Which published port (index into the model's) an element of a publish map is: its detail
/// starts with `tcp . 8080 :` (or `127.0.0.1 . tcp . 8443 :`).
fn published_of(t: &Topology, detail: &str) -> Option<usize> {
    let all = t
        .namespaces
        .iter()
        .flat_map(|n| n.publish.iter().map(move |p| (n, p)));
    for (i, (_, p)) in all.enumerate() {
        for (h, _) in p.pairs() {
            let key = match p.host_addr {
                None => format!("{} . {h} :", p.proto),
                Some(a) => format!("{a} . {} . {h} :", p.proto),
            };
            if detail.starts_with(&key) {
                return Some(i);
            }
        }
    }
    None
}

impl Live {
    /// Marks the model's objects with what differs, and adds the counters.
    pub(crate) fn overlay(&self, t: &Topology, m: &mut Model) {
        if self.status.is_none() {
            m.banner.push(bad(format!(
                "nothing of topology {} is on this host: `nsfw apply` builds it",
                t.name
            )));
        }
        for p in &self.problems {
            m.banner.push(bad(p.clone()));
        }
        for c in &self.changes {
            self.place(t, m, c);
        }
        if let Some(st) = &self.status {
            counters(t, st, m);
        }
        if self.status.is_some() && self.changes.is_empty() && self.problems.is_empty() {
            m.banner
                .push(Line::plain("live: the host matches the file"));
        }
    }

    fn place(&self, t: &Topology, m: &mut Model, c: &Change) {
        let reason = c.reason();
        let member = |name: &str| m.members.iter().position(|x| x.node.name == name);
        let target = if let Some(ns) = c.object.strip_prefix("namespace ") {
            member(ns).map(|i| &mut m.members[i].node)
        } else if let Some(link) = c.object.strip_prefix("link ") {
            if let Some(s) = m.segments.iter().position(|s| s.node.name == link) {
                Some(&mut m.segments[s].node)
            } else {
                // A veth's host end belongs to its namespace.
                let owner = t
                    .namespaces
                    .iter()
                    .find(|n| n.ifaces.iter().any(|i| i.host_ifname == link));
                match owner.and_then(|n| member(&n.name)) {
                    Some(i) => Some(&mut m.members[i].node),
                    None => Some(&mut m.host),
                }
            }
        } else if c.object == "nft" && c.mark == '+' && c.text.starts_with("nft table ") {
            // The whole table is missing: every port it publishes and the policy with it.
            for n in &mut m.published {
                n.drifted = true;
                n.lines
                    .extend(wrap(&reason, MAX_CHARS).into_iter().map(bad));
            }
            if !m.policy.is_empty() || !m.notes.is_empty() {
                m.policy_drifted = true;
                m.notes.push(bad(reason.clone()));
            }
            Some(&mut m.host)
        } else if c.object == "nft" {
            let set = c.set.as_deref().unwrap_or("");
            if set.starts_with("publish") {
                let detail = c.text.split_once(": ").map_or("", |x| x.1);
                published_of(t, detail)
                    .and_then(|i| m.published.get_mut(i))
                    .or(Some(&mut m.host))
            } else if crate::firewall::policy_set(set) {
                m.policy_drifted = true;
                m.notes.push(bad(reason.clone()));
                None
            } else {
                Some(&mut m.host)
            }
        } else if c.object.starts_with("host") {
            Some(&mut m.host)
        } else {
            m.banner.push(bad(reason.clone()));
            None
        };
        if let Some(n) = target {
            n.drifted = true;
            n.lines
                .extend(wrap(&reason, MAX_CHARS).into_iter().map(bad));
        }
    }
}

/// The counters of `nsfw status` on the boxes.
fn counters(t: &Topology, st: &status::Topology, m: &mut Model) {
    for c in &st.chains {
        let mut parts = Vec::new();
        if c.rules.iter().any(|r| r.1 == "accept") {
            parts.push(format!("{} accepted", c.accepted.packets));
        }
        if c.rules.iter().any(|r| r.1 == "drop") {
            parts.push(format!("{} dropped", c.dropped.packets));
        }
        if c.rules.iter().any(|r| r.1 == "translate") {
            parts.push(format!("{} masqueraded", c.translated.packets));
        }
        m.host
            .lines
            .push(count(format!("{}: {}", c.name, parts.join(", "))));
    }
    for b in &st.bridges {
        if let Some(s) = m.segments.iter_mut().find(|s| s.node.name == b.iface.name) {
            let line = if b.iface.up {
                count(format!("up, {} port(s)", b.ports))
            } else {
                bad(format!("down, {} port(s)", b.ports))
            };
            s.node.lines.push(line);
        }
    }
    for d in &st.namespace_drops {
        if let Some(x) = m.members.iter_mut().find(|x| x.node.name == d.namespace) {
            x.node.lines.push(count(format!(
                "dropped {} from it, {} to it",
                d.from.packets, d.to.packets
            )));
        }
    }
    let all: Vec<(&str, &crate::topology::Publish)> = t
        .namespaces
        .iter()
        .flat_map(|n| n.publish.iter().map(move |p| (n.name.as_str(), p)))
        .collect();
    for (i, (ns, p)) in all.iter().enumerate() {
        let hits: u64 = st
            .published
            .iter()
            .filter(|s| {
                s.namespace.as_deref() == Some(*ns)
                    && s.proto == p.proto.number()
                    && s.host_addr == p.host_addr
                    && s.host_ports.0 >= p.host.0
                    && s.host_ports.1 <= p.host.1
            })
            .map(|s| s.connections)
            .sum();
        if let Some(n) = m.published.get_mut(i) {
            n.lines.push(count(format!("{hits} connection(s)")));
        }
    }
}
