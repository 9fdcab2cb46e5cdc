//! Names and link-layer addresses: what the kernel accepts as an interface or namespace name,
//! and the stable names and MACs nsfw derives when the file leaves them out.

use super::Mac;

/// Linux interface names hold at most 15 bytes (IFNAMSIZ less the NUL).
pub(crate) const MAX_IFNAME: usize = 15;

/// Interface names the kernel accepts but that nsfw cannot use: `all` and `default` are the
/// directories of /proc/sys/net/ipv{4,6}/conf that hold the global settings (a link called
/// `all` makes the kernel's sysctl registration fail part-way), `lo` is every namespace's
/// loopback, and `bonding_masters` is a file in /sys/class/net.
const RESERVED: [&str; 4] = ["all", "default", "lo", "bonding_masters"];

pub(crate) fn parse_mac(s: &str) -> Result<Mac, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || "not a MAC address (expected six hex bytes like 02:00:00:00:00:01)".to_string();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if b[0] & 1 == 1 {
        return Err("a multicast MAC cannot be an interface's address (the first byte must be even; 02:... is locally administered)".into());
    }
    if b == [0; 6] {
        return Err("the all-zero MAC is not a usable address".into());
    }
    Ok(Mac(b))
}

/// Checks a Linux interface name: 1-15 bytes, no `/`, `:`, `%` or white space, not `.`, `..`
/// or a reserved name.
pub(crate) fn check_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if s.len() > MAX_IFNAME {
        return Err(format!(
            "interface names hold at most {MAX_IFNAME} bytes; this one has {}",
            s.len()
        ));
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` are not interface names".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface names cannot contain {c:?} (no `/`, `:` or white space)"
        ));
    }
    if s.contains('%') {
        return Err(
            "interface names cannot contain `%`: the kernel takes such a name as a template (br%d) and makes a new link br0, br1, ... on every try"
                .into(),
        );
    }
    if RESERVED.contains(&s) {
        return Err(format!(
            "`{s}` is reserved (all, default: the kernel's per-interface settings; lo: the loopback; bonding_masters: a file in /sys/class/net)"
        ));
    }
    Ok(())
}

/// Checks a namespace name: it becomes a file name under /run/netns and /etc/netns.
pub(super) fn check_ns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a namespace name cannot be empty".into());
    }
    if s == "." || s == ".." {
        return Err("`.` and `..` cannot name a namespace (it is a file in /run/netns)".into());
    }
    if s.contains('/') || s.contains('\0') {
        return Err("a namespace name is a file name in /run/netns: no `/`".into());
    }
    if s.len() > 255 {
        return Err("a namespace name is a file name: at most 255 bytes".into());
    }
    if s.starts_with('.') {
        return Err(
            "a namespace name cannot start with `.` (nsfw keeps its temporary files under such names)"
                .into(),
        );
    }
    Ok(())
}

pub(crate) fn check_topology_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 16
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("must be 1-16 characters of [a-z0-9_]".into())
    }
}

/// The default host-side name of a namespace's veth: `veth-<ns>`, or when that is longer than
/// 15 bytes, `veth-` + the name's first 4 bytes + 6 hex digits of a hash of the whole name
/// (and `salt`, which the validator raises when two names still meet), so long names that share
/// a prefix still get different interfaces.
pub(super) fn host_ifname_salted(ns: &str, salt: u32) -> String {
    let plain = format!("veth-{ns}");
    if salt == 0 && plain.len() <= MAX_IFNAME && check_ifname(&plain).is_ok() {
        return plain;
    }
    let mut prefix = String::new();
    for c in ns.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            if prefix.len() + c.len_utf8() > 4 {
                break;
            }
            prefix.push(c);
        }
    }
    // FNV-1a, folded to 24 bits: stable across versions and platforms.
    let h = fnv64(&[ns, &salt.to_string()]);
    let h24 = ((h >> 40) ^ (h >> 16) ^ h) & 0xff_ffff;
    format!("veth-{prefix}{h24:06x}")
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike std's hasher.
pub(crate) fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A locally administered unicast MAC (02:...) derived from the names, so it is the same on
/// every apply and survives the link's recreation.
pub(crate) fn derived_mac(topology: &str, kind: &str, name: &str) -> Mac {
    let h = fnv64(&["nsfw", topology, kind, name]).to_be_bytes();
    Mac([0x02, h[0], h[1], h[2], h[3], h[4]])
}

/// MACs the file gives that are universally administered (the first byte's 0x02 bit clear):
/// a vendor's, which a real NIC on a LAN the segment reaches may carry too. Locally
/// administered ones (`02:…`, as nsfw derives) cannot clash with one. A warning: copying a
/// real NIC's MAC (a licence bound to it) is a choice the user may mean.
pub(super) fn mac_lint(
    file: &str,
    bridges: &[super::Bridge],
    namespaces: &[super::Namespace],
) -> Vec<String> {
    let mut given: Vec<(String, Mac)> = bridges
        .iter()
        .map(|b| (format!("bridges.{}.mac", b.name), b.mac))
        .collect();
    for i in namespaces.iter().flat_map(|n| &n.ifaces) {
        given.push((format!("{}.mac", i.key), i.mac));
        given.extend(i.host_mac.map(|m| (format!("{}.host_mac", i.key), m)));
    }
    given
        .into_iter()
        .filter(|(_, m)| m.0[0] & 0x02 == 0)
        .map(|(key, m)| {
            format!(
                "{file}: {key} = \"{m}\": a universally administered MAC (a vendor's range): a real NIC on a LAN this segment reaches may have it too; a locally administered one (02:… as nsfw derives) cannot clash"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_shorten_distinctly() {
        let a = host_ifname_salted("averyveryverylongname1", 0);
        let b = host_ifname_salted("averyveryverylongname2", 0);
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }

    #[test]
    fn templates_and_reserved_names_are_refused() {
        assert!(check_ifname("br%d").unwrap_err().contains("template"));
        for r in ["all", "default", "lo"] {
            assert!(check_ifname(r).unwrap_err().contains("reserved"), "{r}");
        }
        assert!(check_ifname("br0").is_ok());
    }
}
