//! The kernel's answer: one real packet, traced. A temporary base chain in nsfw's own table,
//! before every other chain of the hook, sets `meta nftrace` on the probe's exact 5-tuple; the
//! trace events (NFNLGRP_NFTRACE) of that packet name every chain and rule it meets in every
//! table of the namespace, down to its verdict. The chains are deleted after, whatever the
//! probe did; a run killed in between leaves them in nsfw's table, where the next `why`
//! deletes them first and the next apply's table diff removes them as anything not the file's.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nft::socket::NftSocket;
use nft::trace::{Event, NFNLGRP_NFTRACE, NFT_MSG_TRACE};
use nft::{Base, Chain, ChainType, Expr, Family, Field, Hook, MetaKey, Policy, Rule, Stmt, Value};
use socket2::{Domain, Protocol, Socket, Type};

use crate::plumbing::netns;

/// The temporary chains, on the hooks a probe's packet first meets in a namespace: arriving
/// (prerouting) and sent by the namespace itself (output), in nsfw's inet table; and in its
/// bridge table, arriving on a bridge port (a frame bridged between two namespaces meets the
/// bridge family's hooks first, and some never reach the inet ones).
const TRACE_CHAINS: [(Family, &str, Hook); 3] = [
    (Family::Inet, "why-trace-in", Hook::Prerouting),
    (Family::Inet, "why-trace-out", Hook::Output),
    (Family::Bridge, "why-trace-in", Hook::Prerouting),
];

/// Whether `chain` of nsfw's table is one of the trace chains.
pub(crate) fn is_trace_chain(chain: &str) -> bool {
    TRACE_CHAINS.iter().any(|(_, c, _)| *c == chain)
}

/// Before raw (-300) and conntrack (-200): the trace flag is set before anything else of the
/// hook looks at the packet, so every other chain's rules are seen.
pub(super) const TRACE_PRIORITY: i32 = -400;

/// The probe's packet, exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tuple {
    /// None: the host's own probe, whose source address the kernel picks.
    pub src: Option<IpAddr>,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// `meta nfproto ipv4 ip saddr S ip daddr D meta l4proto tcp th sport SP th dport DP meta nftrace set 1`
/// (ICMP: `icmp type echo-request` in place of the ports).
fn trace_rule(t: &Tuple) -> Rule {
    let v6 = t.dst.is_ipv6();
    let mut s = Vec::new();
    let addr = |a: IpAddr| match a {
        IpAddr::V4(a) => Value::Ipv4(a),
        IpAddr::V6(a) => Value::Ipv6(a),
    };
    let (saddr, daddr) = if v6 {
        (Field::Ip6Saddr, Field::Ip6Daddr)
    } else {
        (Field::IpSaddr, Field::IpDaddr)
    };
    if let Some(src) = t.src {
        s.push(Stmt::eq(Expr::Payload(saddr), addr(src)));
    }
    s.push(Stmt::eq(Expr::Payload(daddr), addr(t.dst)));
    s.push(Stmt::eq(
        Expr::Meta(MetaKey::L4proto),
        Value::Proto(t.proto),
    ));
    match t.proto {
        1 => s.push(Stmt::eq(Expr::Payload(Field::IcmpType), Value::IcmpType(8))),
        58 => s.push(Stmt::eq(
            Expr::Payload(Field::Icmpv6Type),
            Value::Icmpv6Type(128),
        )),
        _ => {
            s.push(Stmt::eq(
                Expr::Payload(Field::ThSport),
                Value::Port(t.sport),
            ));
            s.push(Stmt::eq(
                Expr::Payload(Field::ThDport),
                Value::Port(t.dport),
            ));
        }
    }
    s.push(Stmt::MetaSet(
        MetaKey::Nftrace,
        nft::Arg::Value(Value::Bool(true)),
    ));
    Rule::new(s)
}

fn chain(name: &str, hook: Hook, rules: Vec<Rule>) -> Chain {
    let base = Base {
        ty: ChainType::Filter,
        hook,
        priority: TRACE_PRIORITY,
        policy: Policy::Accept,
    };
    Chain::new(name, Some(base), rules)
}

/// The ops that remove the trace chains of `family` from `table` whether or not they are
/// there: each is added (empty, so the delete cannot fail), flushed, deleted.
fn removal(family: Family, table: &str) -> Vec<nft::batch::Op> {
    let mut ops = Vec::new();
    for (_, name, hook) in TRACE_CHAINS.iter().filter(|c| c.0 == family) {
        let (name, hook, table) = (*name, *hook, table.to_string());
        ops.push(nft::batch::Op::AddChain {
            family,
            table: table.clone(),
            chain: chain(name, hook, Vec::new()),
        });
        ops.push(nft::batch::Op::FlushChain {
            family,
            table: table.clone(),
            name: name.into(),
        });
        ops.push(nft::batch::Op::DeleteChain {
            family,
            table,
            name: name.into(),
        });
    }
    ops
}

/// Runs `f` in namespace `ns` (None: here).
fn in_ns<T: Send + 'static>(
    ns: &Option<String>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match ns {
        Some(n) => netns::run_in(n, f),
        None => f(),
    }
}

/// Trace chains armed in nsfw's tables of one namespace, and the socket hearing its events.
pub(crate) struct Armed {
    pub ns: Option<String>,
    table: String,
    /// The families whose table got the chains (the bridge table is there only when the
    /// topology has one).
    families: Vec<Family>,
    events: NftSocket,
}

/// Sends `ops` in one batch.
fn send(ops: &[nft::batch::Op]) -> Result<()> {
    NftSocket::open()?.send(&nft::batch::encode(ops)?)
}

/// Arms the trace of `t` in nsfw's tables `table` of namespace `ns` (None: the host): any
/// chain an earlier, killed run left is replaced in the same batch. The inet table must be
/// there; the bridge table is traced when it is.
pub(crate) fn arm(ns: Option<String>, table: &str, t: Tuple) -> Result<Armed> {
    let tb = table.to_string();
    let (events, families) = in_ns(&ns, move || {
        let events = NftSocket::open_with_groups(1 << (NFNLGRP_NFTRACE - 1))?;
        let mut families = Vec::new();
        for family in [Family::Inet, Family::Bridge] {
            let mut ops = removal(family, &tb);
            for (_, name, hook) in TRACE_CHAINS.iter().filter(|c| c.0 == family) {
                ops.push(nft::batch::Op::AddChain {
                    family,
                    table: tb.clone(),
                    chain: chain(name, *hook, vec![trace_rule(&t)]),
                });
            }
            match send(&ops) {
                Ok(()) => families.push(family),
                Err(_) if family == Family::Bridge => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("adding the trace chains to inet {tb}"));
                }
            }
        }
        Ok((events, families))
    })?;
    Ok(Armed {
        ns,
        table: table.to_string(),
        families,
        events,
    })
}

impl Armed {
    /// Deletes the trace chains.
    pub(crate) fn disarm(&self) -> Result<()> {
        let tb = self.table.clone();
        let families = self.families.clone();
        in_ns(&self.ns, move || {
            let ops: Vec<nft::batch::Op> = families.iter().flat_map(|f| removal(*f, &tb)).collect();
            send(&ops).with_context(|| format!("removing the trace chains from {tb}"))
        })
    }

    /// The trace events heard until `until`, and those already queued after it (the sockets
    /// of several namespaces are read one after the other).
    pub(crate) fn collect(&mut self, until: Instant) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let got = self.events.events(left.max(Duration::from_millis(1)))?;
            if got.is_empty() && left.is_zero() {
                return Ok(out);
            }
            for (ty, payload) in got {
                if ty == NFT_MSG_TRACE
                    && let Some(e) = nft::trace::parse(&payload)
                {
                    out.push(e);
                }
            }
        }
    }
}

/// The events about the probe's packet: anyone may set `meta nftrace` (an admin's `nft
/// monitor trace`, another table tracing everything). The kernel puts the packet's headers in
/// the first event of each pass through a hook, and the rest share its trace id: an id is the
/// probe's when that event's transport header has the probe's source port (the NAT on the way
/// keeps it: masquerade and a published port change addresses and the destination port), or,
/// for ICMP, is an echo request. Events of an id never seen with headers are kept.
pub(crate) fn probes_only(t: &Tuple, events: Vec<Event>) -> Vec<Event> {
    let mut ids: std::collections::HashMap<u32, bool> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for e in events {
        if let Some(h) = &e.transport {
            let ours = match t.proto {
                6 | 17 => h.get(..2) == Some(&t.sport.to_be_bytes()[..]),
                1 => h.first() == Some(&8),
                58 => h.first() == Some(&128),
                _ => true,
            };
            ids.insert(e.id, ours);
        }
        if ids.get(&e.id).copied().unwrap_or(true) {
            out.push(e);
        }
    }
    out
}

/// A probe's socket, made (and bound, so its source port is known) in the namespace it
/// sends from.
pub(crate) struct Probe {
    sock: Option<Socket>,
    pub sport: u16,
}

/// Makes the socket of a TCP or UDP probe in `ns` (None: here); ICMP needs none here.
pub(crate) fn socket(ns: &Option<String>, v6: bool, proto: u8) -> Result<Probe> {
    if proto != 6 && proto != 17 {
        return Ok(Probe {
            sock: None,
            sport: 0,
        });
    }
    in_ns(ns, move || {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let (ty, p) = if proto == 6 {
            (Type::STREAM, Protocol::TCP)
        } else {
            (Type::DGRAM, Protocol::UDP)
        };
        let s = Socket::new(domain, ty, Some(p)).context("cannot open the probe's socket")?;
        let any: SocketAddr = if v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        s.bind(&any.into()).context("binding the probe's socket")?;
        let sport = s
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .unwrap_or_default();
        Ok(Probe {
            sock: Some(s),
            sport,
        })
    })
}

impl Probe {
    /// Sends the one packet (a SYN, a datagram, an echo request from `ns`) and says whether
    /// an answer came within `wait`: a connection or a refusal, an echo reply, a datagram
    /// back.
    pub(crate) fn send(self, ns: &Option<String>, to: SocketAddr, wait: Duration) -> Result<bool> {
        match self.sock {
            Some(s) if s.r#type()? == Type::STREAM => match s.connect_timeout(&to.into(), wait) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(true),
                Err(_) => Ok(false),
            },
            // An echo server (the sandbox's) answers; anything else is no answer.
            // Connected, so a port-unreachable (nothing listens, the host is there) comes
            // back as a refusal: that is an answer too.
            Some(s) => {
                s.connect(&to.into())
                    .with_context(|| format!("connecting the datagram socket to {to}"))?;
                s.send(b"nsfw why\n")
                    .with_context(|| format!("sending a datagram to {to}"))?;
                s.set_read_timeout(Some(wait))?;
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
                Ok(match s.recv(&mut buf) {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                })
            }
            None => {
                let ip = to.ip();
                in_ns(ns, move || crate::probe::one_echo(ip, wait))
            }
        }
    }
}
