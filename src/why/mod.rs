//! `nsfw why FROM TO [PROTO/PORT]`: the file's answer (the oracle's verdict and the entry that
//! decides it, the NAT on the way, the path) and the kernel's answer (one real packet traced
//! through every table of the namespaces it crosses), and where they disagree, what to do.

mod kernel;
mod show;
mod unseen;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nft::trace::{Event, Kind, Verdict};

use crate::oracle::{Flow, Party, Reason};
use crate::paths::{Node, Seg, owner, walk};
use crate::probe::World;
use crate::topology::{Entry, Proto, Topology};

pub(crate) use show::{text, to_json};

/// What the user asked: FROM, TO, and the protocol and port.
#[derive(Clone, Debug)]
pub(crate) struct Question {
    pub from: String,
    pub to: String,
    pub proto: u8,
    pub port: u16,
    pub v6: bool,
}

/// Parses `tcp/80`, `udp/53`, `icmp` (the default).
pub(crate) fn parse_l4(s: Option<&str>) -> Result<(u8, u16), String> {
    let Some(s) = s else { return Ok((1, 0)) };
    match s.split_once('/') {
        None if s == "icmp" || s == "icmpv6" => Ok((1, 0)),
        Some((p, n)) if p == "tcp" || p == "udp" => {
            let port = n
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{n}` is not a port (1-65535)"))?;
            Ok((if p == "tcp" { 6 } else { 17 }, port))
        }
        _ => Err(format!(
            "`{s}` is not a protocol and port (expected tcp/80, udp/53 or icmp)"
        )),
    }
}

/// One end as the probe sees it: who it is to the policy, the address it uses, and the
/// namespace the probe is sent from (None: the host).
#[derive(Clone, Debug)]
struct End {
    party: Party,
    ns: Option<String>,
}

fn ns_addr(t: &Topology, name: &str, v6: bool) -> Option<IpAddr> {
    let n = t.namespaces.iter().find(|n| n.name == name)?;
    n.addrs(v6).next()
}

/// The host as namespace `peer` sees it: its gateway on the peer's bridge, or, behind a
/// router (a bridge without one), the gateway of the router's own bridge.
fn host_gateway(t: &Topology, peer: &str, v6: bool) -> Option<IpAddr> {
    let bridge_of = |n: &crate::topology::Namespace| n.primary().map(|i| i.bridge.clone());
    let b = t
        .namespaces
        .iter()
        .find(|n| n.name == peer)
        .and_then(bridge_of)?;
    t.bridge(&b).and_then(|x| x.gateway_addr(v6)).or_else(|| {
        t.namespaces
            .iter()
            .filter(|r| r.forward && r.ifaces.iter().any(|i| i.bridge == b))
            .find_map(|r| bridge_of(r).and_then(|rb| t.bridge(&rb)?.gateway_addr(v6)))
    })
}

/// A name of the file, `host`, `world`, or an address, as a party of family `v6`.
fn resolve(
    t: &Topology,
    s: &str,
    v6: bool,
    world: Option<&World>,
    peer: Option<&str>,
) -> Result<End> {
    let side = |w: &World| if v6 { w.v6 } else { Some(w.v4) };
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(match owner(t, ip) {
            Node::Ns(n) => End {
                party: Party::Ns(n.clone(), ip),
                ns: Some(n),
            },
            Node::Host => End {
                party: Party::Host(ip),
                ns: None,
            },
            Node::World if ip.is_loopback() => End {
                party: Party::Host(ip),
                ns: None,
            },
            Node::World => {
                let from_wan =
                    world.and_then(|w| side(w).filter(|x| x.addr == ip).map(|_| w.ns.clone()));
                End {
                    party: Party::World(ip),
                    ns: from_wan,
                }
            }
        });
    }
    let ns = t
        .namespaces
        .iter()
        .find(|n| n.name == s)
        .or_else(|| t.ports_of(s).map(|(n, _)| n).next());
    if let Some(n) = ns {
        let ip = ns_addr(t, &n.name, v6).ok_or_else(|| {
            anyhow!(
                "namespace {} has no IPv{} address",
                n.name,
                if v6 { 6 } else { 4 }
            )
        })?;
        return Ok(End {
            party: Party::Ns(n.name.clone(), ip),
            ns: Some(n.name.clone()),
        });
    }
    match s {
        "host" => {
            let gw = peer
                .and_then(|p| host_gateway(t, p, v6))
                .or_else(|| world.and_then(side).map(|s| s.host_addr))
                .or_else(|| t.bridges.iter().find_map(|b| b.gateway_addr(v6)))
                .ok_or_else(|| anyhow!("the host has no address of this family in the file"))?;
            Ok(End {
                party: Party::Host(gw),
                ns: None,
            })
        }
        "world" => {
            let (ip, ns) = match world.and_then(side) {
                Some(w) => (w.addr, world.map(|w| w.ns.clone())),
                None if v6 => ("2001:db8:113::10".parse()?, None),
                None => ("203.0.113.10".parse()?, None),
            };
            Ok(End {
                party: Party::World(ip),
                ns,
            })
        }
        _ => bail!(
            "`{s}` is not a namespace, a bridge, `host`, `world` or an address of {}",
            t.source.display()
        ),
    }
}

/// The file's answer.
#[derive(Clone, Debug)]
pub(crate) struct FileAnswer {
    pub allowed: bool,
    /// `[[allow]] #3 at lab.toml:42`, or the default in words.
    pub decided_by: String,
    pub entry: Option<Entry>,
    /// The NAT on the way, in words.
    pub nat: Vec<String>,
    /// The nodes on the way: `ns1 → br0 → host → uplink → world`.
    pub path: Vec<String>,
}

/// A published port `to` reaches: (namespace, entry index, the namespace's port).
fn published(t: &Topology, to: &Party, proto: u8, port: u16) -> Option<(String, usize, u16)> {
    let (Party::Host(ip) | Party::World(ip)) = to else {
        return None;
    };
    let want = match proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    for n in &t.namespaces {
        for (i, p) in n.publish.iter().enumerate() {
            let fam = if ip.is_ipv6() { p.v6 } else { p.v4 };
            let here = p.host_addr.is_none_or(|a| a == *ip)
                && (!ip.is_loopback() || p.on_localhost() || ip.is_ipv6());
            if p.proto == want && fam && here && (p.host.0..=p.host.1).contains(&port) {
                return Some((n.name.clone(), i, p.ns.0 + (port - p.host.0)));
            }
        }
    }
    None
}

fn file_answer(
    t: &Topology,
    from: &End,
    to: &End,
    q: &Question,
    world: Option<&World>,
) -> FileAnswer {
    let proto = if q.proto == 1 && q.v6 { 58 } else { q.proto };
    let mut nat = Vec::new();
    let mut flow = Flow::new(from.party.clone(), to.party.clone(), proto, q.port);
    let mut entry_pub = None;
    if let Some((ns, i, nport)) = published(t, &to.party, q.proto, q.port) {
        let ip = ns_addr(t, &ns, q.v6).unwrap_or(to.party.addr());
        let e = Entry::Publish {
            ns: ns.clone(),
            index: i,
        };
        nat.push(format!(
            "published port: {}:{} is translated to {ns} {}:{nport} ({})",
            to.party.addr(),
            q.port,
            ip,
            t.origin(&e)
        ));
        flow = Flow::new(from.party.clone(), Party::Ns(ns, ip), proto, nport);
        flow.published = true;
        entry_pub = Some(e);
    }
    // A namespace's ping of its own gateway passes even a protected host.
    if let (Party::Ns(n, _), Party::Host(ip)) = (&flow.from, &flow.to) {
        let gw = t
            .namespaces
            .iter()
            .find(|x| &x.name == n)
            .and_then(|x| x.primary())
            .and_then(|i| t.bridge(&i.bridge))
            .and_then(|b| b.gateway_addr(ip.is_ipv6()));
        flow.ping_gateway = (proto == 1 || proto == 58) && gw == Some(*ip);
    }
    let (allowed, reason) = crate::oracle::explain(t, &flow);
    let (decided_by, entry) = match &reason {
        Reason::Rule(e) => (t.origin(e), Some(e.clone())),
        Reason::Published => (
            entry_pub
                .as_ref()
                .map(|e| t.origin(e))
                .unwrap_or_else(|| "a published port".into()),
            entry_pub.clone(),
        ),
        Reason::Default(why, Some(e)) => {
            (format!("default: {why} ({})", t.origin(e)), Some(e.clone()))
        }
        Reason::Default(why, None) => (format!("default: {why}"), None),
    };
    let path = walk_path(t, &flow, world, &mut nat);
    FileAnswer {
        allowed,
        decided_by,
        entry,
        nat,
        path,
    }
}

/// The path of `flow` through the topology, node and segment names in order; the masquerade
/// on the way goes to `nat`.
fn walk_path(
    t: &Topology,
    flow: &Flow,
    world: Option<&World>,
    nat: &mut Vec<String>,
) -> Vec<String> {
    let up = |v6: bool| {
        world
            .and_then(|w| if v6 { w.v6 } else { Some(w.v4) })
            .map(|s| s.host_addr)
    };
    let start = match &flow.from {
        Party::Ns(n, _) => Node::Ns(n.clone()),
        Party::Host(_) => Node::Host,
        Party::World(_) => Node::World,
    };
    let w = walk(t, &start, flow.from.addr(), flow.to.addr(), &up);
    let mut path = vec![node_name(&start)];
    for h in &w.hops {
        path.push(seg_name(&h.from));
        path.push(node_name(&h.at));
        if h.to == Seg::Uplink && matches!(h.at, Node::Host) && w.src != flow.from.addr() {
            nat.push(format!(
                "masquerade: {} leaves the host as {}",
                flow.from.addr(),
                w.src
            ));
        }
    }
    match (w.hops.last(), w.bridged.first()) {
        (Some(h), _) => path.push(seg_name(&h.to)),
        (None, Some(b)) => path.push(b.clone()),
        (None, None) => {}
    }
    match &w.end {
        Ok(n) => path.push(node_name(n)),
        Err(e) => path.push(format!("nowhere ({e})")),
    }
    if w.src != flow.from.addr() && !nat.iter().any(|n| n.starts_with("masquerade")) {
        nat.push(format!(
            "masquerade: {} arrives as {}",
            flow.from.addr(),
            w.src
        ));
    }
    path
}

fn node_name(n: &Node) -> String {
    match n {
        Node::Host => "host".into(),
        Node::Ns(n) => n.clone(),
        Node::World => "world".into(),
    }
}

fn seg_name(s: &Seg) -> String {
    match s {
        Seg::Bridge(b) => b.clone(),
        Seg::Uplink => "uplink".into(),
    }
}

/// One rule or policy met, as the answer shows it.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// The namespace (`host` for the host's).
    pub at: String,
    /// `inet nsfw_lab`
    pub table: String,
    pub chain: String,
    /// The rule as nft prints it, `policy accept`, or `return`.
    pub what: String,
    pub verdict: String,
    /// nsfw's table: the file entry behind it.
    pub entry: Option<String>,
    pub ours: bool,
    pub drops: bool,
    /// The hook of its chain (None: a chain jumped to).
    pub hook: Option<nft::Hook>,
}

/// The kernel's answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct KernelAnswer {
    pub steps: Vec<Step>,
    /// The packet's real fate: no chain the trace saw dropped it, and the probe got its
    /// answer. Never true for a packet nothing answered.
    pub passed: bool,
    /// Whether a chain the trace saw dropped it.
    pub trace_dropped: bool,
    /// Whether the probe got an answer (TCP: connected or refused; ICMP: a reply).
    pub answered: bool,
    pub traced: bool,
    /// `table ip filter chain FORWARD policy drop`, when a table not nsfw's dropped it.
    pub foreign_drop: Option<String>,
    pub notes: Vec<String>,
}

/// The whole answer.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub question: String,
    pub file: FileAnswer,
    pub kernel: KernelAnswer,
    /// Why the two disagree and what to do; empty when they agree.
    pub disagreement: Vec<String>,
}

/// The namespaces whose nsfw table the packet crosses: the host, and routers on the path.
fn traced_nodes(t: &Topology, f: &FileAnswer) -> Vec<Option<String>> {
    let mut out = vec![None];
    for n in t
        .namespaces
        .iter()
        .filter(|n| n.forward && n.masquerade.is_some())
    {
        if f.path.contains(&n.name) {
            out.push(Some(n.name.clone()));
        }
    }
    out
}

/// Asks both: the file, then one packet.
pub(crate) fn ask(t: &Topology, q: &Question, world: Option<&World>) -> Result<Answer> {
    let from = resolve(t, &q.from, q.v6, world, None)?;
    let peer = from.ns.clone();
    let to = resolve(t, &q.to, q.v6, world, peer.as_deref())?;
    if from.party.addr().is_ipv6() != to.party.addr().is_ipv6() {
        bail!(
            "{} and {} are not of one family: give both as IPv4 or IPv6 addresses, or say -6",
            q.from,
            q.to
        );
    }
    if let (Some(ns), true) = (&from.ns, to.party.addr().is_loopback()) {
        bail!(
            "{} from {ns} is {ns}'s own loopback, not the host's: ask `nsfw why host {} …` for the host's, or give the host's address",
            q.to,
            q.to
        );
    }
    if matches!(from.party, Party::World(_)) && from.ns.is_none() {
        bail!(
            "nsfw cannot send a packet from the world: run it with --sandbox, where a simulated upstream can"
        );
    }
    let file = file_answer(t, &from, &to, q, world);
    let kernel = trace(t, &from, &to, q, &file)?;
    let disagreement = show::disagreement(t, &from.party, &to.party, q, &file, &kernel);
    let l4 = match q.proto {
        1 => "icmp".to_string(),
        6 => format!("tcp/{}", q.port),
        _ => format!("udp/{}", q.port),
    };
    Ok(Answer {
        question: format!(
            "{} ({}) → {} ({}) {l4}",
            q.from,
            from.party.addr(),
            q.to,
            to.party.addr()
        ),
        file,
        kernel,
        disagreement,
    })
}

/// Sends the one packet with the trace armed in every namespace on its way, and reads what
/// the kernel says of it.
fn trace(t: &Topology, from: &End, to: &End, q: &Question, f: &FileAnswer) -> Result<KernelAnswer> {
    let table = crate::owner::table(&t.name);
    let proto = if q.proto == 1 && q.v6 { 58 } else { q.proto };
    let applied = || format!("is {} applied? (`nsfw apply`)", t.source.display());
    let probe = kernel::socket(&from.ns, q.v6, q.proto).with_context(applied)?;
    let tuple = kernel::Tuple {
        src: from.ns.as_ref().map(|_| from.party.addr()),
        dst: to.party.addr(),
        proto,
        sport: probe.sport,
        dport: q.port,
    };
    let _lock = crate::state::acquire(crate::state::Access::Exclusive, true)?;
    let mut armed = Vec::new();
    let mut notes = Vec::new();
    let nodes = traced_nodes(t, f);
    // A masquerading router on the way changes the source address before the host sees the
    // packet: there, the probe is known by the rest of its 5-tuple (its source port is its
    // own; an ICMP probe, by being an echo request to the address).
    let routed = nodes.len() > 1;
    for ns in nodes {
        let tuple = kernel::Tuple {
            src: tuple.src.filter(|_| ns.is_some() || !routed),
            ..tuple
        };
        match kernel::arm(ns.clone(), &table, tuple) {
            Ok(a) => armed.push(a),
            Err(e) if ns.is_none() => return Err(e.context(applied())),
            Err(e) => notes.push(format!(
                "{}: not traced: {e:#}",
                ns.as_deref().unwrap_or("host")
            )),
        }
    }
    let wait = Duration::from_millis(1500);
    let sent = probe.send(&from.ns, SocketAddr::new(tuple.dst, q.port), wait);
    let until = Instant::now() + Duration::from_millis(300);
    let mut events: Vec<(String, Vec<Event>)> = Vec::new();
    let mut failed = None;
    for a in &mut armed {
        let at = a.ns.clone().unwrap_or_else(|| "host".into());
        match a.collect(until) {
            Ok(e) => {
                crate::output::verbose(format_args!("why: {} trace event(s) in {at}", e.len()));
                events.push((at, kernel::probes_only(&tuple, e)))
            }
            Err(e) => failed = Some(e),
        }
    }
    for a in &armed {
        a.disarm()?;
    }
    let answered = sent?;
    if let Some(e) = failed {
        return Err(e);
    }
    let mut k = show::read_trace(t, &events, f)?;
    k.answered = answered;
    // The trace only says what the chains it saw did; the probe's answer says whether the
    // packet got there (something before the trace chains or outside nf_tables may drop it).
    k.trace_dropped = !k.passed;
    k.passed = k.passed && answered;
    k.notes.extend(notes);
    Ok(k)
}

/// The events of the first packet traced in one namespace: up to its first drop, or to the
/// moment a trace chain meets a packet again where it met the first (the same hook, family and
/// input interface): the next packet of the connection, or the probe sent again. A packet
/// bridged twice through the host meets the trace chains twice, from two interfaces. Not by
/// trace id: the id is the packet's hash, and changes on the way (after routing).
fn first_packet(events: &[Event]) -> Vec<&Event> {
    let mut met: Vec<(u8, &str, Option<u32>)> = Vec::new();
    let mut out = Vec::new();
    for e in events {
        if kernel::is_trace_chain(&e.chain) && e.iif.is_some() {
            let at = (e.family, e.chain.as_str(), e.iif);
            if met.contains(&at) {
                break;
            }
            met.push(at);
        }
        out.push(e);
        if drops(e) {
            break;
        }
    }
    out
}

/// Whether an event ends the packet here (a drop, by rule or policy).
fn drops(e: &Event) -> bool {
    match e.kind {
        Kind::Policy => e.policy == Some(0) || e.verdict == Some(Verdict::Drop),
        _ => e.verdict.as_ref().is_some_and(Verdict::is_final),
    }
}
