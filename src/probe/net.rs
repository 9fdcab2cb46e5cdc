//! The probes' network side, in-process: ICMP echo from a raw socket, TCP and UDP clients, and
//! the servers the checks talk to (each tells a client the source address it saw). No `ping`,
//! no `nc`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use anyhow::{Context, Result, anyhow};
use nix::sys::socket::{SockaddrStorage, recvfrom};
use socket2::{Domain, Protocol, Socket, Type};

use crate::plumbing::netns;

/// Opens a TCP connection and reads what the server says. `None`: no connection (refused,
/// dropped, unreachable) within the timeout.
pub(super) fn tcp(to: IpAddr, port: u16) -> Result<Option<String>> {
    Ok(match tcp_try(to, port)? {
        Tcp::Answered(s) => Some(s),
        Tcp::Refused | Tcp::Nothing => None,
    })
}

/// What a TCP connection attempt met.
pub(super) enum Tcp {
    /// Connected; what the server said.
    Answered(String),
    /// Refused (RST): the packet reached the destination, nothing listens there.
    Refused,
    /// Nothing within the timeout, or unreachable: dropped on the way.
    Nothing,
}

/// Opens a TCP connection and reads what the server says.
pub(super) fn tcp_try(to: IpAddr, port: u16) -> Result<Tcp> {
    let addr = std::net::SocketAddr::from((to, port));
    let mut s = match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(Tcp::Refused),
        Err(_) => return Ok(Tcp::Nothing),
    };
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut text);
    Ok(Tcp::Answered(text))
}

/// Serves, inside namespace `ns`, on `port` of every address of both families: every
/// connection is told the source address it came from, then closed. The stand-in for "what
/// does the internet see of me".
pub(crate) fn serve_source_echo(ns: &str, port: u16) -> Result<()> {
    serve(ns, port, |mut s, peer| {
        let _ =
            std::io::Write::write_all(&mut s, format!("{}\n", peer.ip().to_canonical()).as_bytes());
    })
}

/// Serves, inside namespace `ns`, on `port`: accepts connections and closes them. A target
/// for "can this be reached from outside" checks.
pub(crate) fn serve_listener(ns: &str, port: u16) -> Result<()> {
    serve(ns, port, |_, _| {})
}

/// A socket bound to `port` on every address: one IPv6 socket that takes IPv4 too, or an IPv4
/// one where the kernel has no IPv6.
fn bound(ty: Type, port: u16) -> Result<Socket> {
    let dual = || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, ty, None)?;
        s.set_only_v6(false)?;
        // TCP only: on UDP the option would let us share a port a user's service holds.
        if ty == Type::STREAM {
            s.set_reuse_address(true)?;
        }
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(s)
    };
    match dual() {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(anyhow!("cannot listen on port {port}: address in use"))
        }
        Err(_) => {
            let s = Socket::new(Domain::IPV4, ty, None)?;
            if ty == Type::STREAM {
                s.set_reuse_address(true)?;
            }
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
                .with_context(|| format!("cannot listen on port {port}"))?;
            Ok(s)
        }
    }
}

fn serve(ns: &str, port: u16, each: fn(std::net::TcpStream, SocketAddr)) -> Result<()> {
    netns::spawn_in(ns, move || {
        let s = bound(Type::STREAM, port)?;
        s.listen(128)
            .with_context(|| format!("cannot listen on port {port}"))?;
        let l: std::net::TcpListener = s.into();
        Ok(move || {
            for s in l.incoming().flatten() {
                if let Ok(peer) = s.peer_addr() {
                    each(s, peer);
                }
            }
        })
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends echo requests from a raw socket in the calling thread's namespace: `tries` of them,
/// waiting `wait` for each answer.
pub(super) fn ping(to: IpAddr, tries: u16, wait: Duration) -> Result<bool> {
    Ok(ping_rtt(to, tries, wait)?.is_some())
}

/// Like [`ping`], and how long the fastest answer took (None: no answer). Stops at the first
/// answer unless `all` of the tries are wanted for the fastest.
pub(super) fn ping_rtt(to: IpAddr, tries: u16, wait: Duration) -> Result<Option<Duration>> {
    ping_times(to, tries, wait, false, 0)
}

/// Like [`ping`], with echo requests that fill a packet of `mtu` bytes exactly, and may not
/// be fragmented: a hop of a smaller MTU on the way drops them (or answers "fragmentation
/// needed", which is no echo reply either).
pub(super) fn ping_full(to: IpAddr, mtu: u32, tries: u16, wait: Duration) -> Result<bool> {
    let header = if to.is_ipv4() { 20 } else { 40 };
    let size = usize::try_from(mtu).unwrap_or(1500).saturating_sub(header);
    Ok(ping_times(to, tries, wait, false, size)?.is_some())
}

/// The fastest of `tries` echo round trips to `to` (None: no answer at all).
pub(super) fn fastest_rtt(to: IpAddr, tries: u16, wait: Duration) -> Result<Option<Duration>> {
    ping_times(to, tries, wait, true, 0)
}

/// `size`: the ICMP message's length (0: a small one).
fn ping_times(
    to: IpAddr,
    tries: u16,
    wait: Duration,
    all: bool,
    size: usize,
) -> Result<Option<Duration>> {
    let mut best: Option<Duration> = None;
    let (domain, proto, request, reply) = match to {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto))
        .context("cannot open a raw ICMP socket (are you root?)")?;
    if size > 0 && to.is_ipv6() {
        // IPv4's raw sockets set DF on what fits the route's MTU already.
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Ipv6DontFrag, &true)?;
    }
    // The identifier tells our replies from other probes' in the same namespace.
    let id = (std::process::id() as u16) ^ (thread_id() as u16);
    let dest = SocketAddr::from((to, 0)).into();
    for seq in 1..=tries {
        let mut pkt = vec![request, 0, 0, 0];
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(b"nsfw-probe-nsfw-probe-nsfw-probe");
        if pkt.len() < size {
            pkt.resize(size, 0x5a);
        }
        // ICMPv6's checksum covers a pseudo-header: the kernel fills it in on raw ICMPv6
        // sockets (RFC 3542).
        if to.is_ipv4() {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let sent = Instant::now();
        sock.send_to(&pkt, &dest)
            .with_context(|| format!("cannot send to {to}"))?;
        let deadline = sent + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let mut b = vec![0u8; 65536];
            let (n, from) = match recvfrom::<SockaddrStorage>(sock.as_raw_fd(), &mut b) {
                Ok(x) => x,
                Err(e) => {
                    let e = std::io::Error::from(e);
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        break;
                    }
                    return Err(anyhow!("receiving from {to}: {e}"));
                }
            };
            let b = &b[..n];
            // A raw IPv4 socket hands over the IP header too; an IPv6 one does not.
            let icmp = match to {
                IpAddr::V4(_) if b.len() >= 20 => &b[usize::from(b[0] & 0x0f) * 4..],
                IpAddr::V4(_) => continue,
                IpAddr::V6(_) => b,
            };
            let src = from.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|a| IpAddr::V4(a.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
            });
            if icmp.len() >= 8
                && icmp[0] == reply
                && src == Some(to)
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                let rtt = sent.elapsed();
                best = Some(best.map_or(rtt, |b| b.min(rtt)));
                if !all {
                    return Ok(best);
                }
                break;
            }
        }
    }
    Ok(best)
}

fn thread_id() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// Sends a datagram and waits for the answer of a [`serve_udp_echo`] server. `None`: no answer
/// within the timeout (three tries).
pub(super) fn udp(to: IpAddr, port: u16) -> Result<Option<String>> {
    let any: IpAddr = match to {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = UdpSocket::bind((any, 0)).context("cannot open a UDP socket")?;
    s.set_read_timeout(Some(Duration::from_millis(700)))?;
    let mut buf = [0u8; 128];
    for _ in 0..3 {
        if s.send_to(b"nsfw-probe", (to, port)).is_err() {
            return Ok(None);
        }
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(_) => continue,
        }
    }
    Ok(None)
}

/// Serves UDP inside namespace `ns` on `port` (both families): every datagram is answered
/// with the source address it came from.
pub(crate) fn serve_udp_echo(ns: &str, port: u16) -> Result<()> {
    netns::spawn_in(ns, move || {
        let s: UdpSocket = bound(Type::DGRAM, port)?.into();
        Ok(move || {
            let mut buf = [0u8; 512];
            while let Ok((_, peer)) = s.recv_from(&mut buf) {
                let _ = s.send_to(format!("{}\n", peer.ip().to_canonical()).as_bytes(), peer);
            }
        })
    })
}
