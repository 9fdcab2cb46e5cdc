//! Forwarding of a whole namespace (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)
//! asked over rtnetlink (RTM_GETNETCONF for NETCONFA_IFINDEX_ALL) rather than read under
//! /proc/sys: every namespace's sysctl files share the same names in one dentry hash, so
//! opening one walks a chain as long as the number of namespaces, and with 1,000 namespaces
//! those lookups were a third of a no-op apply's CPU (perf: `proc_sys_compare`).

use anyhow::Result;

use super::rtnl::Conn;
use crate::netlink::{self, Request};

const RTM_GETNETCONF: u16 = 82;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
const NETCONFA_IFINDEX_ALL: i32 = -1;

/// The sysctls this module answers, with their address family.
fn family(key: &str) -> Option<u8> {
    match key {
        "net.ipv4.ip_forward" | "net.ipv4.conf.all.forwarding" => Some(libc::AF_INET as u8),
        "net.ipv6.conf.all.forwarding" => Some(libc::AF_INET6 as u8),
        _ => None,
    }
}

/// The value of `key` in the namespace `c` is bound to, when it is one this module answers:
/// `Some(Ok(None))` when the family is not there (IPv6 disabled at boot).
pub(crate) fn read(c: &mut Conn, key: &str) -> Option<Result<Option<String>>> {
    let fam = family(key)?;
    let build = |seq| {
        // struct netconfmsg (the family, padded), then the index: "all".
        let mut idx = vec![0u8; 8];
        idx[..2].copy_from_slice(&8u16.to_ne_bytes());
        idx[2..4].copy_from_slice(&NETCONFA_IFINDEX.to_ne_bytes());
        idx[4..].copy_from_slice(&NETCONFA_IFINDEX_ALL.to_ne_bytes());
        Request::new(RTM_GETNETCONF, 0, seq)
            .push(&[fam, 0, 0, 0])
            .push(&idx)
            .finish()
    };
    let answer = c.get_raw(build, key, &[libc::EAFNOSUPPORT, libc::EOPNOTSUPP]);
    Some(answer.map(|p| {
        let p = p?;
        let v = netlink::find(p.get(4..)?, NETCONFA_FORWARDING).and_then(netlink::u32_of)?;
        Some(v.to_string())
    }))
}
