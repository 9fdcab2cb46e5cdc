//! The kernel's change notifications `nsfw watch` listens to: nf_tables (NFNLGRP_NFTABLES of a
//! NETLINK_NETFILTER socket: every table, chain, rule, set and element change, each transaction
//! closed by a NEWGEN naming the process that made it), and rtnetlink's link, qdisc, address,
//! route and forwarding (netconf) groups, in the host and (a socket opened inside each) in the
//! topology's namespaces. Each becomes an [`Event`]: what changed, and whether it is ours.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Result;
use ipnetwork::IpNetwork;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use crate::netlink::{
    self, Attr, Msg, NETLINK_NETFILTER, NETLINK_ROUTE, RecvBuf, Socket, string_of,
};
use crate::plumbing::netns;

/// NFNLGRP_NFTABLES.
const NFT_GROUPS: [u32; 1] = [7];
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// RTNLGRP_LINK, TC (qdiscs), IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE, *_NETCONF.
const RTNL_GROUPS: [u32; 8] = [1, 4, 5, 7, 9, 11, 24, 25];
const RTM_NEWNETCONF: u16 = 80;
const RTM_DELNETCONF: u16 = 81;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// Room in the kernel for a burst (a whole ruleset flushed and loaded again).
const SOCK_BUF: usize = 4 << 20;

/// What the topology owns, for telling its events from others'.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interest {
    /// `nsfw_<name>`.
    pub table: String,
    /// `nsfw:<name>`.
    pub mark: String,
    /// The host's links the topology has (bridges, veth host ends).
    pub links: BTreeSet<String>,
    /// Their ifindexes as last seen.
    pub indexes: BTreeSet<u32>,
    /// The topology's subnets (routes to them matter).
    pub subnets: Vec<IpNetwork>,
    /// Its namespaces' names (their entries in /run/netns).
    pub namespaces: BTreeSet<String>,
}

/// One change, said for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub what: String,
    /// It concerns an object the topology owns or depends on.
    pub ours: bool,
    /// The process that made it, where the kernel says (nf_tables' NEWGEN): its name, pid
    /// and netlink port id.
    pub by: Option<String>,
    /// It changed nsfw's own table: the firewall may be open until it is repaired.
    pub urgent: bool,
    /// Elements of a set of nsfw's table on the host added or deleted: which.
    pub elems: Option<Elems>,
}

/// Elements of a set added (NEWSETELEM) or deleted (DELSETELEM), as the kernel holds them:
/// what watch's put-back repairs without observing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Elems {
    pub set: String,
    pub deleted: bool,
    /// Each element's key and key end (an rbtree range's end element is left out: its start
    /// names the range).
    pub keys: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// An element could not be read: the keys are not all there is.
    pub partial: bool,
}

/// The elements of an element message's attributes `body` (NFTA_SET_ELEM_LIST_ELEMENTS: each
/// NFTA_LIST_ELEM holds NFTA_SET_ELEM_KEY and KEY_END, each a NFTA_DATA_VALUE, and FLAGS).
pub(super) fn elems_of(body: &[u8], set: String, deleted: bool) -> Elems {
    let mut e = Elems {
        set,
        deleted,
        keys: Vec::new(),
        partial: false,
    };
    fn value(a: &[u8], t: u16) -> Option<&[u8]> {
        netlink::find(a, t).and_then(|k| netlink::find(k, 1))
    }
    for el in netlink::attrs(netlink::find(body, 3).unwrap_or_default()).filter(|a| a.ty == 1) {
        let flags = netlink::find(el.value, 3)
            .and_then(|f| f.get(..4))
            .map_or(0, |f| u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
        match value(el.value, 1) {
            // NFT_SET_ELEM_INTERVAL_END.
            Some(_) if flags & 1 != 0 => {}
            Some(k) => e
                .keys
                .push((k.to_vec(), value(el.value, 10).map(<[u8]>::to_vec))),
            None => e.partial = true,
        }
    }
    e
}

/// A netlink socket subscribed to groups, non-blocking.
pub(crate) struct Sub {
    pub sock: Socket,
    /// "host" or "namespace NAME".
    pub place: String,
    pub kind: Kind,
    /// The nf_tables transaction being read on this socket (each namespace has its own).
    nft: NftReader,
    /// A namespace's rtnetlink socket: its name, and its inode when subscribed.
    pub ns: Option<(String, u64)>,
    /// Since last cleared: a message came (whatever it said), or some were lost (ENOBUFS).
    pub heard: bool,
    pub lost: bool,
    /// The host's rtnetlink socket: every message heard since last taken, whole (watch's
    /// memory keeps the host's links from them).
    pub msgs: Option<Vec<Vec<u8>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Nft,
    Rtnl,
}

fn subscribe(protocol: isize, groups: &'static [u32], place: String, kind: Kind) -> Result<Sub> {
    let sock = netlink::socket(protocol)
        .groups(groups)
        .recv_buffer(SOCK_BUF)
        .open(&place)?;
    Ok(Sub {
        sock,
        place,
        kind,
        nft: NftReader::default(),
        ns: None,
        heard: false,
        lost: false,
        msgs: None,
    })
}

/// nf_tables notifications and the host's rtnetlink groups.
pub(crate) fn host_subs() -> Result<Vec<Sub>> {
    Ok(vec![
        subscribe(NETLINK_NETFILTER, &NFT_GROUPS, "host".into(), Kind::Nft)?,
        Sub {
            msgs: Some(Vec::new()),
            ..subscribe(NETLINK_ROUTE, &RTNL_GROUPS, "host".into(), Kind::Rtnl)?
        },
    ])
}

/// rtnetlink groups inside each namespace of `names` (those that exist), forwarding
/// (netconf) included; and nf_tables notifications inside those of them in `tables`, which
/// hold an nsfw table of their own (routers): each namespace has its own ruleset, and the
/// host's socket hears nothing of it.
pub(crate) fn ns_subs(names: &[String], tables: &BTreeSet<String>) -> Vec<Sub> {
    netns::on_threads(names, &|name| {
        let Some(fd) = netns::open_ns(name)? else {
            return Ok(Vec::new());
        };
        netns::enter(name, &fd)?;
        let place = format!("namespace {name}");
        let mut rtnl = subscribe(NETLINK_ROUTE, &RTNL_GROUPS, place.clone(), Kind::Rtnl)?;
        rtnl.ns = nix::sys::stat::fstat(&fd)
            .ok()
            .map(|st| (name.to_string(), st.st_ino));
        let mut subs = vec![rtnl];
        if tables.contains(name) {
            subs.push(subscribe(NETLINK_NETFILTER, &NFT_GROUPS, place, Kind::Nft)?);
        }
        Ok(subs)
    })
    .into_iter()
    .filter_map(|r| r.ok())
    .flatten()
    .collect()
}

impl Sub {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Reads what is queued. An overrun (ENOBUFS) lost notifications: that is an event of its
    /// own, which always counts.
    pub(crate) fn read(&mut self, buf: &mut RecvBuf, interest: &Interest) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let bytes = match buf.recv(&self.sock) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.lost = true;
                    out.push(Event {
                        what: format!("notifications were lost ({}); rechecking", self.place),
                        ours: true,
                        by: None,
                        urgent: false,
                        elems: None,
                    });
                    continue;
                }
                // Everything queued is read (watch's memory answers only once it has).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // What could not be read may have said anything: nothing is vouched for.
                    self.lost = true;
                    out.push(Event {
                        what: format!("cannot read notifications ({}): {e}", self.place),
                        ours: true,
                        by: None,
                        urgent: false,
                        elems: None,
                    });
                    break;
                }
            };
            self.heard = true;
            for m in netlink::messages(bytes) {
                let Ok(m) = m else {
                    // The rest of the datagram cannot be found: for the host's links, lost.
                    if let Some(v) = &mut self.msgs {
                        v.push(Vec::new());
                    }
                    break;
                };
                if let Some(v) = &mut self.msgs {
                    v.push(m.bytes.to_vec());
                }
                match self.kind {
                    Kind::Nft => out.extend(self.nft.take(m, interest, &self.place)),
                    Kind::Rtnl => out.extend(rtnl(m, interest, &self.place)),
                }
            }
        }
        out
    }
}

/// nf_tables notifications come a transaction at a time, closed by NEWGEN with the pid and
/// name of the process that made it: the events wait for it, and those of nsfw's own
/// transactions (this process's) are dropped.
#[derive(Default)]
pub(crate) struct NftReader {
    /// The transaction's events so far, with the table each concerns and whether it deletes
    /// that table.
    pending: Vec<(Event, String, bool)>,
}

impl NftReader {
    fn take(&mut self, m: Msg, interest: &Interest, place: &str) -> Vec<Event> {
        if m.ty >> 8 != NFNL_SUBSYS_NFTABLES || m.bytes.len() < 20 {
            return Vec::new();
        }
        // nfgenmsg: the family first, then version and resource id.
        let family = m.payload()[0];
        let body = &m.payload()[4..];
        let get = |t: u16| netlink::find(body, t).map(string_of);
        let msg = m.ty & 0xff;
        if msg == 15 {
            // nlmsg_pid: the port id of the socket that committed.
            let port = m
                .bytes
                .get(12..16)
                .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
            return self.commit(body, port);
        }
        let fam = match family {
            1 => "inet",
            2 => "ip",
            10 => "ip6",
            7 => "bridge",
            5 => "netdev",
            3 => "arp",
            _ => "?",
        };
        let table = get(1).unwrap_or_default();
        let (verb, obj) = match msg {
            0 => ("changed", "table"),
            2 => ("deleted", "table"),
            3 => ("changed", "chain"),
            5 => ("deleted", "chain"),
            6 => ("added", "rule"),
            8 => ("deleted", "rule"),
            9 => ("changed", "set"),
            11 => ("deleted", "set"),
            12 => ("added", "element"),
            14 => ("deleted", "element"),
            _ => return Vec::new(),
        };
        // Chain messages name the chain in attribute 3, rules in 2; sets and elements name
        // their set in 2.
        let sub = match obj {
            "chain" => get(3),
            "rule" | "set" | "element" => get(2),
            _ => None,
        };
        let ours = match (fam, table.as_str()) {
            // firewalld starting or reloading (its table made anew, without nsfw's runtime
            // bindings), or a binding changed (the rules of its zone dispatch chains).
            ("inet", crate::firewalld::TABLE) => match (obj, sub.as_deref()) {
                ("table", _) => true,
                (_, Some(c)) => c.ends_with("_ZONES"),
                _ => false,
            },
            ("inet", t) => t == interest.table,
            // iptables-nft's FORWARD and DOCKER-USER: their policy and nsfw's accepts.
            ("ip", "filter") => match (obj, sub.as_deref()) {
                ("table", _) => true,
                (_, Some(c)) => c == "FORWARD" || c == "DOCKER-USER",
                _ => false,
            },
            _ => false,
        };
        let at = match place.strip_prefix("namespace ") {
            Some(ns) => format!(" in {ns}"),
            None => String::new(),
        };
        let what = match &sub {
            Some(s) => format!("nft {obj} {verb} in {fam} {table} {s}{at}"),
            None => format!("nft {obj} {fam} {table} {verb}{at}"),
        };
        let key = format!("{fam} {table}");
        self.pending.push((
            Event {
                what,
                ours,
                by: None,
                urgent: fam == "inet" && ours,
                elems: (fam == "inet" && ours && at.is_empty() && (msg == 12 || msg == 14))
                    .then(|| elems_of(body, sub.clone().unwrap_or_default(), msg == 14)),
            },
            key,
            obj == "table" && msg == 2,
        ));
        Vec::new()
    }

    /// NEWGEN (its attributes `body`: NFTA_GEN_PROC_PID, a big-endian u32, and
    /// NFTA_GEN_PROC_NAME; `port`, the committing socket's port id): the transaction's
    /// events, unless it was this process's.
    fn commit(&mut self, body: &[u8], port: Option<u32>) -> Vec<Event> {
        let pid = netlink::find(body, 2)
            .and_then(|v| v.get(..4))
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        let events = std::mem::take(&mut self.pending);
        let name = netlink::find(body, 3).map(string_of);
        if own(pid, name.as_deref()) {
            return Vec::new();
        }
        // A table deleted takes its chains, rules and sets with it: say the table only.
        let gone: Vec<String> = events
            .iter()
            .filter(|(_, _, del)| *del)
            .map(|(_, t, _)| t.clone())
            .collect();
        let events = events
            .into_iter()
            .filter(|(_, t, del)| *del || !gone.contains(t))
            .map(|(e, _, _)| e);
        let port = port
            .map(|p| format!(", netlink port {p}"))
            .unwrap_or_default();
        let by = match (name, pid) {
            (Some(n), Some(p)) => Some(format!("{n} (pid {p}{port})")),
            (None, Some(p)) => Some(format!("pid {p}{port}")),
            _ => None,
        };
        events
            .map(|e| Event {
                what: match &by {
                    Some(b) => format!("{} (by {b})", e.what),
                    None => e.what,
                },
                by: by.clone(),
                ..e
            })
            .collect()
    }
}

/// The name this process's repairs commit under (see [`as_self`]): NEWGEN names it.
fn own_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        // 15 bytes: the kernel's limit for a task's name.
        format!("nsfw-w{:09x}", h.finish() & 0xf_ffff_ffff)
    })
}

/// Runs `f` (a repair) under a name of this process's own, which NEWGEN carries, so that
/// watch knows its own transactions. NEWGEN's pid is not enough: it is counted in the
/// kernel's first PID namespace, and in one of its own (a container) watch cannot know its
/// pid there.
pub(crate) fn as_self<T>(f: impl FnOnce() -> T) -> T {
    let before = nix::sys::prctl::get_name().ok();
    let name = std::ffi::CString::new(own_name()).ok();
    if let Some(n) = &name {
        let _ = nix::sys::prctl::set_name(n);
    }
    let out = f();
    if let Some(b) = &before {
        let _ = nix::sys::prctl::set_name(b);
    }
    out
}

/// Whether a transaction NEWGEN says `name` (pid `pid`) made was this process's.
fn own(pid: Option<u32>, name: Option<&str>) -> bool {
    pid == Some(std::process::id()) || name == Some(own_name())
}

/// NETCONFA_IFINDEX_ALL (-1) with NETCONFA_FORWARDING: `ip_forward` (or IPv6's
/// `all.forwarding`) itself changed.
fn all_forwarding(m: Msg) -> bool {
    // struct netconfmsg padded to 4, then the attributes.
    let a = || netlink::attrs(m.payload().get(4..).unwrap_or_default());
    let all = a().any(|x: Attr| {
        x.ty == NETCONFA_IFINDEX && x.value.get(..4) == Some(&(-1i32).to_ne_bytes()[..])
    });
    all && a().any(|x| x.ty == NETCONFA_FORWARDING)
}

/// An rtnetlink notification. Inside a namespace of the topology everything is its own.
fn rtnl(m: Msg, interest: &Interest, place: &str) -> Vec<Event> {
    let in_ns = place != "host";
    let ty = m.ty;
    if ty == RTM_NEWNETCONF || ty == RTM_DELNETCONF {
        // In a namespace only a change of forwarding for all its interfaces (ip_forward,
        // net.ipv6.conf.all.forwarding) is nsfw's setting; the kernel also says
        // NEWNETCONF for every interface it makes, which nsfw's own runs do.
        let ours = !in_ns || all_forwarding(m);
        return vec![Event {
            what: format!("forwarding settings changed ({place})"),
            ours,
            by: None,
            urgent: false,
            elems: None,
        }];
    }
    let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(m.bytes) else {
        return Vec::new();
    };
    let NetlinkPayload::InnerMessage(inner) = msg.payload else {
        return Vec::new();
    };
    let at = if in_ns {
        format!(" in {}", place.trim_start_matches("namespace "))
    } else {
        String::new()
    };
    let (what, ours) = match inner {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            link_event(&l, ty == 17, &at, interest)
        }
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
            addr_event(&a, ty == 21, &at, interest)
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            match route_event(&r, ty == 25, &at, interest) {
                Some(e) => e,
                None => return Vec::new(),
            }
        }
        RouteNetlinkMessage::NewQueueDiscipline(q) | RouteNetlinkMessage::DelQueueDiscipline(q) => {
            let i = u32::try_from(q.header.index).unwrap_or(0);
            let ours = interest.indexes.contains(&i);
            (format!("qdisc of ifindex {i} changed{at}"), ours)
        }
        _ => return Vec::new(),
    };
    vec![Event {
        what,
        ours: ours || in_ns,
        by: None,
        urgent: false,
        elems: None,
    }]
}

/// A link changed or deleted (`at`: " in NS" inside a namespace): what to say, and whether
/// it is one of the topology's.
fn link_event(l: &LinkMessage, gone: bool, at: &str, interest: &Interest) -> (String, bool) {
    let mut name = String::new();
    let mut alias = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::IfAlias(s) => alias = Some(s.clone()),
            _ => {}
        }
    }
    let ours = interest.links.contains(&name)
        || alias.as_deref() == Some(interest.mark.as_str())
        || interest.indexes.contains(&l.header.index);
    let verb = if gone { "deleted" } else { "changed" };
    (format!("link {name}{at} {verb}"), ours)
}

/// An address added or removed: on one of the topology's links?
fn addr_event(a: &AddressMessage, gone: bool, at: &str, interest: &Interest) -> (String, bool) {
    let addr = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let shown = addr
        .map(|ip| format!("{ip}/{}", a.header.prefix_len))
        .unwrap_or_else(|| "an address".into());
    let verb = if gone { "removed" } else { "added" };
    (
        format!("address {shown}{at} {verb} (ifindex {})", a.header.index),
        interest.indexes.contains(&a.header.index),
    )
}

/// A route of the main table changed or deleted: through one of the topology's links, or to
/// one of its subnets? None for the local and broadcast routes that follow addresses (the
/// address event says it).
fn route_event(
    r: &RouteMessage,
    gone: bool,
    at: &str,
    interest: &Interest,
) -> Option<(String, bool)> {
    let mut dst = None;
    let mut oif = None;
    for x in &r.attributes {
        match x {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                dst = Some(std::net::IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                dst = Some(std::net::IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if r.header.table != 254 && r.header.table != 0 {
        return None;
    }
    let net = dst.and_then(|d| IpNetwork::new(d, r.header.destination_prefix_length).ok());
    let ours = oif.is_some_and(|i| interest.indexes.contains(&i))
        || net.is_some_and(|n| {
            n.prefix() > 0
                && interest
                    .subnets
                    .iter()
                    .any(|s| crate::topology::overlaps(*s, n))
        });
    let shown = net
        .map(|n| {
            if n.prefix() == 0 {
                "default".into()
            } else {
                n.to_string()
            }
        })
        .unwrap_or_else(|| "a route".into());
    let verb = if gone { "deleted" } else { "changed" };
    Some((format!("route {shown}{at} {verb}"), ours))
}
