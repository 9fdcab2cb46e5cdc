//! The host's links as `nsfw watch` keeps them between its checks, from the host's rtnetlink
//! notifications, so that apply and diff need not dump them (at N veth pairs a dump costs
//! O(N²) in the kernel): watch's memory serves them (`memory`).

use std::collections::BTreeMap;

use super::Link;

/// The host's links as watch keeps them: seeded by a dump, then kept from the RTM_NEWLINK and
/// RTM_DELLINK notifications the host's socket hears (each carries the whole link, as a dump
/// would show it; applied in order after the dump, the last one of a link is its state),
/// RTM_NEWNETCONF (a link's forwarding changed: read again) and RTM_NEWQDISC/RTM_DELQDISC (a
/// link's root qdisc, which its link message names, changed without one: read again).
#[derive(Clone, Debug, Default)]
pub(crate) struct HostTable {
    links: BTreeMap<u32, Link>,
}

/// What a message heard did to the host's links.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    Fine,
    /// Link INDEX is to be read again.
    Again(u32),
    /// A link message that cannot be read: the table is not to be trusted.
    Broken,
}

/// A change of forwarding (its own link message says nothing): that link is read again; a
/// change for all of them (`ip_forward`, `default`), the table is not to be trusted.
fn netconf(msg: &[u8]) -> Heard {
    // nlmsghdr, struct netconfmsg (the family, padded to 4), then attributes.
    let mut off = 20;
    while let Some(h) = msg.get(off..off + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]);
        if len < 4 {
            break;
        }
        if ty == NETCONFA_IFINDEX
            && let Some(v) = msg.get(off + 4..off + 8)
        {
            let i = i32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
            return u32::try_from(i).map_or(Heard::Broken, Heard::Again);
        }
        off += (len + 3) & !3;
    }
    Heard::Broken
}

/// The link's index in a link or qdisc message: after the nlmsghdr, struct ifinfomsg and
/// struct tcmsg alike begin with the family and padding (4 bytes), then the index.
fn index_of(msg: &[u8]) -> Option<u32> {
    msg.get(20..24)
        .map(|i| u32::from_ne_bytes([i[0], i[1], i[2], i[3]]))
}

const RTM_NEWNETCONF: u16 = 80;
const RTM_DELNETCONF: u16 = 81;
const NETCONFA_IFINDEX: u16 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;

impl HostTable {
    pub(crate) fn seeded(links: &[Link]) -> HostTable {
        HostTable {
            links: links.iter().map(|l| (l.index, l.clone())).collect(),
        }
    }

    /// One message heard on the host's rtnetlink socket (`nlmsghdr` included): a link's own
    /// (family AF_UNSPEC) RTM_NEWLINK carries it whole, its RTM_DELLINK takes it away. The
    /// bridge's (AF_BRIDGE) carry a port's bridge attributes alone (`bridge link set` says
    /// nothing else), and its RTM_DELLINK says a port left, not that the link went: that
    /// link is to be read again.
    pub(crate) fn heard(&mut self, msg: &[u8]) -> Heard {
        let Some(ty) = msg.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]])) else {
            return Heard::Broken;
        };
        if ty == RTM_NEWNETCONF || ty == RTM_DELNETCONF {
            return netconf(msg);
        }
        if ty == RTM_NEWQDISC || ty == RTM_DELQDISC {
            return index_of(msg).map_or(Heard::Broken, Heard::Again);
        }
        if ty != RTM_NEWLINK && ty != RTM_DELLINK {
            return Heard::Fine;
        }
        let (Some(family), Some(index)) = (msg.get(16), index_of(msg)) else {
            return Heard::Broken;
        };
        if *family != 0 {
            return Heard::Again(index);
        }
        if ty == RTM_DELLINK {
            self.links.remove(&index);
            return Heard::Fine;
        }
        match super::linkmsg::parse(msg) {
            Some(l) => {
                self.links.insert(l.index, l);
                Heard::Fine
            }
            None => Heard::Broken,
        }
    }

    /// Link `index` as read again now (None: it is gone).
    pub(crate) fn put(&mut self, index: u32, l: Option<Link>) {
        match l {
            Some(l) => self.links.insert(index, l),
            None => self.links.remove(&index),
        };
    }

    /// The links, by index.
    pub(crate) fn by_index(&self) -> &BTreeMap<u32, Link> {
        &self.links
    }

    /// The links, by index.
    pub(crate) fn links(&self) -> Vec<Link> {
        self.links.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A qdisc's notification (a tbf put on a host end says nothing else) has its link read
    /// again; one cut short leaves the table untrusted.
    #[test]
    fn a_qdisc_changed_has_its_link_read_again() {
        let mut t = HostTable::default();
        for ty in [RTM_NEWQDISC, RTM_DELQDISC] {
            let mut m = vec![0u8; 36];
            m[4..6].copy_from_slice(&ty.to_ne_bytes());
            m[20..24].copy_from_slice(&7u32.to_ne_bytes());
            assert_eq!(t.heard(&m), Heard::Again(7));
            assert_eq!(t.heard(&m[..22]), Heard::Broken, "cut short");
        }
    }
}
