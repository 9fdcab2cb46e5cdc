//! The names nsfw gives a container's host veth and the MACs of an attachment: stable hashes
//! of the attachment, so that DEL and CHECK find them again. The marks that say whose they
//! are (and the network's table and bridge) are `crate::owner`'s.

use crate::topology::{Mac, fnv64};

/// The host end's name: `nc` and 13 hex digits of a stable hash of the attachment (52 bits: a
/// clash needs tens of millions of containers on one host). DEL and CHECK look it up by
/// name first and fall back to the aliases, so the name is a shortcut, never the identity.
pub(crate) fn host_veth(network: &str, container: &str, ifname: &str) -> String {
    let h = fnv64(&["nsfw-cni", network, container, ifname]);
    format!("nc{:013x}", h >> 12)
}

/// A stable, locally administered MAC for `kind` ("bridge", "host", "peer") of an attachment.
pub(crate) fn mac(network: &str, container: &str, ifname: &str, kind: &str) -> Mac {
    let h = fnv64(&["nsfw-cni-mac", network, container, ifname, kind]).to_be_bytes();
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_short_and_distinct() {
        let v = host_veth("lab", "c1", "eth0");
        assert!(v.len() <= 15 && v.starts_with("nc"), "{v}");
        assert_ne!(v, host_veth("lab", "c2", "eth0"));
    }
}
