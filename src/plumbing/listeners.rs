//! The host's listening sockets: a port published on the host that a local process already
//! listens on deserves a warning (the DNAT takes the connections from outside away from that
//! process). Read by sock_diag, which walks only the sockets asked for; /proc/net/{tcp,udp}[6]
//! walk every bucket of the established-connection table (several milliseconds on a host with
//! much memory, for each file) and are read only when sock_diag cannot answer (its modules
//! missing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::netlink::{self, NLMSG_DONE, NLMSG_ERROR, RecvBuf, Request, Socket};

/// A socket bound for listening: (protocol number, local address, port).
pub(crate) type Listener = (u8, IpAddr, u16);

const TCP_LISTEN: &str = "0A";
/// An unconnected UDP socket is in TCP_CLOSE (7): that is what a server's bound socket shows.
const UDP_BOUND: &str = "07";

/// The listeners of the calling thread's network namespace; what cannot be read gives none
/// (the warning this feeds is advice, not a reason to fail an apply).
pub(crate) fn read() -> Vec<Listener> {
    let diag = netlink::socket(netlink::NETLINK_SOCK_DIAG)
        .timeout(Duration::from_secs(5))
        .open("sock_diag")
        .ok();
    let mut buf = RecvBuf::take();
    let mut out = Vec::new();
    for (seq, (file, proto, state, family)) in [
        ("/proc/net/tcp", 6u8, TCP_LISTEN, libc::AF_INET),
        ("/proc/net/tcp6", 6, TCP_LISTEN, libc::AF_INET6),
        ("/proc/net/udp", 17, UDP_BOUND, libc::AF_INET),
        ("/proc/net/udp6", 17, UDP_BOUND, libc::AF_INET6),
    ]
    .into_iter()
    .enumerate()
    {
        let by_diag = diag.as_ref().and_then(|fd| {
            let st = u8::from_str_radix(state, 16).ok()?;
            dump(fd, &mut buf, seq as u32 + 1, family as u8, proto, st)
        });
        match by_diag {
            Some(found) => out.extend(found),
            None => {
                if let Ok(text) = std::fs::read_to_string(file) {
                    out.extend(parse(&text, proto, state));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// struct inet_diag_req_v2: family, protocol, ext, pad, states (u32), inet_diag_sockid (48).
const REQ_LEN: usize = 56;
/// struct inet_diag_msg up to and including the source address: family, state, timer,
/// retrans, then the sockid's sport, dport (big-endian) and src (16 bytes).
const MSG_MIN: usize = 24;

/// The sockets of `family` and `proto` in TCP state `state`, by a sock_diag dump with sequence
/// number `seq`; None when the kernel refuses it.
fn dump(
    sock: &Socket,
    buf: &mut RecvBuf,
    seq: u32,
    family: u8,
    proto: u8,
    state: u8,
) -> Option<Vec<Listener>> {
    let mut req = [0u8; REQ_LEN];
    req[0] = family;
    req[1] = proto;
    req[4..8].copy_from_slice(&(1u32 << state).to_ne_bytes());
    let req = Request::new(SOCK_DIAG_BY_FAMILY, libc::NLM_F_DUMP as u16, seq)
        .push(&req)
        .finish();
    if sock.send(&req, 0).ok()? != req.len() {
        return None;
    }
    let mut out = Vec::new();
    loop {
        let bytes = buf.recv(sock).ok().filter(|b| !b.is_empty())?;
        match messages(bytes, family, proto, seq, &mut out) {
            Answer::More => {}
            Answer::Done => return Some(out),
            Answer::Refused => return None,
        }
    }
}

enum Answer {
    More,
    Done,
    Refused,
}

/// Reads one receive buffer of a sock_diag answer (to the request with sequence `seq`) into
/// `out`.
fn messages(b: &[u8], family: u8, proto: u8, seq: u32, out: &mut Vec<Listener>) -> Answer {
    for m in netlink::messages(b) {
        let Ok(m) = m else {
            return Answer::Refused;
        };
        if m.seq != seq {
            continue;
        }
        match m.ty {
            NLMSG_DONE => return Answer::Done,
            NLMSG_ERROR => return Answer::Refused,
            SOCK_DIAG_BY_FAMILY => {
                if let Some(l) = listener(m.payload(), family, proto) {
                    out.push(l);
                }
            }
            _ => {}
        }
    }
    Answer::More
}

/// The protocol, source address and port of one inet_diag_msg.
fn listener(m: &[u8], family: u8, proto: u8) -> Option<Listener> {
    if m.len() < MSG_MIN || m[0] != family {
        return None;
    }
    let port = u16::from_be_bytes([m[4], m[5]]);
    let src = &m[8..24];
    let addr = if i32::from(family) == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?))
    };
    Some((proto, addr, port))
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

    /// sock_diag and /proc/net agree, in a network namespace of the test's own (a thread's
    /// namespace is its own; /proc/thread-self/net shows it). Skipped without the privilege.
    #[test]
    fn sock_diag_finds_what_proc_lists() {
        std::thread::spawn(|| {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return;
            }
            let tcp4 = std::net::TcpListener::bind("0.0.0.0:0").expect("tcp4");
            let tcp6 = std::net::TcpListener::bind("[::]:0").expect("tcp6");
            let udp4 = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp4");
            let udp6 = std::net::UdpSocket::bind("[::]:0").expect("udp6");
            let port = |a: std::io::Result<std::net::SocketAddr>| a.expect("addr").port();
            let want = [
                (
                    6,
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port(tcp4.local_addr()),
                ),
                (
                    6,
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    port(tcp6.local_addr()),
                ),
                (
                    17,
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port(udp4.local_addr()),
                ),
                (
                    17,
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    port(udp6.local_addr()),
                ),
            ];
            let got = read();
            for w in want {
                assert!(got.contains(&w), "{w:?} not in {got:?}");
            }
            let mut proc = Vec::new();
            for (f, proto, state) in [
                ("tcp", 6, TCP_LISTEN),
                ("tcp6", 6, TCP_LISTEN),
                ("udp", 17, UDP_BOUND),
                ("udp6", 17, UDP_BOUND),
            ] {
                let text =
                    std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).expect("proc");
                proc.extend(parse(&text, proto, state));
            }
            proc.sort();
            assert_eq!(got, proc);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn parses_the_kernels_tables() {
        // Lines as a little-endian kernel prints them.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0016 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        let got = parse(tcp, 6, TCP_LISTEN);
        if cfg!(target_endian = "little") {
            assert_eq!(
                got,
                vec![(6, "127.0.0.1".parse().expect("valid test input"), 8080)]
            );
        }
        let tcp6 = "  sl header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A rest\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse(tcp6, 6, TCP_LISTEN),
                vec![(6, "::1".parse().expect("valid test input"), 80)]
            );
        }
        assert!(parse("header\ngarbage\n", 6, TCP_LISTEN).is_empty());
    }
}
