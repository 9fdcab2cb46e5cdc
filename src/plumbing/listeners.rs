//! The host's listening sockets, from /proc/net/{tcp,tcp6,udp,udp6}: a port published on the
//! host that a local process already listens on deserves a warning (the DNAT takes the
//! connections from outside away from that process).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A socket bound for listening: (protocol number, local address, port).
pub type Listener = (u8, IpAddr, u16);

const TCP_LISTEN: &str = "0A";
/// An unconnected UDP socket is in TCP_CLOSE (7): that is what a server's bound socket shows.
const UDP_BOUND: &str = "07";

/// The listeners of the calling thread's network namespace; unreadable files give none (the
/// warning this feeds is advice, not a reason to fail an apply).
pub fn read() -> Vec<Listener> {
    let mut out = Vec::new();
    for (file, proto, state) in [
        ("/proc/net/tcp", 6u8, TCP_LISTEN),
        ("/proc/net/tcp6", 6, TCP_LISTEN),
        ("/proc/net/udp", 17, UDP_BOUND),
        ("/proc/net/udp6", 17, UDP_BOUND),
    ] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse(&text, proto, state));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The sockets in `state` of one /proc/net table.
fn parse(text: &str, proto: u8, state: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = cols.nth(1)?;
            let st = cols.nth(1)?;
            if st != state {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some((proto, hex_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// The kernel prints an address as its 32-bit words in host byte order, in hex.
fn hex_addr(s: &str) -> Option<IpAddr> {
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(native(s)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&native(&s[i * 8..i * 8 + 8])?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The four bytes of a word the kernel printed with `%08X` of a value in host order.
fn native(w: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(w, 16).ok().map(u32::to_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_tables() {
        // Lines as a little-endian kernel prints them.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0016 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        let got = parse(tcp, 6, TCP_LISTEN);
        if cfg!(target_endian = "little") {
            assert_eq!(got, vec![(6, "127.0.0.1".parse().unwrap(), 8080)]);
        }
        let tcp6 = "  sl header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A rest\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse(tcp6, 6, TCP_LISTEN),
                vec![(6, "::1".parse().unwrap(), 80)]
            );
        }
        assert!(parse("header\ngarbage\n", 6, TCP_LISTEN).is_empty());
    }
}
