//! Addresses in the file, both families: parsing, and the checks that keep the kernel from
//! refusing (or, worse, accepting) an address part-way through an apply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

/// One address family as the file spells it: the key, and what its addresses look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Family {
    /// `address` or `address6`.
    pub key: &'static str,
    pub v6: bool,
}

pub(super) const V4: Family = Family {
    key: "address",
    v6: false,
};
pub(super) const V6: Family = Family {
    key: "address6",
    v6: true,
};

impl Family {
    fn bits(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    fn example(self) -> &'static str {
        if self.v6 {
            "fd00:10::1/64"
        } else {
            "10.10.0.1/24"
        }
    }

    fn name(self) -> &'static str {
        if self.v6 { "IPv6" } else { "IPv4" }
    }

    /// The shortest prefix a bridge's subnet may have: a larger subnet swallows routes the
    /// host needs (a bridge on 8.8.8.1/1 would take half the internet's routes).
    fn min_prefix(self) -> u8 {
        if self.v6 { 32 } else { 8 }
    }
}

/// Parses `ADDR/LEN` (or `ADDR` when `default_prefix` is given) of family `f`.
pub(super) fn parse_cidr(
    s: &str,
    default_prefix: Option<u8>,
    f: Family,
) -> Result<IpNetwork, String> {
    let bits = f.bits();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            let p: u8 = p
                .parse()
                .map_err(|_| format!("`{p}` is not a prefix length (0-{bits})"))?;
            (a, p)
        }
        None => match default_prefix {
            Some(p) => (s, p),
            None => {
                return Err(format!(
                    "expected an {} address with its prefix, like {}",
                    f.name(),
                    f.example()
                ));
            }
        },
    };
    let ip: IpAddr = match addr.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv6() == f.v6 => ip,
        _ => return Err(format!("`{addr}` is not an {} address", f.name())),
    };
    IpNetwork::new(ip, prefix).map_err(|_| format!("/{prefix} is not a prefix length (0-{bits})"))
}

/// An address an interface can hold: unicast, not loopback, not in a reserved range.
pub(super) fn check_unicast(ip: IpAddr) -> Result<(), String> {
    match ip {
        IpAddr::V4(ip) => check_unicast4(ip),
        IpAddr::V6(ip) => check_unicast6(ip),
    }
}

fn check_unicast4(ip: Ipv4Addr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Err("0.0.0.0 is the unspecified address, not an interface's".into());
    }
    if ip.is_multicast() {
        return Err(format!(
            "{ip} is a multicast address (224.0.0.0/4), not an interface's"
        ));
    }
    if ip.is_broadcast() {
        return Err("255.255.255.255 is the broadcast address, not an interface's".into());
    }
    if ip.is_loopback() {
        return Err(format!(
            "{ip} is a loopback address (127.0.0.0/8): it belongs to `lo`"
        ));
    }
    if ip.octets()[0] >= 240 {
        return Err(format!("{ip} is in the reserved range 240.0.0.0/4"));
    }
    if ip.octets()[0] == 0 {
        return Err(format!("{ip} is in 0.0.0.0/8 (\"this network\")"));
    }
    Ok(())
}

fn check_unicast6(ip: Ipv6Addr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Err(":: is the unspecified address, not an interface's".into());
    }
    if ip.is_loopback() {
        return Err("::1 is the loopback address: it belongs to `lo`".into());
    }
    if ip.is_multicast() {
        return Err(format!(
            "{ip} is a multicast address (ff00::/8), not an interface's"
        ));
    }
    if ip.segments()[0] & 0xffc0 == 0xfe80 {
        return Err(format!(
            "{ip} is link-local (fe80::/10): the kernel makes those; give a global or unique-local (fd00::/8) address"
        ));
    }
    if ip.to_ipv4_mapped().is_some() {
        return Err(format!("{ip} is an IPv4-mapped address"));
    }
    Ok(())
}

/// Rejects what cannot be a host's address in its subnet: not unicast, the network (or IPv6
/// subnet-router anycast) or broadcast address of a subnet that has them, a single address.
pub(super) fn check_host_address(net: &IpNetwork) -> Result<(), String> {
    check_unicast(net.ip())?;
    let bits = if net.is_ipv6() { 128 } else { 32 };
    if net.prefix() == bits {
        return Err(format!("a /{bits} leaves no room for a subnet"));
    }
    if net.prefix() + 1 == bits {
        return Ok(()); // a point-to-point link: no network or broadcast address
    }
    if net.ip() == net.network() {
        let what = if net.is_ipv6() {
            "the subnet-router anycast address"
        } else {
            "the network address"
        };
        return Err(format!("{} is {what} of {}", net.ip(), subnet_of(net)));
    }
    if let IpNetwork::V4(n) = net
        && n.ip() == n.broadcast()
    {
        return Err(format!(
            "{} is the broadcast address of {}",
            n.ip(),
            subnet_of(net)
        ));
    }
    Ok(())
}

/// A bridge's gateway address: a host address whose subnet is not absurdly large.
pub(super) fn check_gateway(net: &IpNetwork) -> Result<(), String> {
    check_host_address(net)?;
    let f = if net.is_ipv6() { V6 } else { V4 };
    if net.prefix() < f.min_prefix() {
        return Err(format!(
            "/{} is too large a subnet for a bridge (at most /{}): it would take over routes the host needs",
            net.prefix(),
            f.min_prefix()
        ));
    }
    Ok(())
}

/// The subnet an address with its prefix lies in, e.g. 10.10.0.0/24 for 10.10.0.1/24.
pub(crate) fn subnet_of(net: &IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(*net)
}

/// The IPv4 subnet an address with its prefix lies in.
pub(crate) fn subnet_of4(net: &Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net)
}

/// Whether two subnets share any address.
pub(crate) fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.is_ipv6() == b.is_ipv6() && (a.contains(b.network()) || b.contains(a.network()))
}

/// The lowest host address of `subnet` not in `used`. Scans at most a million addresses: no
/// file names more namespaces than that.
pub(super) fn next_free(subnet: IpNetwork, used: &dyn Fn(IpAddr) -> bool) -> Option<IpNetwork> {
    let start: u128 = match subnet.network() {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    for k in 1..1_000_000u128 {
        let ip = match subnet {
            IpNetwork::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(start + k).ok()?)),
            IpNetwork::V6(_) => IpAddr::V6(Ipv6Addr::from(start.checked_add(k)?)),
        };
        if !subnet.contains(ip) {
            return None;
        }
        let n = IpNetwork::new(ip, subnet.prefix()).ok()?;
        if check_host_address(&n).is_ok() && !used(ip) {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_addresses_are_refused() {
        for bad in [
            "224.0.0.1/24",
            "0.0.0.0/24",
            "127.0.0.1/8",
            "240.0.0.1/24",
            "10.0.0.1/1",
            "10.0.0.1/0",
        ] {
            let n = parse_cidr(bad, None, V4).expect("parses");
            assert!(check_gateway(&n).is_err(), "{bad} accepted");
        }
        for bad in [
            "ff02::1/64",
            "::/64",
            "::1/64",
            "fe80::1/64",
            "fd00::/64",
            "fd00::1/16",
            "fd00::1/128",
        ] {
            let n = parse_cidr(bad, None, V6).expect("parses");
            assert!(check_gateway(&n).is_err(), "{bad} accepted");
        }
        assert!(check_gateway(&parse_cidr("10.0.0.1/24", None, V4).expect("parses")).is_ok());
        assert!(check_gateway(&parse_cidr("fd00:10::1/64", None, V6).expect("parses")).is_ok());
        assert!(parse_cidr("fd00::1/64", None, V4).is_err());
        assert!(parse_cidr("10.0.0.1/24", None, V6).is_err());
    }

    #[test]
    fn next_free_skips_used_and_reserved() {
        let s = parse_cidr("fd00::/126", None, V6).expect("parses");
        let taken: Vec<IpAddr> = vec!["fd00::1".parse().expect("ip")];
        let n = next_free(s, &|ip| taken.contains(&ip)).expect("free");
        assert_eq!(n.to_string(), "fd00::2/126");
        let s = parse_cidr("10.0.0.0/30", None, V4).expect("parses");
        assert_eq!(
            next_free(s, &|_| false).expect("free").to_string(),
            "10.0.0.1/30"
        );
        assert!(next_free(s, &|_| true).is_none());
    }
}
