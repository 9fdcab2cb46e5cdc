//! The kernel's rule for a link with IPv6 switched off (`net.ipv6.conf.DEV.disable_ipv6`
//! = 1), in the in-memory kernel: switching it off takes the link's IPv6 addresses with it,
//! and its IPv6 routes, and none is taken until it is on again (EACCES, "IPv6 is disabled on
//! this device").

use anyhow::{Result, bail};
use ipnetwork::IpNetwork;

use crate::plumbing::NodeObs;

/// The link `key` switches IPv6 off or on for, if it is one's `disable_ipv6`.
fn link_of(key: &str) -> Option<String> {
    let dev = key
        .strip_prefix("net.ipv6.conf.")?
        .strip_suffix(".disable_ipv6")?;
    Some(dev.replace('/', "."))
}

/// Sysctl `key` of `node` set to `new`, as the kernel writes it: a link's IPv6 switched off
/// loses its IPv6 addresses and every IPv6 route through it (`addrconf_ifdown`).
pub(in crate::engine) fn set(node: &mut NodeObs, key: &str, new: &str) {
    node.sysctls.insert(key.to_string(), Some(new.to_string()));
    let Some(index) = link_of(key).and_then(|dev| node.link(&dev).map(|l| l.index)) else {
        return;
    };
    if new == "1" {
        node.addrs.retain(|a| a.index != index || a.net.is_ipv4());
        node.routes
            .retain(|r| r.oif != Some(index) || r.dst.is_ipv4());
    }
}

/// The kernel's refusal of IPv6 address `net` on `ifname` with IPv6 switched off.
pub(super) fn refuse(node: &NodeObs, ifname: &str, net: IpNetwork) -> Result<()> {
    let key = crate::plumbing::sysctl::key_for("net.ipv6.conf", ifname, "disable_ipv6");
    let off = node.sysctls.get(&key).cloned().flatten().as_deref() == Some("1");
    if net.is_ipv6() && off {
        bail!("{ifname}: address {net}: Permission denied (IPv6 is disabled on this device)");
    }
    Ok(())
}
