//! How what a container owns is found from the kernel alone: the marks nsfw puts on the
//! network's bridge and table, on each container's host veth, and on each set or map element
//! it adds for the container. No state file names any of it.
//!
//! | object | mark |
//! |---|---|
//! | table `inet nsfw_cni_<network>` | comment `nsfw-cni:<network>` |
//! | the bridge | alias `nsfw-cni:<network>` |
//! | a container's host veth | alias `nsfw-cni:<network>:<containerID>:<ifname>` |
//! | its elements (address, ports) | comment `<containerID>:<ifname>` |
//!
//! Container IDs, network names and interface names never hold a `:` (the spec's and the
//! kernel's rules), so the fields split back unambiguously. The `nsfw-cni:` prefix is not
//! `nsfw:`: topologies' apply and flush (even `--all`) never take these for their own.

use crate::topology::{Mac, fnv64};

pub const PREFIX: &str = "nsfw-cni:";

/// The network's table.
pub fn table(network: &str) -> String {
    format!("nsfw_cni_{network}")
}

/// The mark of the network's table and bridge.
pub fn network_mark(network: &str) -> String {
    format!("{PREFIX}{network}")
}

/// The alias of a container's host veth.
pub fn veth_alias(network: &str, container: &str, ifname: &str) -> String {
    format!("{PREFIX}{network}:{container}:{ifname}")
}

/// The comment on a container's elements.
pub fn owner(container: &str, ifname: &str) -> String {
    format!("{container}:{ifname}")
}

/// (container, ifname) of an element comment.
pub fn parse_owner(comment: &str) -> Option<(&str, &str)> {
    comment.split_once(':')
}

/// (container, ifname) of a host veth of `network`, from its alias.
pub fn parse_veth_alias<'a>(network: &str, alias: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = alias.strip_prefix(PREFIX)?.strip_prefix(network)?;
    parse_owner(rest.strip_prefix(':')?)
}

/// The host end's name: `nc` and 13 hex digits of a stable hash of the attachment (52 bits: a
/// clash needs tens of millions of containers on one host). DEL and CHECK look it up by
/// name first and fall back to the aliases, so the name is a shortcut, never the identity.
pub fn host_veth(network: &str, container: &str, ifname: &str) -> String {
    let h = fnv64(&["nsfw-cni", network, container, ifname]);
    format!("nc{:013x}", h >> 12)
}

/// A stable, locally administered MAC for `kind` ("bridge", "host", "peer") of an attachment.
pub fn mac(network: &str, container: &str, ifname: &str, kind: &str) -> Mac {
    let h = fnv64(&["nsfw-cni-mac", network, container, ifname, kind]).to_be_bytes();
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_split_back() {
        let a = veth_alias("lab.net", "abc-1", "eth0");
        assert_eq!(parse_veth_alias("lab.net", &a), Some(("abc-1", "eth0")));
        assert_eq!(parse_veth_alias("lab", &a), None, "another network's");
        assert_eq!(parse_owner(&owner("c1", "net1")), Some(("c1", "net1")));
        let v = host_veth("lab", "c1", "eth0");
        assert!(v.len() <= 15 && v.starts_with("nc"), "{v}");
        assert_ne!(v, host_veth("lab", "c2", "eth0"));
    }
}
