//! The checks of rate-limited links: a timed TCP transfer from the host to the namespace
//! through the bridge port's token bucket must arrive at the rate, within ±15 %.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::{Check, Origin, Probe};
use crate::plumbing::netns;
use crate::topology::Topology;

/// How far the rate measured may be from the rate expected.
const TOLERANCE: f64 = 0.15;
/// How long a transfer takes at the rate.
const SECONDS: u64 = 2;

/// Each interface with a `rate`, on a bridge with the host's address: the host sends to a
/// sink in the namespace, through the bridge port's tbf.
pub(super) fn checks(out: &mut Vec<Check>, t: &Topology) {
    for n in &t.namespaces {
        for i in &n.ifaces {
            let Some(r) = i.rate else { continue };
            if t.bridge(&i.bridge)
                .and_then(|b| b.gateway_addr(false))
                .is_none()
            {
                continue;
            }
            out.push(Check {
                from: Origin::Host,
                to_label: format!("{} ({})", n.name, i.ifname),
                to: IpAddr::V4(i.address.ip()),
                probe: Probe::Rate {
                    ns: n.name.clone(),
                    bps: r.bps,
                    mtu: i.mtu,
                },
                expect: true,
            });
        }
    }
}

/// The payload rate a transfer can see at `bps` on a segment of MTU `mtu`: the bucket counts
/// whole frames (Ethernet 14 bytes, IPv4 20, TCP with timestamps 32 around each segment).
fn goodput(bps: u64, mtu: u32) -> f64 {
    let mtu = f64::from(mtu.max(100));
    bps as f64 * (mtu - 52.0) / (mtu + 14.0)
}

/// Sends `SECONDS` at the rate from the host to a sink bound in namespace `ns` at `to`: Ok
/// when the sink saw the expected payload rate within the tolerance, Ok(false) when nothing
/// connected, Err with the rate measured otherwise.
pub(super) fn transfer(ns: &str, to: IpAddr, bps: u64, mtu: u32) -> Result<bool> {
    // A socket keeps the namespace it was made in: bound there, used from here.
    let sink = netns::run_in(ns, move || {
        TcpListener::bind(SocketAddr::new(to, 0)).context("cannot listen for the transfer")
    })?;
    let port = sink.local_addr()?.port();
    let bytes = (bps / 8 * SECONDS).max(1 << 16);
    let wait = Duration::from_secs(3 * SECONDS + 5);
    let reader = std::thread::spawn(move || -> Result<(u64, Duration)> {
        let (mut c, _) = sink.accept()?;
        c.set_read_timeout(Some(wait))?;
        let (mut n, mut buf, mut t0) = (0u64, vec![0u8; 1 << 16], None);
        loop {
            let got = c.read(&mut buf)?;
            if got == 0 {
                break;
            }
            t0.get_or_insert_with(Instant::now);
            n += got as u64;
        }
        Ok((n, t0.map_or(Duration::ZERO, |t| t.elapsed())))
    });
    let Ok(mut c) = TcpStream::connect_timeout(&SocketAddr::new(to, port), Duration::from_secs(2))
    else {
        // Nothing connected: unblock the sink, and say blocked.
        let _ = TcpStream::connect_timeout(&SocketAddr::new(to, port), Duration::from_millis(100));
        let _ = reader.join();
        return Ok(false);
    };
    c.set_write_timeout(Some(wait))?;
    let chunk = vec![0u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    c.shutdown(std::net::Shutdown::Write)?;
    let (n, took) = reader
        .join()
        .map_err(|_| anyhow!("the sink thread panicked"))??;
    let want = goodput(bps, mtu);
    let seen = n as f64 * 8.0 / took.as_secs_f64().max(1e-3);
    if n == bytes && (seen - want).abs() <= want * TOLERANCE {
        return Ok(true);
    }
    Err(anyhow!(
        "{n} of {bytes} bytes arrived at {:.2} Mbit/s: the link's rate allows {:.2} Mbit/s of \
         payload (±{:.0} %)",
        seen / 1e6,
        want / 1e6,
        TOLERANCE * 100.0
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_carries_less_than_the_rate() {
        let g = super::goodput(10_000_000, 1500);
        assert!((g - 9_564_068.0).abs() < 1.0, "{g}");
    }
}
