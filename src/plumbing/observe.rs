//! Reading back what the kernel holds: links, addresses, routes and sysctls of the host and of
//! every named namespace, and the resolv.conf files beside them. The same resource types as
//! `resources`, plus what only the kernel knows (ifindexes, veth peers, ownership marks).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Result;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::addrmsg::{parse_addr, parse_route};
use super::links::{link_by_name, links};
use super::objects::{FileObs, Link, NodeObs, NsObs};
use super::rtnl::Conn;
use super::{netns, sysctl};

/// What the kernel holds of everything nsfw manages.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub host: NodeObs,
    /// Every named namespace that could be entered, by name.
    pub namespaces: BTreeMap<String, NsObs>,
    /// Names in /run/netns that cannot be entered, with why (a leftover file, EPERM, ...).
    pub unreachable: BTreeMap<String, String>,
    /// `/etc/netns/<ns>/resolv.conf`, by namespace name.
    pub resolv: BTreeMap<String, FileObs>,
    /// Entries under /etc/netns nsfw cannot look into, with why.
    pub etc_problems: Vec<String>,
    /// The directories under /etc/netns nsfw may remove (nothing in them but resolv.conf).
    pub etc_dirs: BTreeSet<String>,
    /// The directories under /etc/netns that hold more than resolv.conf, with what.
    pub etc_busy: BTreeMap<String, Vec<String>>,
    /// The topologies with a table of their own in the host's nftables (filled in by the
    /// engine, which reads nftables): one with nothing else still counts as there.
    pub tables_of: BTreeSet<String>,
    /// The namespaces `nsfw watch`'s memory supplied (not read by this run).
    pub remembered: BTreeSet<String>,
}

impl Observed {
    /// Interface indexes inside the namespaces, by (namespace, interface): the executor's
    /// starting point (it learns the indexes of the links it makes as it makes them).
    pub(crate) fn ns_indexes(&self) -> std::collections::BTreeMap<(String, String), u32> {
        let mut out = std::collections::BTreeMap::new();
        for (ns, o) in &self.namespaces {
            for l in &o.node.links {
                out.insert((ns.clone(), l.name.clone()), l.index);
            }
        }
        out
    }
}

/// What to read beyond links.
pub(crate) struct Query<'a> {
    /// Whether namespace `name` with `lo` alias `owner` is read whole (addresses, routes,
    /// sysctls): the ones the plan looks into.
    pub deep: &'a (dyn Fn(&str, Option<&str>) -> bool + Sync),
    /// The sysctls to read in namespace `name`.
    pub ns_sysctls: &'a (dyn Fn(&str) -> Vec<String> + Sync),
    /// The sysctls to read in the host.
    pub host_sysctls: Vec<String>,
    /// What `nsfw watch` vouches for: those namespaces are not entered.
    pub known: Option<&'a super::memory::Known>,
    /// Watch's answer still coming, for `known` (the engine waits for it beside nftables' read).
    pub asking: Option<&'a super::memory::Asking>,
    /// Whether a namespace `deep` does not want whole is read from the host, by the id the
    /// host knows it by, before it is entered (`peek`): where `deep` looks at the name alone,
    /// as one it wants is then read twice.
    pub peek: bool,
}

/// Reads the rest of one namespace (the one `c` is bound to) whose links are read: addresses,
/// routes and the sysctls `keys` (the calling thread must be in the same namespace).
fn node(c: &mut Conn, links: Vec<Link>, keys: &[String]) -> Result<NodeObs> {
    let mut n = NodeObs {
        links,
        ..Default::default()
    };
    // A family at a time: a dump of both at once (AF_UNSPEC) runs under the kernel's rtnl
    // lock, each family's own does not (Linux 6.9 and later), so the namespaces read on
    // several threads, and the host beside them, no longer wait on one another. Only the
    // family asked for is kept: a kernel without a family's handler (IPv6 off at boot)
    // answers with the dump of all of them.
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut a = AddressMessage::default();
        a.header.family = family;
        for m in c.dump(RouteNetlinkMessage::GetAddress(a), "addresses")? {
            if let RouteNetlinkMessage::NewAddress(a) = m
                && a.header.family == family
            {
                n.addrs.extend(parse_addr(&a));
            }
        }
        let mut r = RouteMessage::default();
        r.header.address_family = family;
        for m in c.dump(RouteNetlinkMessage::GetRoute(r), "routes")? {
            if let RouteNetlinkMessage::NewRoute(r) = m
                && r.header.address_family == family
                && let Some(r) = parse_route(&r)
            {
                // Local and broadcast routes live in the local table, and follow the addresses.
                match r.table {
                    254 => n.routes.push(r),
                    255 => {}
                    _ => n.other_tables.push(r),
                }
            }
        }
    }
    // Shaped links: details only where a root is not a veth's noqueue (the link dump names
    // the kind; a physical NIC's mq or fq_codel is the kernel's default, handle 0:).
    if n.links
        .iter()
        .any(|l| l.qdisc.as_deref().is_some_and(|q| q != "noqueue"))
    {
        let msgs: Vec<_> = c
            .dump(super::qdisc::dump_req(), "qdiscs")?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(q) => Some(q),
                _ => None,
            })
            .collect();
        n.qdiscs = super::qdisc::roots(&msgs);
    }
    if n.links.iter().any(|l| l.vxlan.is_some()) {
        n.fdb = super::fdb::dump(c, &n.links)?;
    }
    // The host's keys are one per link the file names there: its links by name, not a scan
    // of them per key (at 1,000 namespaces that was 1,000 × 1,000 name comparisons). A
    // namespace's handful are scanned.
    let by_name: Option<std::collections::HashMap<&str, &Link>> = (keys.len() > 1
        && n.links.len() > 16)
        .then(|| n.links.iter().map(|l| (l.name.as_str(), l)).collect());
    let link = |name: &str| match &by_name {
        Some(m) => m.get(name).copied(),
        None => n.links.iter().find(|l| l.name == name),
    };
    let mut got = BTreeMap::new();
    for k in keys {
        let v = match from_links(&link, k) {
            Some(v) => Some(v),
            None => match super::netconf::read(c, k) {
                Some(v) => v?,
                None => sysctl::read(k)?,
            },
        };
        got.insert(k.clone(), v);
    }
    n.sysctls = got;
    Ok(n)
}

/// Links, addresses and routes of the namespace `c` is bound to (the calling thread must be
/// in it too): one namespace read whole, as CNI's CHECK needs a container's.
pub(crate) fn read_node(c: &mut Conn) -> Result<NodeObs> {
    let l = links(c)?;
    node(c, l, &[])
}

/// Reads everything nsfw manages. Every namespace is read (ownership is a mark inside it), and
/// read whole where `q.deep` says so; the others from the host where `q.peek` says so. The
/// host's links come from `nsfw watch`'s memory when it vouches for them (at N veth pairs a
/// dump costs O(N²) in the kernel).
pub(crate) fn observe(q: &Query) -> Result<Observed> {
    match q.known.and_then(|k| k.take_host()) {
        Some(links) => {
            crate::detail!(
                "memory: the host's {} links from watch's memory",
                links.len()
            );
            observe_some(q, None, &HostLinks::Given(Mutex::new(Some(links))))
        }
        None => observe_some(q, None, &HostLinks::Dump),
    }
}

/// The namespaces of `names` the memory `k` vouches for, taken from it; the others, to be
/// read.
fn remembered(
    q: &Query,
    k: &super::memory::Known,
    names: Vec<String>,
) -> (Vec<(String, NsObs)>, Vec<String>) {
    let inodes = super::memory::inodes(&names);
    let (mut kept, mut read) = (Vec::new(), Vec::new());
    for name in names {
        let keys = (q.ns_sysctls)(&name);
        let id = inodes.get(&name).copied();
        let got =
            id.and_then(|(_, ino)| k.vouch(&name, ino, &|owner| (q.deep)(&name, owner), &keys));
        match got {
            Some(mut ns) => {
                // Vouched for under the inode the name holds now: that is which namespace it is.
                ns.id = id;
                kept.push((name, ns));
            }
            None => read.push(name),
        }
    }
    crate::detail!(
        "memory: {} namespace(s) from watch's memory, {} to read",
        kept.len(),
        read.len()
    );
    (kept, read)
}

/// Which of the host's links to read: all of them (one dump), or those of an earlier read
/// with the links `again` asked for anew by name (at N veth pairs a host link dump costs
/// O(N²) in the kernel: each host end's IFLA_LINK_NETNSID is a walk of N namespace ids).
pub(crate) enum HostLinks<'a> {
    Dump,
    /// As `nsfw watch` keeps them from the kernel's notifications, with the per-interface
    /// settings the file names (which the kernel does not notify) read again before it
    /// answered. Taken by the read (not copied); a second read dumps them.
    Given(Mutex<Option<Vec<Link>>>),
    Again {
        before: &'a [Link],
        again: &'a BTreeSet<String>,
    },
}

impl HostLinks<'_> {
    /// `keys`: the host's sysctls the run reads (their links are among those it uses).
    fn read(&self, c: &mut Conn, keys: &[String]) -> Result<Vec<Link>> {
        let mut out: Vec<Link> = match self {
            HostLinks::Dump => return links(c),
            HostLinks::Given(l) => match l.lock().ok().and_then(|mut g| g.take()) {
                Some(l) => l,
                None => return links(c),
            },
            HostLinks::Again { before, again } => {
                let mut out: Vec<Link> = before
                    .iter()
                    .filter(|l| !again.contains(&l.name))
                    .cloned()
                    .collect();
                for n in again.iter() {
                    out.extend(link_by_name(c, n)?);
                }
                out
            }
        };
        out.sort_by_key(|l| l.index);
        #[cfg(debug_assertions)]
        held_to_a_dump(c, &out, keys, self.again().unwrap_or(&Default::default()))?;
        #[cfg(not(debug_assertions))]
        let _ = keys;
        Ok(out)
    }

    /// The links asked for anew by name, after an earlier read.
    fn again(&self) -> Option<&BTreeSet<String>> {
        match self {
            HostLinks::Again { again, .. } => Some(again),
            _ => None,
        }
    }

    /// `links` without the veths of namespaces being torn down: after a dump, every one
    /// probed; after an earlier read, those asked for again (the rest are as that read, which
    /// probed them, saw them: at 1,000 namespaces, 1,000 requests fewer). None of `alive` is
    /// probed: the host ends whose peer this run found in a named namespace.
    fn without_dying(&self, c: &mut Conn, links: Vec<Link>, alive: &BTreeSet<u32>) -> Vec<Link> {
        let again = self.again();
        let (probed, kept): (Vec<Link>, Vec<Link>) = links
            .into_iter()
            .partition(|l| !alive.contains(&l.index) && again.is_none_or(|a| a.contains(&l.name)));
        let mut out = super::nsid::without_dying(c, probed).0;
        out.extend(kept);
        out.sort_by_key(|l| l.index);
        out
    }
}

/// [`observe`], entering only the namespaces in `only` when given, and reading the host's
/// links as `host_links` says (the host's addresses, routes and files are read whole).
pub(crate) fn observe_some(
    q: &Query,
    only: Option<&BTreeSet<String>>,
    host_links: &HostLinks,
) -> Result<Observed> {
    let mut o = Observed::default();
    let mut names = netns::list()?;
    if let Some(only) = only {
        names.retain(|n| only.contains(n));
    }
    let read = |name: &str, id: netns::NsId, c: &mut Conn| -> Result<NsObs> {
        let l = links(c)?;
        let owner = super::objects::owner_of(&l);
        let node = if (q.deep)(name, owner.as_deref()) {
            node(c, l, &(q.ns_sysctls)(name))?
        } else {
            NodeObs {
                links: l,
                ..Default::default()
            }
        };
        Ok(NsObs {
            owner,
            node,
            id: Some(id),
        })
    };
    // The host (an O(N²) link dump at N veth pairs), the namespaces and /etc/netns are read at
    // once, the host on this thread (in the host's namespace), the namespaces by the workers:
    // those watch's memory vouches for taken from it first (a look at each /run/netns entry,
    // 3 ms at 1,000, beside the host's read rather than before it).
    let (visited, (etc, host)) = super::threads::beside(
        || {
            let (kept, names) = match q.known {
                Some(k) => remembered(q, k, names),
                None => (Vec::new(), names),
            };
            let (peeked, names) = match q.peek {
                true => super::peek::shallow(q.deep, names),
                false => (Vec::new(), names),
            };
            let visited = netns::visit_identified(&names, &read);
            (kept, peeked, names, visited)
        },
        || super::threads::beside(super::files::read_resolv, || read_host(q, host_links)),
    );
    let (visited, etc) = (visited.ok_or(()), etc.ok_or(()));
    let lost = |what: &str| anyhow::anyhow!("reading {what}: its thread did not finish");
    let (mut conn, mut host) = host?;
    let (kept, peeked, names, visited) = visited.map_err(|_| lost("the namespaces"))?;
    for (name, ns) in kept {
        o.remembered.insert(name.clone());
        o.namespaces.insert(name, ns);
    }
    o.namespaces.extend(peeked);
    for (name, r) in names.iter().zip(visited) {
        match r {
            Ok(Some(ns)) => {
                o.namespaces.insert(name.clone(), ns);
            }
            Ok(None) => {} // removed meanwhile
            // No thread to read it on: this run's failure, not the namespace's.
            Err(e) if super::threads::refused(&e) => return Err(e),
            Err(e) => {
                o.unreachable.insert(name.clone(), format!("{e:#}"));
            }
        }
    }
    // A veth whose namespace the kernel is tearing down is gone already (`nsid`): not in the
    // way, not drift, not a sign of a topology. Those whose peer is in a namespace this run
    // found by its name are not: only the others are asked about (at N namespaces each
    // answer is a walk of N ids in the kernel).
    let alive = super::nsid::paired(&host.links, o.namespaces.values());
    host.links = host_links.without_dying(&mut conn, std::mem::take(&mut host.links), &alive);
    o.host = host;
    let etc = etc.map_err(|_| lost("/etc/netns"))??;
    o.resolv = etc.resolv;
    o.etc_problems = etc.problems;
    o.etc_dirs = etc.dirs;
    o.etc_busy = etc.busy;
    Ok(o)
}

/// The host read whole, its links as `host_links` says (those of namespaces being torn down
/// still among them), and the connection it was read over.
fn read_host(q: &Query, host_links: &HostLinks) -> Result<(Conn, NodeObs)> {
    let mut host = Conn::open("host")?;
    let all = host_links.read(&mut host, &q.host_sysctls)?;
    let n = node(&mut host, all, &q.host_sysctls)?;
    Ok((host, n))
}

/// A sysctl of one of `links` (`net.ipv4.conf.eth0.promote_secondaries`), from its link dump.
fn from_links<'l>(link: &dyn Fn(&str) -> Option<&'l Link>, key: &str) -> Option<String> {
    let (dev, conf) = link_key(key)?;
    let l = link(&dev)?;
    l.conf.get(conf.as_str()).cloned()
}

/// A per-interface sysctl's interface and its name in a link's settings
/// (`net.ipv4.conf.eth0.promote_secondaries`: `eth0`, `ipv4.promote_secondaries`).
pub(crate) fn link_key(key: &str) -> Option<(String, String)> {
    let (fam, dev, leaf) = sysctl::per_interface(key)?;
    Some((dev.replace('/', "."), format!("{fam}.{leaf}")))
}

/// Debug builds (the tests') hold the host's links a run was given to a dump, as
/// `held::compared` says, and panic when they differ (dumped twice first: a change of nsfw's
/// own links may race the first dump). `keys`: the host's sysctls the run reads.
#[cfg(debug_assertions)]
fn held_to_a_dump(
    c: &mut Conn,
    out: &[Link],
    keys: &[String],
    again: &BTreeSet<String>,
) -> Result<()> {
    let named = keys
        .iter()
        .filter_map(|k| link_key(k).map(|(dev, _)| dev))
        .chain(again.iter().cloned())
        .collect();
    let mine = super::nsid::without_dying(c, out.to_vec()).0;
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let dumped = links(c)?;
        let mut all = super::nsid::without_dying(c, dumped).0;
        all.sort_by_key(|l| l.index);
        last = super::held::compared(&mine, &all, &named);
        if last.0 == last.1 {
            return Ok(());
        }
    }
    assert_eq!(
        last.0, last.1,
        "the host's links asked for again: {again:?}"
    );
    Ok(())
}
