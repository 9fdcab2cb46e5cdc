//! The checks behind `nsfw try` and `nsfw verify`: each one a real connection attempt (ICMP
//! echo, TCP, UDP) from a namespace or from the host, with the verdict the file implies, and
//! where it matters the source address the other end saw.

mod checks;
mod egress;
mod latency;
mod macvlan;
mod mtu;
mod net;
mod rate;
mod vxlan;

use std::fmt;
use std::net::IpAddr;

use anyhow::{Result, anyhow};

pub(crate) use checks::{Side, World, checks, publish_checks, publish_servers, target_checks};
pub(crate) use egress::{default_gateway, gateway_answers, gateway_checks};
pub(crate) use macvlan::uplink_checks;
pub(crate) use mtu::full_size_checks;
pub(crate) use net::{serve_listener, serve_source_echo};
pub(crate) use vxlan::{duplicates, remote_checks};

use crate::plumbing::netns;
use crate::topology::Proto;

/// The port probed where any port will do: a refused connection counts as reached (the rate
/// check's sink listens there).
const PROBE_PORT: u16 = 9000;

/// Where a probe starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The host's own namespace (the caller's).
    Host,
    Ns(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Host => write!(f, "host"),
            Origin::Ns(n) => write!(f, "{n}"),
        }
    }
}

/// How a check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// ICMP echo.
    Ping,
    /// A TCP connection: reached when it connects or is refused, blocked when nothing answers.
    Tcp(u16),
    /// A TCP connection to a service that should accept it (`[verify] targets`): reached only
    /// when it connects (a refusal may be a firewall's reject on the way).
    Connect(u16),
    /// ICMP echo whose fastest round trip must take at least this long: an impaired link
    /// (`latency`) delays every packet it sends.
    Slow(std::time::Duration),
    /// A timed TCP transfer from the host to a sink in namespace `ns`, through its bridge
    /// port's rate limit: the payload must arrive at the rate (`bps`, on a segment of MTU
    /// `mtu`) within ±15 %, once its burst has gone through.
    Rate(String, rate::Plan),
    /// ICMP echo filling a packet of this MTU, unfragmentable: every hop of the way takes
    /// full-size frames (one MTU per segment).
    Full(u32),
    /// A connection (TCP) or datagram (UDP) to a server that answers with the source address
    /// it saw: reaching it is not enough, the answer must be `want` when given.
    Seen {
        proto: Proto,
        port: u16,
        want: Option<IpAddr>,
    },
}

impl Probe {
    /// The PORT column: `icmp`, `tcp/8080`.
    pub(crate) fn port(&self) -> String {
        match self {
            Probe::Ping => "icmp".into(),
            Probe::Slow(d) => format!("icmp rtt>={}ms", d.as_millis()),
            Probe::Full(mtu) => format!("icmp df/{mtu}"),
            Probe::Rate(_, p) => format!("tcp rate {}", crate::netem::fmt_rate(p.bps)),
            Probe::Tcp(p) | Probe::Connect(p) => format!("tcp/{p}"),
            Probe::Seen { proto, port, .. } => format!("{proto}/{port}"),
        }
    }
}

/// One check: can `from` reach `to`, and should it?
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub from: Origin,
    /// What is probed, for the table (`gateway br0`, `ns2`, ...).
    pub to_label: String,
    pub to: IpAddr,
    pub probe: Probe,
    pub expect: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub check: Check,
    /// Ok(reached) or the reason the probe could not run.
    pub got: std::result::Result<bool, String>,
}

impl Outcome {
    pub(crate) fn passed(&self) -> bool {
        matches!(self.got, Ok(r) if r == self.check.expect)
    }
}

/// Runs the checks, a bounded number at a time, and returns their outcomes in their order.
/// Checks from the namespaces in `routers` run last: a router's own probe of a neighbour
/// leaves an entry in its neighbour cache, and a forwarded check after it would pass on that
/// entry where a cold router (one that cannot solicit for forwarded packets) would fail. So
/// every forwarded path is tried before the router has talked to anyone itself. The rate
/// transfers run after everything else: they fill the rate-limited queues, which would delay
/// the other checks' packets past their timeouts.
pub(crate) fn run(checks: &[Check], routers: &std::collections::BTreeSet<String>) -> Vec<Outcome> {
    let mut out: Vec<(usize, Outcome)> = Vec::with_capacity(checks.len());
    for phase in phases(checks, routers) {
        let (ix, cs): (Vec<usize>, Vec<Check>) =
            phase.into_iter().map(|(i, c)| (i, c.clone())).unzip();
        out.extend(ix.into_iter().zip(run_all(&cs)));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, o)| o).collect()
}

/// The checks, by index, in the order they run: the others, the routers' own, the rates.
fn phases<'a>(
    checks: &'a [Check],
    routers: &std::collections::BTreeSet<String>,
) -> [Vec<(usize, &'a Check)>; 3] {
    let mut phases: [Vec<(usize, &Check)>; 3] = Default::default();
    for (i, c) in checks.iter().enumerate() {
        let p = match (&c.from, &c.probe) {
            (_, Probe::Rate(..)) => 2,
            (Origin::Ns(n), _) if routers.contains(n) => 1,
            _ => 0,
        };
        phases[p].push((i, c));
    }
    phases
}

fn run_all(checks: &[Check]) -> Vec<Outcome> {
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

/// What the probe does, on the thread that runs it.
fn attempt(to: IpAddr, probe: Probe) -> Result<bool> {
    match probe {
        // Three tries, a second each.
        Probe::Ping => net::ping(to, 3, std::time::Duration::from_secs(1)),
        Probe::Full(mtu) => net::ping_full(to, mtu, 3, std::time::Duration::from_secs(1)),
        Probe::Rate(ns, plan) => rate::transfer(&ns, to, &plan),
        Probe::Slow(at_least) => {
            match net::fastest_rtt(to, 3, at_least + std::time::Duration::from_secs(1))? {
                None => Ok(false),
                Some(rtt) if rtt >= at_least => Ok(true),
                Some(rtt) => Err(anyhow!(
                    "answered in {:.1} ms: the link is not delayed by {} ms",
                    rtt.as_secs_f64() * 1000.0,
                    at_least.as_millis()
                )),
            }
        }
        // Refused counts as reached: the packet got there (nothing listens on the port).
        Probe::Tcp(port) => Ok(!matches!(net::tcp_try(to, port)?, net::Tcp::Nothing)),
        Probe::Connect(port) => Ok(matches!(net::tcp_try(to, port)?, net::Tcp::Answered(_))),
        Probe::Seen { proto, port, want } => {
            let answer = match proto {
                Proto::Tcp => net::tcp(to, port)?,
                Proto::Udp => net::udp(to, port)?,
            };
            match (answer, want) {
                (None, _) => Ok(false),
                (Some(_), None) => Ok(true),
                (Some(seen), Some(want)) if seen.trim() == want.to_string() => Ok(true),
                (Some(seen), Some(want)) => Err(anyhow!(
                    "reached, but the server saw source {}, not {want}",
                    seen.trim()
                )),
            }
        }
    }
}

/// One echo request to `to` from here, and whether its reply came within `wait` (`nsfw why`'s
/// one packet).
pub(crate) fn one_echo(to: IpAddr, wait: std::time::Duration) -> Result<bool> {
    net::ping(to, 1, wait)
}

/// Runs one check from where it starts.
pub(crate) fn probe(c: &Check) -> Result<bool> {
    let (to, probe) = (c.to, c.probe.clone());
    match &c.from {
        Origin::Host => attempt(to, probe),
        Origin::Ns(ns) => netns::run_in(ns, move || attempt(to, probe)),
    }
}

/// The results in the JSON schema of docs/json.md.
pub(crate) fn to_json(outcomes: &[Outcome]) -> serde_json::Value {
    let checks: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let want = match &o.check.probe {
                Probe::Seen { want, .. } => want.map(|w| w.to_string()),
                _ => None,
            };
            serde_json::json!({
                "from": o.check.from.to_string(),
                "to": o.check.to_label,
                "address": o.check.to.to_string(),
                "family": if o.check.to.is_ipv6() { 6 } else { 4 },
                "port": o.check.probe.port(),
                "expected": if o.check.expect { "reach" } else { "blocked" },
                "seen_as": want,
                "got": match &o.got { Ok(true) => "reach", Ok(false) => "blocked", Err(_) => "error" },
                "error": o.got.as_ref().err(),
                "ok": o.passed(),
            })
        })
        .collect();
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    serde_json::json!({"schema": 1, "checks": checks, "passed": passed, "total": outcomes.len()})
}

/// The results as a table: from, to, family, port, expected, got.
pub(crate) struct Table<'a>(pub &'a [Outcome]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |b: bool| if b { "reach" } else { "blocked" };
        let rows: Vec<[String; 7]> = self
            .0
            .iter()
            .map(|o| {
                let expected = match (&o.check.probe, o.check.expect) {
                    (Probe::Seen { want: Some(w), .. }, true) => format!("reach as {w}"),
                    (_, e) => word(e).to_string(),
                };
                [
                    o.check.from.to_string(),
                    format!("{} {}", o.check.to_label, o.check.to),
                    if o.check.to.is_ipv6() { "v6" } else { "v4" }.to_string(),
                    o.check.probe.port(),
                    expected,
                    match &o.got {
                        Ok(r) => word(*r).to_string(),
                        Err(e) => format!("error: {e}"),
                    },
                    if o.passed() { "ok" } else { "FAIL" }.to_string(),
                ]
            })
            .collect();
        let head = ["FROM", "TO", "IP", "PORT", "EXPECTED", "GOT", ""];
        let mut w = [0usize; 7];
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
            let mut s = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 < r.len() {
                    s.push_str(&format!("{c:<width$}  ", width = w[i]));
                } else {
                    s.push_str(c);
                }
            }
            writeln!(f, "{}", s.trim_end())
        };
        line(f, &head)?;
        for r in &rows {
            line(f, &r.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let passed = self.0.iter().filter(|o| o.passed()).count();
        write!(f, "{passed}/{} checks as expected", self.0.len())
    }
}
