//! Addresses in the file: parsing, and the checks that keep the kernel from refusing (or,
//! worse, accepting) an address part-way through an apply.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

/// The shortest prefix a bridge's subnet may have: a larger subnet swallows routes the host
/// needs (a bridge on 8.8.8.1/1 would take half the internet's routes).
pub const MIN_PREFIX: u8 = 8;

/// Parses `a.b.c.d/len` (or `a.b.c.d` when `default_prefix` is given).
pub fn parse_cidr(s: &str, default_prefix: Option<u8>) -> Result<Ipv4Network, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => {
            let p: u8 = p
                .parse()
                .map_err(|_| format!("`{p}` is not a prefix length (0-32)"))?;
            (a, p)
        }
        None => match default_prefix {
            Some(p) => (s, p),
            None => {
                return Err("expected an IPv4 address with its prefix, like 10.10.0.1/24".into());
            }
        },
    };
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
    Ipv4Network::new(ip, prefix).map_err(|_| format!("/{prefix} is not a prefix length (0-32)"))
}

/// An address an interface can hold: unicast, not loopback, not in a reserved range.
pub fn check_unicast(ip: Ipv4Addr) -> Result<(), String> {
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

/// Rejects what cannot be a host's address in its subnet: not unicast, the network or
/// broadcast address of a subnet that has them, a /32.
pub fn check_host_address(net: &Ipv4Network) -> Result<(), String> {
    check_unicast(net.ip())?;
    if net.prefix() > 30 {
        if net.prefix() == 32 {
            return Err("a /32 leaves no room for a subnet".into());
        }
        return Ok(()); // a /31 point-to-point link has no network or broadcast address
    }
    if net.ip() == net.network() {
        return Err(format!(
            "{} is the network address of {}",
            net.ip(),
            subnet_of(net)
        ));
    }
    if net.ip() == net.broadcast() {
        return Err(format!(
            "{} is the broadcast address of {}",
            net.ip(),
            subnet_of(net)
        ));
    }
    Ok(())
}

/// A bridge's gateway address: a host address whose subnet is not absurdly large.
pub fn check_gateway(net: &Ipv4Network) -> Result<(), String> {
    check_host_address(net)?;
    if net.prefix() < MIN_PREFIX {
        return Err(format!(
            "/{} is too large a subnet for a bridge (at most /{MIN_PREFIX}): it would take over routes the host needs",
            net.prefix()
        ));
    }
    Ok(())
}

/// The subnet an address with its prefix lies in, e.g. 10.10.0.0/24 for 10.10.0.1/24.
pub fn subnet_of(net: &Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net)
}

/// Whether two subnets share any address.
pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
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
            let n = parse_cidr(bad, None).expect("parses");
            assert!(check_gateway(&n).is_err(), "{bad} accepted");
        }
        assert!(check_gateway(&parse_cidr("10.0.0.1/24", None).expect("parses")).is_ok());
    }
}
