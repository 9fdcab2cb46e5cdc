//! The kernel's change notifications `nsfw watch` listens to: nf_tables (the NFNLGRP_NFTABLES
//! group of a NETLINK_NETFILTER socket: every table, chain, rule, set and element change, each
//! transaction closed by a NEWGEN message naming the process that made it), and rtnetlink's
//! link, address, route and forwarding (netconf) groups — in the host, and in each namespace
//! of the topology, through a socket opened inside it. Each notification becomes an
//! [`Event`]: a line saying what changed, and whether it concerns the topology.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::sys::Socket;
use rtnetlink::sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE};

use crate::plumbing::netns;

const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// RTNLGRP_LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE, IPV4_NETCONF, IPV6_NETCONF.
const RTNL_GROUPS: [u32; 7] = [1, 5, 7, 9, 11, 24, 25];
const RTM_NEWNETCONF: u16 = 80;
const RTM_DELNETCONF: u16 = 81;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// Room in the kernel for a burst (a whole ruleset flushed and loaded again).
const SOCK_BUF: usize = 4 << 20;

/// What the topology owns, for telling its events from others'.
#[derive(Clone, Debug, Default)]
pub struct Interest {
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
pub struct Event {
    pub what: String,
    /// It concerns an object the topology owns or depends on.
    pub ours: bool,
}

/// A netlink socket subscribed to groups, non-blocking.
pub struct Sub {
    pub sock: Socket,
    /// "host" or "namespace NAME".
    pub place: String,
    pub kind: Kind,
    /// The nf_tables transaction being read on this socket (each namespace has its own).
    nft: NftReader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nft,
    Rtnl,
}

fn subscribe(protocol: isize, groups: &[u32], place: String, kind: Kind) -> Result<Sub> {
    let mut sock = Socket::new(protocol).with_context(|| format!("netlink socket ({place})"))?;
    sock.bind_auto()
        .with_context(|| format!("binding a netlink socket ({place})"))?;
    for g in groups {
        sock.add_membership(*g)
            .with_context(|| format!("joining netlink group {g} ({place})"))?;
    }
    let _ = sock.set_rx_buf_sz(SOCK_BUF);
    sock.set_non_blocking(true)?;
    Ok(Sub {
        sock,
        place,
        kind,
        nft: NftReader::default(),
    })
}

/// nf_tables notifications and the host's rtnetlink groups.
pub fn host_subs() -> Result<Vec<Sub>> {
    Ok(vec![
        subscribe(
            NETLINK_NETFILTER,
            &[NFNLGRP_NFTABLES],
            "host".into(),
            Kind::Nft,
        )?,
        subscribe(NETLINK_ROUTE, &RTNL_GROUPS, "host".into(), Kind::Rtnl)?,
    ])
}

/// rtnetlink groups inside each namespace of `names` (those that exist), forwarding
/// (netconf) included; and nf_tables notifications inside those of them in `tables`, which
/// hold an nsfw table of their own (routers): each namespace has its own ruleset, and the
/// host's socket hears nothing of it.
pub fn ns_subs(names: &[String], tables: &BTreeSet<String>) -> Vec<Sub> {
    netns::on_threads(names, &|name| {
        let Some(fd) = netns::open_ns(name)? else {
            return Ok(Vec::new());
        };
        netns::enter(name, &fd)?;
        let place = format!("namespace {name}");
        let mut subs = vec![subscribe(
            NETLINK_ROUTE,
            &RTNL_GROUPS,
            place.clone(),
            Kind::Rtnl,
        )?];
        if tables.contains(name) {
            subs.push(subscribe(
                NETLINK_NETFILTER,
                &[NFNLGRP_NFTABLES],
                place,
                Kind::Nft,
            )?);
        }
        Ok(subs)
    })
    .into_iter()
    .filter_map(|r| r.ok())
    .flatten()
    .collect()
}

impl Sub {
    pub fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Reads what is queued. An overrun (ENOBUFS) lost notifications: that is an event of its
    /// own, which always counts.
    pub fn read(&mut self, buf: &mut [u8], interest: &Interest) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.push(Event {
                        what: format!("notifications were lost ({}); rechecking", self.place),
                        ours: true,
                    });
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => break,
                Err(e) => {
                    out.push(Event {
                        what: format!("cannot read notifications ({}): {e}", self.place),
                        ours: true,
                    });
                    break;
                }
            };
            for m in split(&buf[..n]) {
                match self.kind {
                    Kind::Nft => out.extend(self.nft.take(m, interest, &self.place)),
                    Kind::Rtnl => out.extend(rtnl(m, interest, &self.place)),
                }
            }
        }
        out
    }
}

/// /run/netns watched with inotify: `ip netns del` unmounts and unlinks a namespace at once,
/// while the kernel tears it down (and its veth with it, which rtnetlink reports) up to a
/// second later.
pub struct Dir {
    fd: std::os::fd::OwnedFd,
}

impl Dir {
    /// None when the directory is not there (yet).
    pub fn open() -> Option<Dir> {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 returns a new descriptor we own, or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(netns::RUN_DIR).ok()?;
        let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
        // SAFETY: a live inotify descriptor and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
        (wd >= 0).then_some(Dir { fd })
    }

    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The entries of /run/netns that came or went.
    pub fn read(&self, buf: &mut [u8], interest: &Interest) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            // SAFETY: read(2) into our own buffer of the length given.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut b = &buf[..n as usize];
            // struct inotify_event: wd, mask, cookie, len, then a NUL-padded name.
            while b.len() >= 16 {
                let mask = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                let len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
                let Some(name) = b.get(16..16 + len) else {
                    break;
                };
                let name = text(name);
                let gone = mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0;
                out.push(Event {
                    what: format!(
                        "namespace {name} {} {}",
                        if gone { "removed from" } else { "added to" },
                        netns::RUN_DIR
                    ),
                    ours: interest.namespaces.contains(&name),
                });
                b = &b[16 + len..];
            }
        }
        out
    }
}

/// The messages of one datagram.
fn split(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push(&buf[off..off + len]);
        off += (len + 3) & !3;
    }
    out
}

fn msg_type(m: &[u8]) -> u16 {
    u16::from_ne_bytes([m[4], m[5]])
}

/// (type, payload) of each attribute in `b`.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
}

/// nf_tables notifications come a transaction at a time, closed by NEWGEN with the pid and
/// name of the process that made it: the events wait for it, and those of nsfw's own
/// transactions (this process's) are dropped.
#[derive(Default)]
pub struct NftReader {
    /// The transaction's events so far, with the table each concerns and whether it deletes
    /// that table.
    pending: Vec<(Event, String, bool)>,
}

impl NftReader {
    fn take(&mut self, m: &[u8], interest: &Interest, place: &str) -> Vec<Event> {
        let ty = msg_type(m);
        if ty >> 8 != NFNL_SUBSYS_NFTABLES || m.len() < 20 {
            return Vec::new();
        }
        let family = m[16];
        let a = attrs(&m[20..]);
        let get = |t: u16| a.iter().find(|(k, _)| *k == t).map(|(_, v)| text(v));
        let msg = ty & 0xff;
        if msg == 15 {
            // NEWGEN: NFTA_GEN_PROC_PID (big-endian u32), NFTA_GEN_PROC_NAME.
            let pid = a
                .iter()
                .find(|(k, _)| *k == 2)
                .and_then(|(_, v)| v.get(..4))
                .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            let events = std::mem::take(&mut self.pending);
            if pid == Some(std::process::id()) {
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
            let by = match (get(3), pid) {
                (Some(n), Some(p)) => format!(" (by {n}, pid {p})"),
                (None, Some(p)) => format!(" (by pid {p})"),
                _ => String::new(),
            };
            return events
                .map(|e| Event {
                    what: format!("{}{by}", e.what),
                    ..e
                })
                .collect();
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
        let what = match sub {
            Some(s) => format!("nft {obj} {verb} in {fam} {table} {s}{at}"),
            None => format!("nft {obj} {fam} {table} {verb}{at}"),
        };
        let key = format!("{fam} {table}");
        self.pending
            .push((Event { what, ours }, key, obj == "table" && msg == 2));
        Vec::new()
    }
}

/// NETCONFA_IFINDEX_ALL (-1) with NETCONFA_FORWARDING: `ip_forward` (or IPv6's
/// `all.forwarding`) itself changed.
fn all_forwarding(m: &[u8]) -> bool {
    // nlmsghdr (16), struct netconfmsg padded to 4, then the attributes.
    let a = attrs(m.get(20..).unwrap_or_default());
    let all = a
        .iter()
        .any(|(k, v)| *k == NETCONFA_IFINDEX && v.get(..4) == Some(&(-1i32).to_ne_bytes()[..]));
    all && a.iter().any(|(k, _)| *k == NETCONFA_FORWARDING)
}

/// An rtnetlink notification. Inside a namespace of the topology everything is its own.
fn rtnl(m: &[u8], interest: &Interest, place: &str) -> Vec<Event> {
    let in_ns = place != "host";
    let ty = msg_type(m);
    if ty == RTM_NEWNETCONF || ty == RTM_DELNETCONF {
        // In a namespace only a change of forwarding for all its interfaces (ip_forward,
        // net.ipv6.conf.all.forwarding) is nsfw's setting; the kernel also says
        // NEWNETCONF for every interface it makes, which nsfw's own runs do.
        let ours = !in_ns || all_forwarding(m);
        return vec![Event {
            what: format!("forwarding settings changed ({place})"),
            ours,
        }];
    }
    let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(m) else {
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
    let ev = |what: String, ours: bool| {
        vec![Event {
            what,
            ours: ours || in_ns,
        }]
    };
    match inner {
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
            let gone = ty == 17;
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
            ev(format!("link {name}{at} {verb}"), ours)
        }
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let shown = addr
                .map(|ip| format!("{ip}/{}", a.header.prefix_len))
                .unwrap_or_else(|| "an address".into());
            let verb = if ty == 21 { "removed" } else { "added" };
            ev(
                format!("address {shown}{at} {verb} (ifindex {})", a.header.index),
                interest.indexes.contains(&a.header.index),
            )
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
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
            // Local and broadcast routes follow addresses; the address event says it.
            if r.header.table != 254 && r.header.table != 0 {
                return Vec::new();
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
            let verb = if ty == 25 { "deleted" } else { "changed" };
            ev(format!("route {shown}{at} {verb}"), ours)
        }
        _ => Vec::new(),
    }
}
