//! Connectivity checks behind `nsfw try` and `nsfw verify`, probed in-process: a thread enters
//! the source namespace and sends ICMP echo requests from a raw socket there. No `ping`.

use std::fmt;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use socket2::{Domain, Protocol, Socket, Type};

use crate::plumbing::netns;
use crate::topology::Topology;

/// How a check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// ICMP echo.
    Ping,
    /// A TCP connection to a listener (see [`serve_listener`]).
    Tcp(u16),
    /// A TCP connection to a [`serve_source_echo`] server, which answers with the source
    /// address it saw: reaching it is not enough, the answer must be `want`.
    SourceSeen { port: u16, want: Ipv4Addr },
}

/// One check: can `from` reach `to`, and should it?
#[derive(Clone, Debug)]
pub struct Check {
    /// The namespace the probe starts in.
    pub from: String,
    /// What is probed, for the table (`gateway br0`, `ns2`, ...).
    pub to_label: String,
    pub to: Ipv4Addr,
    pub probe: Probe,
    pub expect: bool,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub check: Check,
    /// Ok(reached) or the reason the probe could not run.
    pub got: std::result::Result<bool, String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self.got, Ok(r) if r == self.check.expect)
    }
}

/// Above this many namespaces on one bridge, each one probes its next neighbour only, rather
/// than every peer: the full mesh grows with the square of the count.
const FULL_MESH_MAX: usize = 8;

/// The checks a topology should pass.
pub fn checks(t: &Topology) -> Vec<Check> {
    let mut out = Vec::new();
    for b in &t.bridges {
        let members: Vec<_> = t.ports_of(&b.name).collect();
        for (i, (n, _)) in members.iter().enumerate() {
            out.push(Check {
                from: n.name.clone(),
                to_label: format!("gateway {}", b.name),
                to: b.address.ip(),
                probe: Probe::Ping,
                expect: true,
            });
            let peers: Vec<_> = if members.len() <= FULL_MESH_MAX {
                members.iter().filter(|(m, _)| m.name != n.name).collect()
            } else {
                members
                    .iter()
                    .skip(i + 1)
                    .chain(members.iter())
                    .take(1)
                    .collect()
            };
            for (m, mi) in peers {
                out.push(Check {
                    from: n.name.clone(),
                    to_label: m.name.clone(),
                    to: mi.address.ip(),
                    probe: Probe::Ping,
                    expect: true,
                });
            }
        }
    }
    out
}

/// Runs the checks, a bounded number at a time.
pub fn run(checks: &[Check]) -> Vec<Outcome> {
    const PARALLEL: usize = 16;
    let mut out = Vec::with_capacity(checks.len());
    for chunk in checks.chunks(PARALLEL) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|c| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let got = probe(&c).map_err(|e| format!("{e:#}"));
                    Outcome { check: c, got }
                })
            })
            .collect();
        for (h, c) in handles.into_iter().zip(chunk) {
            out.push(h.join().unwrap_or_else(|_| Outcome {
                check: c.clone(),
                got: Err("the probe thread panicked".into()),
            }));
        }
    }
    out
}

/// Runs one check from inside its source namespace.
pub fn probe(c: &Check) -> Result<bool> {
    let (to, probe) = (c.to, c.probe.clone());
    netns::run_in(&c.from, move || match probe {
        // Three tries, a second each.
        Probe::Ping => ping(to, 3, Duration::from_secs(1)),
        Probe::Tcp(port) => Ok(tcp(to, port)?.is_some()),
        Probe::SourceSeen { port, want } => match tcp(to, port)? {
            Some(seen) if seen.trim() == want.to_string() => Ok(true),
            Some(seen) => Err(anyhow!(
                "reached, but the server saw source {}, not {want}",
                seen.trim()
            )),
            None => Ok(false),
        },
    })
}

/// Opens a TCP connection and reads what the server says. `None`: no connection (refused,
/// dropped, unreachable) within the timeout.
fn tcp(to: Ipv4Addr, port: u16) -> Result<Option<String>> {
    let addr = std::net::SocketAddr::from((to, port));
    let mut s = match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut text);
    Ok(Some(text))
}

/// Serves, inside namespace `ns`, on `addr`: every connection is told the source address it
/// came from, then closed. The stand-in for "what does the internet see of me".
pub fn serve_source_echo(ns: &str, addr: SocketAddrV4) -> Result<()> {
    serve(ns, addr, |mut s, peer| {
        let _ = std::io::Write::write_all(&mut s, format!("{}\n", peer.ip()).as_bytes());
    })
}

/// Serves, inside namespace `ns`, on `addr`: accepts connections and closes them. A target
/// for "can this be reached from outside" checks.
pub fn serve_listener(ns: &str, addr: SocketAddrV4) -> Result<()> {
    serve(ns, addr, |_, _| {})
}

fn serve(
    ns: &str,
    addr: SocketAddrV4,
    each: fn(std::net::TcpStream, std::net::SocketAddr),
) -> Result<()> {
    netns::spawn_in(ns, move || {
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
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

/// Sends echo requests from a raw socket in the calling thread's namespace.
fn ping(to: Ipv4Addr, tries: u16, wait: Duration) -> Result<bool> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("cannot open a raw ICMP socket (are you root?)")?;
    // The identifier tells our replies from other probes' in the same namespace.
    let id = (std::process::id() as u16) ^ (thread_id() as u16);
    let dest = SocketAddrV4::new(to, 0).into();
    for seq in 1..=tries {
        let mut pkt = vec![8u8, 0, 0, 0];
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(b"nsfw-probe-nsfw-probe-nsfw-probe");
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        sock.send_to(&pkt, &dest)
            .with_context(|| format!("cannot send to {to}"))?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break;
                }
                Err(e) => return Err(anyhow!("receiving from {to}: {e}")),
            };
            // SAFETY: recv initialised the first n bytes.
            let b: Vec<u8> = buf[..n]
                .iter()
                .map(|x| unsafe { x.assume_init() })
                .collect();
            // A raw IPv4 socket hands over the IP header too.
            if b.len() < 20 {
                continue;
            }
            let ihl = usize::from(b[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
            let icmp = &b[ihl.min(b.len())..];
            if icmp.len() >= 8 && icmp[0] == 0 && src == to && icmp[4..6] == id.to_be_bytes() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// The results as a table: from, to, expected, got.
pub struct Table<'a>(pub &'a [Outcome]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |b: bool| if b { "reach" } else { "blocked" };
        let rows: Vec<[String; 5]> = self
            .0
            .iter()
            .map(|o| {
                let how = match &o.check.probe {
                    Probe::Ping => "icmp".to_string(),
                    Probe::Tcp(p) => format!("tcp/{p}"),
                    Probe::SourceSeen { port, want } => format!("tcp/{port}, seen as {want}"),
                };
                [
                    o.check.from.clone(),
                    format!("{} {} ({how})", o.check.to_label, o.check.to),
                    word(o.check.expect).to_string(),
                    match &o.got {
                        Ok(r) => word(*r).to_string(),
                        Err(e) => format!("error: {e}"),
                    },
                    if o.passed() { "ok" } else { "FAIL" }.to_string(),
                ]
            })
            .collect();
        let head = ["FROM", "TO", "EXPECTED", "GOT", ""];
        let mut w = [0usize; 5];
        for r in rows
            .iter()
            .map(|r| r.iter().map(String::as_str).collect::<Vec<_>>())
            .chain([head.to_vec()])
        {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, r: &[&str]| {
            writeln!(
                f,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            )
        };
        line(f, &head)?;
        for r in &rows {
            line(f, &r.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let passed = self.0.iter().filter(|o| o.passed()).count();
        write!(f, "{passed}/{} checks as expected", self.0.len())
    }
}
