//! Forgetting the conntrack entries of a published port that moved or went away, as Docker
//! and kube-proxy do. A UDP "connection" has no end: a client that keeps sending from one
//! source port keeps its conntrack entry alive, and with it the old translation — to the
//! namespace the port no longer leads to, or after the publish is gone. So after the nft
//! batch commits, the entries whose original destination is such a port and whose reply
//! comes from the old namespace address and port are deleted over ctnetlink; the next
//! datagram is a new connection and meets the new maps. The same holds the other way, as
//! kube-proxy knows: a client already sending to a host port that becomes published keeps
//! its untranslated entry and reaches the host, never the namespace; those entries (to one of
//! the host's addresses, not translated) are deleted too.
//!
//! UDP only: a TCP connection ends, and its successors meet the new maps; cutting the ones in
//! flight would break every transfer at each port change (Docker and kube-proxy leave TCP
//! alone for the same reason, and nsfw's policy judges new connections only, documented so).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};

use super::clash::Entry;
use crate::netlink::{Request, attrs, find};
use nft::socket::NftSocket;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// The connection's status bits (CTA_STATUS, a big-endian u32).
const CTA_STATUS: u16 = 3;
/// Status bit: the connection's destination was translated (a DNAT).
const IPS_DST_NAT: u32 = 1 << 5;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const UDP: u8 = 17;

/// The conntrack entries a change of the publish maps makes stale, by the map entries that
/// make them so (UDP ones only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Forget {
    /// Published ports that moved or went: their translated flows to where they led.
    pub moved: Vec<Entry>,
    /// Ports newly published: flows to the host on them from before the publish, which no
    /// map translated (each packet of a flow follows its entry, so such a client would go on
    /// reaching the host, not the namespace).
    pub taken: Vec<Entry>,
}

impl Forget {
    /// Of the map entries a change takes away (`gone`) and adds (`added`), those whose
    /// conntrack entries outlive it.
    pub(crate) fn of(gone: Vec<Entry>, added: Vec<Entry>) -> Forget {
        let udp = |v: Vec<Entry>| -> Vec<Entry> {
            v.into_iter()
                .filter(|e| e.proto == UDP && e.to.is_some())
                .collect()
        };
        Forget {
            moved: udp(gone),
            taken: udp(added),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.taken.is_empty()
    }
}

/// A tuple's (source, destination) addresses.
fn addresses(buf: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let ip = find(buf, CTA_TUPLE_IP)?;
    let addr = |b: &[u8]| -> Option<IpAddr> {
        match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
            16 => <[u8; 16]>::try_from(b)
                .ok()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
            _ => None,
        }
    };
    // CTA_IP_V4_SRC/DST are 1/2, CTA_IP_V6_SRC/DST 3/4.
    let src = find(ip, 1).or_else(|| find(ip, 3)).and_then(addr)?;
    let dst = find(ip, 2).or_else(|| find(ip, 4)).and_then(addr)?;
    Some((src, dst))
}

/// A tuple's (source, destination, protocol, source port, destination port).
fn tuple(buf: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let (src, dst) = addresses(buf)?;
    let p = find(buf, CTA_TUPLE_PROTO)?;
    let num = *find(p, CTA_PROTO_NUM)?.first()?;
    let port = |t| {
        find(p, t)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)
    };
    Some((
        src,
        dst,
        num,
        port(CTA_PROTO_SRC_PORT)?,
        port(CTA_PROTO_DST_PORT)?,
    ))
}

/// A ctnetlink message: `nlmsghdr`, `nfgenmsg` for `family` (version 0, resource id 0),
/// then `attrs` (whole attributes).
fn message(ty: u16, flags: u16, seq: u32, family: u8, attrs: &[&[u8]]) -> Vec<u8> {
    let mut m =
        Request::new((NFNL_SUBSYS_CTNETLINK << 8) | ty, flags, seq).push(&[family, 0, 0, 0]);
    for a in attrs {
        m = m.push(a);
    }
    m.finish()
}

/// A conntrack entry's zone, original source and original destination.
pub(crate) type CtEntry = (u16, IpAddr, IpAddr);

/// Every conntrack entry of the host's namespace, both families: its zone and its original
/// source and destination (what `nsfw status --format openmetrics` counts per topology).
pub(crate) fn entries(sock: &mut NftSocket) -> Result<Vec<CtEntry>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let seq = sock.next_seq();
        let req = message(IPCTNL_MSG_CT_GET, libc::NLM_F_DUMP as u16, seq, family, &[]);
        for e in sock.dump_raw(&req, seq, "the conntrack table (ctnetlink)")? {
            let Some(body) = e.get(4..) else { continue };
            let Some((src, dst)) = find(body, CTA_TUPLE_ORIG).and_then(addresses) else {
                continue;
            };
            let zone = find(body, CTA_ZONE)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map_or(0, u16::from_be_bytes);
            out.push((zone, src, dst));
        }
    }
    Ok(out)
}

/// Deletes the conntrack entries `f` makes stale (see the module's comment). Moved: original
/// destination the host port (and its address, for a restricted publish), reply from the
/// namespace address and port it led to, translated. Taken: original destination the host
/// port at one of the host's addresses (`locals`, loopback included; the given address for a
/// restricted publish), not translated. Returns how many were deleted.
pub(crate) fn forget(sock: &mut NftSocket, f: &Forget, locals: &[IpAddr]) -> Result<usize> {
    let mut deleted = 0;
    for (v6, family) in [(false, libc::AF_INET as u8), (true, libc::AF_INET6 as u8)] {
        let these: Vec<&Entry> = f.moved.iter().filter(|e| e.v6 == v6).collect();
        // Ports newly taken, by (protocol, port): ten thousand of them are looked up per
        // conntrack entry.
        let mut taken: rustc_hash::FxHashMap<(u8, u16), Vec<Option<IpAddr>>> = Default::default();
        for e in f.taken.iter().filter(|e| e.v6 == v6) {
            taken.entry((e.proto, e.port)).or_default().push(e.addr);
        }
        if these.is_empty() && taken.is_empty() {
            continue;
        }
        let local = |a: IpAddr| a.is_loopback() || locals.contains(&a);
        let seq = sock.next_seq();
        let req = message(IPCTNL_MSG_CT_GET, libc::NLM_F_DUMP as u16, seq, family, &[]);
        let entries = sock.dump_raw(&req, seq, "the conntrack table (ctnetlink)")?;
        let (mut batch, mut seqs) = (Vec::new(), Vec::new());
        for e in &entries {
            let Some(body) = e.get(4..) else { continue };
            let (Some(orig), Some(reply)) = (
                attrs(body).find(|a| a.ty == CTA_TUPLE_ORIG),
                find(body, CTA_TUPLE_REPLY),
            ) else {
                continue;
            };
            let (Some((_, dst, proto, _, dport)), Some((rsrc, _, _, rsport, _))) =
                (tuple(orig.value), tuple(reply))
            else {
                continue;
            };
            let moved = these.iter().any(|s| {
                s.proto == proto
                    && s.port == dport
                    && s.addr.is_none_or(|a| a == dst)
                    && s.to == Some((rsrc, rsport))
            });
            let taken = taken
                .get(&(proto, dport))
                .is_some_and(|addrs| addrs.iter().any(|a| a.map_or(local(dst), |a| a == dst)));
            // A moved port's flows are translated ones: a flow straight to the namespace's
            // own address and port never went through the published port (IPS_DST_NAT,
            // bit 5). A taken port's are not: they reached the host before the map did.
            let translated = find(body, CTA_STATUS)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .is_some_and(|b| u32::from_be_bytes(b) & IPS_DST_NAT != 0);
            if !(moved && translated || taken && !translated) {
                continue;
            }
            // The entry by its original tuple, in its zone (the whole attributes as dumped).
            let mut with: Vec<&[u8]> = vec![orig.whole];
            if let Some(z) = attrs(body).find(|a| a.ty == CTA_ZONE) {
                with.push(z.whole);
            }
            let s = sock.next_seq();
            batch.extend(message(
                IPCTNL_MSG_CT_DELETE,
                libc::NLM_F_ACK as u16,
                s,
                family,
                &with,
            ));
            seqs.push(s);
        }
        if seqs.is_empty() {
            continue;
        }
        for (_, code) in sock.send_acked(&batch, &seqs, "conntrack deletions (ctnetlink)")? {
            match code {
                0 => deleted += 1,
                // Gone meanwhile (expired, or a reply made it anew): nothing to forget.
                libc::ENOENT => {}
                c => bail!(
                    "deleting a conntrack entry: {}",
                    std::io::Error::from_raw_os_error(c)
                ),
            }
        }
    }
    Ok(deleted)
}
