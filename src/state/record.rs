//! The write-ahead record, `/run/nsfw/record`: what a run is about to create, written before
//! it creates anything, and the original value of every host sysctl nsfw changes.
//!
//! Objects are made first and marked as nsfw's in a second step (the kernel takes a link's
//! alias only after the link exists); a run killed between the two leaves an unmarked object
//! that would look like somebody else's. The record names it, so the next apply or flush of
//! that topology removes it and starts over. Sysctls are restored by flush when no topology
//! needs them any more. /run is a tmpfs: the record goes at reboot, with everything it names.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;

use anyhow::Result;
use serde_json::{Value, json};

use super::safefs::{self, Entry};

const NAME: &str = "record";

/// Objects a run of one topology is about to create.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub namespaces: BTreeSet<String>,
    /// Host links (bridges, host ends of veths), with the MAC each is made with: an
    /// unmarked link of that name is the run's own leftover only if it has that MAC (somebody
    /// else may have made a link of that name since).
    pub links: BTreeMap<String, String>,
    /// Namespaces whose /etc/netns directory (resolv.conf) the run writes or removes.
    pub files: BTreeSet<String>,
    /// (`adopting`) Hand-written rules of iptables-legacy the adoption replaces are still to
    /// be removed: they go after the nftables batch, outside it, so a run killed between the
    /// two leaves them for the next run to remove.
    pub legacy_rules: bool,
    /// Addresses to announce once made (`super::announced`).
    pub announce: BTreeSet<super::Announcement>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.files.is_empty()
            && !self.legacy_rules
            && self.announce.is_empty()
    }

    /// Adds everything of `other`.
    pub(crate) fn extend(&mut self, other: &Pending) {
        self.namespaces.extend(other.namespaces.iter().cloned());
        self.links
            .extend(other.links.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.files.extend(other.files.iter().cloned());
        self.legacy_rules |= other.legacy_rules;
        self.announce.extend(other.announce.iter().cloned());
    }
}

/// A host sysctl nsfw changed: its value before nsfw, and the topologies that need nsfw's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub original: String,
    pub users: BTreeSet<String>,
}

/// What a bridge took from a port it enslaved (`take_addresses`): given back when the port
/// is let go, as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub topology: String,
    pub bridge: String,
    pub addrs: Vec<KeptAddr>,
    /// Every route whose output interface was the port, of every table but local.
    pub routes: Vec<KeptRoute>,
    /// The port's MTU before nsfw set it to its bridge's (None: nsfw did not change it).
    pub mtu: Option<u32>,
    /// The port was administratively down before nsfw brought it up: down again when let go.
    pub down: bool,
}

/// An address as the port held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeptAddr {
    pub net: ipnetwork::IpNetwork,
    /// IFA_F_* and RT_SCOPE_* as they were; lifetimes in seconds as they were left when the
    /// address was taken (u32::MAX: forever).
    pub flags: u32,
    pub scope: u8,
    pub valid: u32,
    pub preferred: u32,
    /// IFA_BROADCAST (None: none) and IFA_RT_PRIORITY (0: none).
    pub brd: Option<std::net::Ipv4Addr>,
    pub metric: u32,
}

/// The broadcast address `ip` gives an IPv4 subnet (what records from before `brd` was
/// kept get: what nsfw put back then).
fn default_brd(net: ipnetwork::IpNetwork) -> Option<std::net::Ipv4Addr> {
    match net {
        ipnetwork::IpNetwork::V4(n) if n.prefix() < 31 => Some(n.broadcast()),
        _ => None,
    }
}

impl KeptAddr {
    /// A permanent address with no flags (what records before flags were kept say).
    pub(crate) fn plain(net: ipnetwork::IpNetwork) -> KeptAddr {
        KeptAddr {
            net,
            flags: 0,
            scope: 0,
            valid: u32::MAX,
            preferred: u32::MAX,
            brd: default_brd(net),
            metric: 0,
        }
    }
}

/// A route as the port held it (the output interface is the port, or the bridge meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeptRoute {
    pub dst: ipnetwork::IpNetwork,
    pub gateway: Option<std::net::IpAddr>,
    pub metric: u32,
    pub table: u32,
    /// RTPROT_*, RT_SCOPE_*, RTN_*, RTNH_F_* (onlink).
    pub proto: u8,
    pub scope: u8,
    pub kind: u8,
    pub flags: u32,
    /// `src`.
    pub prefsrc: Option<std::net::IpAddr>,
    /// RTA_METRICS by RTAX_* number (0: not set).
    pub metrics: crate::plumbing::rtax::Metrics,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// By topology name.
    pub pending: BTreeMap<String, Pending>,
    /// By sysctl key (`net.ipv4.ip_forward`): those of the network namespace this run is in
    /// (the record's sysctls are per network namespace, as the kernel's are).
    pub sysctls: BTreeMap<String, Saved>,
    /// Those changed in other network namespaces (nsfw run in one that shares /run), by
    /// `KEY@NETNS`: kept as they are, never read or restored here.
    pub elsewhere: BTreeMap<String, Saved>,
    /// By port name.
    pub taken: BTreeMap<String, Taken>,
    /// Interfaces nsfw binds (or is about to bind) to firewalld's zone at runtime, with the
    /// topology that wants each: a binding has no mark of its own, so this is what says it is
    /// nsfw's to remove (`crate::firewalld`).
    pub firewalld: BTreeMap<String, String>,
    /// Objects built by hand that `apply --adopt` of a topology is taking over, by topology:
    /// until the run is done, any run of that topology (apply or flush) takes them for its
    /// own, marked or not, so a killed adoption converges like a killed apply.
    pub adopting: BTreeMap<String, Pending>,
    /// The network namespace it was read in (empty: the one nsfw runs in when saved).
    pub here: String,
}

#[cfg(test)]
const HERE_IN_TESTS: &str = "net:[4026531840]";

/// The network namespace nsfw runs in as the record names it: `net:[INODE]/DEV`, the inode and
/// device of its nsfs file (stat of /proc/self/ns/net, never its link text: the main thread's,
/// which never leaves it — the host's sysctls are read and written from there); "net:?" when
/// /proc cannot say.
pub(crate) fn netns_here() -> String {
    match nix::sys::stat::stat("/proc/self/ns/net") {
        Ok(st) => format!("net:[{}]/{}", st.st_ino, st.st_dev),
        Err(_) => "net:?".into(),
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn num<T: TryFrom<u64>>(v: &Value, default: T) -> T {
    v.as_u64()
        .and_then(|n| T::try_from(n).ok())
        .unwrap_or(default)
}

/// Pending objects by topology, as `pending` and `adopting` hold them.
fn pendings(v: &Value) -> BTreeMap<String, Pending> {
    let mut out = BTreeMap::new();
    if let Some(p) = v.as_object() {
        for (t, o) in p {
            out.insert(
                t.clone(),
                Pending {
                    namespaces: strings(&o["namespaces"]),
                    links: o["links"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                                .collect()
                        })
                        .unwrap_or_default(),
                    files: strings(&o["files"]),
                    legacy_rules: o["legacy_rules"].as_bool().unwrap_or(false),
                    announce: super::announced::from_json(&o["announce"]),
                },
            );
        }
    }
    out
}

fn pendings_json(p: &BTreeMap<String, Pending>) -> Value {
    let m: serde_json::Map<String, Value> = p
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(t, p)| {
            (t.clone(), {
                let mut v = json!({"namespaces": p.namespaces, "links": p.links, "files": p.files});
                if p.legacy_rules {
                    v["legacy_rules"] = json!(true);
                }
                if !p.announce.is_empty() {
                    v["announce"] = super::announced::to_json(&p.announce);
                }
                v
            })
        })
        .collect();
    Value::Object(m)
}

/// An address of `taken`: an object, or a plain string as records before flags were kept
/// hold it.
fn kept_addr(v: &Value) -> Option<KeptAddr> {
    if let Some(s) = v.as_str() {
        return s.parse().ok().map(KeptAddr::plain);
    }
    let net: ipnetwork::IpNetwork = v["net"].as_str()?.parse().ok()?;
    let brd = match v.get("brd") {
        None => default_brd(net),
        Some(b) => b.as_str().and_then(|b| b.parse().ok()),
    };
    Some(KeptAddr {
        net,
        flags: num(&v["flags"], 0),
        scope: num(&v["scope"], 0),
        valid: num(&v["valid"], u32::MAX),
        preferred: num(&v["preferred"], u32::MAX),
        brd,
        metric: num(&v["metric"], 0),
    })
}

/// RTA_METRICS as kept: `{"2": 1400, "8": 1360}` by RTAX_* number.
fn rtax_of(v: &Value) -> crate::plumbing::rtax::Metrics {
    let mut m = [0; 18];
    for (k, x) in v.as_object().into_iter().flatten() {
        if let (Ok(i), Some(x)) = (k.parse::<usize>(), x.as_u64())
            && let (Some(slot), Ok(x)) = (m.get_mut(i), u32::try_from(x))
        {
            *slot = x;
        }
    }
    m
}

/// The routes of one `taken` entry; a record from before routes were kept has only the IPv4
/// default route's next hop (`gateway`), which comes back as a static route.
fn kept_routes(o: &Value) -> Vec<KeptRoute> {
    if let Some(a) = o["routes"].as_array() {
        return a
            .iter()
            .filter_map(|r| {
                Some(KeptRoute {
                    dst: r["dst"].as_str()?.parse().ok()?,
                    gateway: r["gateway"].as_str().and_then(|g| g.parse().ok()),
                    metric: num(&r["metric"], 0),
                    table: num(&r["table"], 254),
                    proto: num(&r["proto"], 4),
                    scope: num(&r["scope"], 0),
                    kind: num(&r["kind"], 1),
                    flags: num(&r["flags"], 0),
                    prefsrc: r["prefsrc"].as_str().and_then(|g| g.parse().ok()),
                    metrics: rtax_of(&r["metrics"]),
                })
            })
            .collect();
    }
    o["gateway"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .map(|g| KeptRoute {
            dst: crate::resources::DEFAULT_V4,
            gateway: Some(g),
            metric: 0,
            table: 254,
            proto: 4,
            scope: 0,
            kind: 1,
            flags: 0,
            prefsrc: None,
            metrics: [0; 18],
        })
        .into_iter()
        .collect()
}

impl Record {
    /// Reads the record; a missing one is empty. One that cannot be read is reported and
    /// taken as empty: it only ever holds hints for cleaning up.
    pub(crate) fn load(dir: impl AsFd) -> Record {
        let bytes = match safefs::read_at(dir, NAME) {
            Ok(Entry::File(b)) => b,
            Ok(Entry::Missing) => return Record::default(),
            Ok(Entry::Other(kind)) => {
                crate::warning!(
                    "{}/{NAME} is {kind}, not nsfw's record; ignored",
                    super::STATE_DIR
                );
                return Record::default();
            }
            Err(e) => {
                crate::warning!("{}/{NAME}: {e:#}; ignored", super::STATE_DIR);
                return Record::default();
            }
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Record::from_json_in(&v, &netns_here()),
            Err(e) => {
                crate::warning!(
                    "{}/{NAME} is not valid JSON ({e}); ignored",
                    super::STATE_DIR
                );
                Record::default()
            }
        }
    }

    #[cfg(test)]
    fn from_json(v: &Value) -> Record {
        Record::from_json_in(v, HERE_IN_TESTS)
    }

    /// The record as read in network namespace `here` (see [`netns_here`]).
    fn from_json_in(v: &Value, here: &str) -> Record {
        let mut r = Record {
            pending: pendings(&v["pending"]),
            adopting: pendings(&v["adopting"]),
            here: here.to_string(),
            ..Default::default()
        };
        if let Some(t) = v["taken"].as_object() {
            for (port, o) in t {
                r.taken.insert(
                    port.clone(),
                    Taken {
                        topology: o["topology"].as_str().unwrap_or_default().to_string(),
                        bridge: o["bridge"].as_str().unwrap_or_default().to_string(),
                        addrs: o["addrs"]
                            .as_array()
                            .map(|a| a.iter().filter_map(kept_addr).collect())
                            .unwrap_or_default(),
                        routes: kept_routes(o),
                        mtu: o["mtu"].as_u64().and_then(|m| u32::try_from(m).ok()),
                        down: o["down"].as_bool().unwrap_or(false),
                    },
                );
            }
        }
        if let Some(f) = v["firewalld"].as_object() {
            for (iface, t) in f {
                if let Some(t) = t.as_str() {
                    r.firewalld.insert(iface.clone(), t.to_string());
                }
            }
        }
        if let Some(s) = v["sysctls"].as_object() {
            for (k, o) in s {
                if let Some(orig) = o["original"].as_str() {
                    let saved = Saved {
                        original: orig.to_string(),
                        users: strings(&o["users"]),
                    };
                    // A key without `@NETNS` is from before they were kept apart: this one's.
                    match k.rsplit_once('@') {
                        Some((key, ns)) if ns == here => r.sysctls.insert(key.into(), saved),
                        Some(_) => r.elsewhere.insert(k.clone(), saved),
                        None => r.sysctls.insert(k.clone(), saved),
                    };
                }
            }
        }
        r
    }

    fn to_json(&self) -> Value {
        let pending = pendings_json(&self.pending);
        let here = if self.here.is_empty() {
            netns_here()
        } else {
            self.here.clone()
        };
        let sysctls: serde_json::Map<String, Value> = self
            .sysctls
            .iter()
            .map(|(k, s)| (format!("{k}@{here}"), s))
            .chain(self.elsewhere.iter().map(|(k, s)| (k.clone(), s)))
            .map(|(k, s)| (k, json!({"original": s.original, "users": s.users})))
            .collect();
        let taken: serde_json::Map<String, Value> = self
            .taken
            .iter()
            .map(|(p, t)| {
                let addrs: Vec<Value> = t
                    .addrs
                    .iter()
                    .map(|a| {
                        json!({"net": a.net.to_string(), "flags": a.flags, "scope": a.scope,
                               "valid": a.valid, "preferred": a.preferred,
                               "brd": a.brd.map(|b| b.to_string()), "metric": a.metric})
                    })
                    .collect();
                let routes: Vec<Value> = t
                    .routes
                    .iter()
                    .map(|r| {
                        json!({"dst": r.dst.to_string(), "gateway": r.gateway.map(|g| g.to_string()),
                               "metric": r.metric, "table": r.table, "proto": r.proto,
                               "scope": r.scope, "kind": r.kind, "flags": r.flags,
                               "prefsrc": r.prefsrc.map(|g| g.to_string()),
                               "metrics": r.metrics.iter().enumerate().filter(|(_, v)| **v != 0)
                                   .map(|(i, v)| (i.to_string(), json!(v)))
                                   .collect::<serde_json::Map<String, Value>>()})
                    })
                    .collect();
                (
                    p.clone(),
                    json!({"topology": t.topology, "bridge": t.bridge, "addrs": addrs,
                           "routes": routes, "mtu": t.mtu, "down": t.down}),
                )
            })
            .collect();
        let mut v = json!({"version": 1, "pending": pending, "sysctls": sysctls, "taken": taken});
        if !self.firewalld.is_empty() {
            v["firewalld"] = json!(self.firewalld);
        }
        if self.adopting.values().any(|p| !p.is_empty()) {
            v["adopting"] = pendings_json(&self.adopting);
        }
        v
    }

    /// Writes the record whole (a temporary file renamed over it), or removes it when empty.
    pub(crate) fn save(&self, dir: impl AsFd) -> Result<()> {
        let path = format!("{}/{NAME}", super::STATE_DIR);
        if self.pending.values().all(Pending::is_empty)
            && self.adopting.values().all(Pending::is_empty)
            && self.sysctls.is_empty()
            && self.elsewhere.is_empty()
            && self.taken.is_empty()
            && self.firewalld.is_empty()
        {
            // And what a write killed half-way left beside it.
            safefs::remove_at(&dir, &format!(".{NAME}.nsfw"))
                .and_then(|()| safefs::remove_at(&dir, NAME))
                .map_err(|e| anyhow::anyhow!("{path}: {e:#}"))?;
            return Ok(());
        }
        let mut text = self.to_json().to_string();
        text.push('\n');
        safefs::write_at(dir, NAME, text.as_bytes(), safefs::FILE_MODE)
            .map_err(|e| anyhow::anyhow!("{path}: {e:#}"))
    }

    /// The pending objects of topologies `owned` selects, merged.
    pub(crate) fn pending_of(&self, owned: &dyn Fn(&str) -> bool) -> Pending {
        let mut out = Pending::default();
        for (t, p) in &self.pending {
            if owned(t) {
                out.extend(p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut r = Record::default();
        r.pending
            .entry("lab".into())
            .or_default()
            .namespaces
            .insert("ns1".into());
        r.pending
            .entry("lab".into())
            .or_default()
            .links
            .insert("veth-ns1".into(), "02:00:00:00:00:01".into());
        r.sysctls.insert(
            "net.ipv4.ip_forward".into(),
            Saved {
                original: "0".into(),
                users: ["lab".to_string()].into(),
            },
        );
        r.firewalld.insert("br0".into(), "lab".into());
        r.taken.insert(
            "eth9".into(),
            Taken {
                topology: "lab".into(),
                bridge: "br0".into(),
                addrs: vec![KeptAddr {
                    flags: 0x200,
                    valid: 300,
                    preferred: 200,
                    ..KeptAddr::plain("192.0.2.5/24".parse().expect("net"))
                }],
                routes: vec![KeptRoute {
                    dst: "0.0.0.0/0".parse().expect("net"),
                    gateway: Some("192.0.2.1".parse().expect("ip")),
                    metric: 100,
                    table: 1000,
                    proto: 4,
                    scope: 0,
                    kind: 1,
                    flags: 4,
                    prefsrc: Some("192.0.2.5".parse().expect("ip")),
                    metrics: [0, 0, 1400, 0, 0, 0, 0, 0, 1360, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                }],
                mtu: Some(1400),
                down: true,
            },
        );
        r.here = HERE_IN_TESTS.into();
        assert_eq!(Record::from_json(&r.to_json()), r);
    }

    /// Sysctls are kept per network namespace: another one's are carried along untouched and
    /// never read as this one's; a key without a namespace is this one's.
    #[test]
    fn sysctls_are_kept_per_network_namespace() {
        let v = json!({"sysctls": {
            "net.ipv4.ip_forward@net:[1]/4": {"original": "0", "users": ["here"]},
            "net.ipv4.ip_forward@net:[2]/4": {"original": "0", "users": ["there"]},
            "net.ipv6.conf.all.forwarding": {"original": "0", "users": ["old"]},
        }});
        let r = Record::from_json_in(&v, "net:[1]/4");
        assert_eq!(r.sysctls.len(), 2, "{r:?}");
        assert!(r.sysctls["net.ipv4.ip_forward"].users.contains("here"));
        assert_eq!(r.elsewhere.len(), 1);
        let back = Record::from_json_in(&r.to_json(), "net:[2]/4");
        assert!(back.sysctls["net.ipv4.ip_forward"].users.contains("there"));
        assert_eq!(back.elsewhere.len(), 2, "{back:?}");
    }

    #[test]
    fn reads_a_record_from_before_routes_were_kept() {
        let v = json!({"taken": {"eth9": {"topology": "lab", "bridge": "br0",
            "addrs": ["192.0.2.5/24"], "gateway": "192.0.2.1"}}});
        let r = Record::from_json(&v);
        let t = &r.taken["eth9"];
        assert_eq!(
            t.addrs,
            vec![KeptAddr::plain("192.0.2.5/24".parse().expect("net"))]
        );
        assert_eq!(t.routes.len(), 1);
        assert_eq!(t.routes[0].gateway, Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(t.routes[0].table, 254);
    }
}
