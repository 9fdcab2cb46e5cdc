//! The checks of rate-limited links: a timed TCP transfer from the host to the namespace
//! through the bridge port's token bucket must arrive at the rate, within ±15 %, once the
//! bucket's burst has gone through.
//!
//! Every wait has a deadline and a stop (SIGINT, SIGTERM) ends the transfer: a firewall that
//! drops the connection, or a sink that never reads, costs a few seconds, never a hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::{Check, Origin, PROBE_PORT, Probe};
use crate::oracle::{Flow, Party, decide};
use crate::plumbing::netns;
use crate::topology::{Action, Endpoint, Topology};

/// How far the rate measured may be from the rate expected.
const TOLERANCE: f64 = 0.15;
/// How long the timed part of a transfer takes at the rate.
const SECONDS: u64 = 2;
/// The longest the burst may take to drain before the timed part starts: a bucket that takes
/// longer (a huge burst, or a `ceil` barely above the rate) is not checked.
const MAX_DRAIN: Duration = Duration::from_secs(5);
/// How long each blocking call waits before it looks at the clock and for a stop again.
const TICK: Duration = Duration::from_millis(200);

/// What one transfer sends and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub bps: u64,
    pub mtu: u32,
    /// The ports the sink may listen on, the first free one: ports the policy lets the host
    /// connect to (a server of `try` may hold one).
    pub ports: Vec<u16>,
    /// Payload bytes that may arrive before the rate holds: the burst, and what a peak rate
    /// lets through while the bucket drains. The timing starts past them.
    pub skip: u64,
}

/// Each interface with a `rate`, on a bridge with the host's address: the host sends to a
/// sink in the namespace, through the bridge port's tbf. Returns, for the interfaces that get
/// no check, why not.
pub(super) fn checks(out: &mut Vec<Check>, t: &Topology) -> Vec<String> {
    let mut skipped = Vec::new();
    for n in &t.namespaces {
        for i in &n.ifaces {
            let Some(r) = i.rate else { continue };
            let Some(gw) = t.bridge(&i.bridge).and_then(|b| b.gateway_addr(false)) else {
                continue;
            };
            let to = IpAddr::V4(i.address.ip());
            let what = format!("{} ({})", n.name, i.ifname);
            let ports = allowed_ports(t, gw, &n.name, to);
            if ports.is_empty() {
                skipped.push(format!(
                    "{what}: the rate is not checked: the policy does not let the host \
                     connect to it over TCP"
                ));
                continue;
            }
            let Some(skip) = drain_bytes(r.bps, r.ceil_bps, r.burst) else {
                skipped.push(format!(
                    "{what}: the rate is not checked: its burst takes longer than {} s to \
                     drain at the peak rate",
                    MAX_DRAIN.as_secs()
                ));
                continue;
            };
            out.push(Check {
                from: Origin::Host,
                to_label: what,
                to,
                probe: Probe::Rate(
                    n.name.clone(),
                    Plan {
                        bps: r.bps,
                        mtu: i.mtu,
                        ports,
                        skip,
                    },
                ),
                expect: true,
            });
        }
    }
    skipped
}

/// TCP ports the policy lets the host (at `gw`) open to namespace `ns` (at `to`): the probe
/// port and the next few, and the first port of each `[[allow]]` from the host.
fn allowed_ports(t: &Topology, gw: IpAddr, ns: &str, to: IpAddr) -> Vec<u16> {
    let ok = |port: u16| {
        decide(
            t,
            &Flow::new(Party::Host(gw), Party::Ns(ns.to_string(), to), 6, port),
        )
    };
    let named = t
        .policy
        .iter()
        .filter(|r| r.action == Action::Allow && r.from == Endpoint::Host)
        .flat_map(|r| r.ports.iter())
        .filter(|p| p.proto.is_none_or(|x| x == 6))
        .map(|p| p.ports.0.max(1));
    (PROBE_PORT..PROBE_PORT + 4)
        .chain(named)
        .filter(|p| ok(*p))
        .collect()
}

/// The payload bytes that pass before the bucket is empty: `burst` at line rate, or with a
/// peak rate `ceil` the burst plus what the rate refills while it drains (b·p/(p−r)). None
/// when that takes longer than [`MAX_DRAIN`].
fn drain_bytes(bps: u64, ceil: Option<u64>, burst: u32) -> Option<u64> {
    let burst = u64::from(burst);
    let Some(p) = ceil else {
        return Some(burst);
    };
    let r = bps.min(p);
    let secs = burst as f64 * 8.0 / (p - r).max(1) as f64;
    (secs <= MAX_DRAIN.as_secs_f64()).then(|| (secs * p as f64 / 8.0) as u64)
}

/// The payload rate a transfer can see at `bps` on a segment of MTU `mtu`: the bucket counts
/// whole frames (Ethernet 14 bytes, IPv4 20, TCP with timestamps 32 around each segment).
fn goodput(bps: u64, mtu: u32) -> f64 {
    let mtu = f64::from(mtu.max(100));
    bps as f64 * (mtu - 52.0) / (mtu + 14.0)
}

/// Whether the measured payload rate is the one expected: `n` bytes arrived past the drain
/// in `took`.
fn judge(plan: &Plan, n: u64, took: Duration) -> Result<()> {
    let want = goodput(plan.bps, plan.mtu);
    let seen = n as f64 * 8.0 / took.as_secs_f64().max(1e-3);
    if (seen - want).abs() <= want * TOLERANCE {
        return Ok(());
    }
    bail!(
        "past the burst ({} bytes), {n} bytes arrived at {:.2} Mbit/s: the link's rate allows \
         {:.2} Mbit/s of payload (±{:.0} %)",
        plan.skip,
        seen / 1e6,
        want / 1e6,
        TOLERANCE * 100.0
    )
}

/// An error if a stop was asked for or `deadline` passed.
fn in_time(deadline: Instant, what: &str) -> Result<()> {
    crate::signals::check()?;
    if Instant::now() >= deadline {
        bail!("timed out {what}");
    }
    Ok(())
}

/// Sends the burst and `SECONDS` at the rate from the host to a sink bound in namespace `ns`
/// at `to`: Ok(true) when the part past the burst arrived at the expected rate within the
/// tolerance, Ok(false) when nothing connected, Err with the rate measured otherwise.
pub(super) fn transfer(ns: &str, to: IpAddr, plan: &Plan) -> Result<bool> {
    let secs = plan.skip as f64 * 8.0 / plan.bps as f64 + SECONDS as f64;
    let deadline = Instant::now() + Duration::from_secs_f64(3.0 * secs + 5.0);
    // A socket keeps the namespace it was made in: bound there, used from here.
    let addrs: Vec<SocketAddr> = plan.ports.iter().map(|p| SocketAddr::new(to, *p)).collect();
    let sink = netns::run_in(ns, move || {
        TcpListener::bind(&addrs[..])
            .with_context(|| format!("cannot listen for the transfer at {to}, ports {addrs:?}"))
    })?;
    let addr = sink.local_addr()?;
    sink.set_nonblocking(true)?;
    // The kernel completes the handshake on the listener's backlog: no accept needed first.
    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return Ok(false);
    };
    let sunk = loop {
        match sink.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                in_time(deadline, "waiting for the sink to accept")?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("the sink cannot accept"),
        }
    };
    drop(sink);
    sunk.set_nonblocking(false)?;
    sunk.set_read_timeout(Some(TICK))?;
    let skip = plan.skip;
    let reader = std::thread::spawn(move || read_all(sunk, skip, deadline));
    c.set_write_timeout(Some(TICK))?;
    let total = plan.skip + plan.bps / 8 * SECONDS;
    let sent = write_all(&mut c, total, deadline);
    // Closing ends the sink's read (EOF), however the writing went.
    drop(c);
    let got = reader
        .join()
        .map_err(|_| anyhow!("the sink thread panicked"))?;
    sent?;
    let (all, n, took) = got?;
    if all < total {
        bail!("{all} of {total} bytes arrived");
    }
    judge(plan, n, took).map(|()| true)
}

/// Writes `total` bytes, a tick at a time, until done, the deadline or a stop.
fn write_all(c: &mut TcpStream, total: u64, deadline: Instant) -> Result<()> {
    let chunk = vec![0u8; 1 << 16];
    let mut left = total;
    while left > 0 {
        in_time(deadline, "sending")?;
        let n = left.min(chunk.len() as u64) as usize;
        match c.write(&chunk[..n]) {
            Ok(0) => bail!("the sink closed the connection"),
            Ok(w) => left -= w as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot send"),
        }
    }
    Ok(())
}

/// Reads until EOF, the deadline or a stop: the bytes that arrived, those past the first
/// `skip`, and how long the latter took.
fn read_all(mut c: TcpStream, skip: u64, deadline: Instant) -> Result<(u64, u64, Duration)> {
    let (mut n, mut buf, mut past) = (0u64, vec![0u8; 1 << 16], None);
    loop {
        in_time(deadline, "receiving")?;
        let got = match c.read(&mut buf) {
            Ok(0) => break,
            Ok(g) => g as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("the sink cannot read"),
        };
        n += got;
        if past.is_none() && n >= skip {
            past = Some((n, Instant::now()));
        }
    }
    let Some((n0, t0)) = past else {
        return Ok((n, 0, Duration::ZERO));
    };
    Ok((n, n - n0, t0.elapsed()))
}

#[cfg(test)]
mod tests;
