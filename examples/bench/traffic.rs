//! The data-plane trials: TCP load between the sandbox's namespaces, in-process, through NAT,
//! through a published port and through the policy's allow set.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::baselines::CLASSIC_RULES;
use crate::run::{Res, nsfw_bin, sh, timed};
use crate::tables::POLICY_ENTRIES;
use crate::topologies::{
    POLICY_FEW, PROBE_HOST_PORT, PROBE_NS, PROBE_NS_PORT, Ports, SERVER, UPLINK,
    policy_sparse_topology, publish_topology, topology,
};

/// Runs `f` on a thread inside the named namespace.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Res<std::thread::JoinHandle<T>> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    }))
}

/// The simulated internet: namespace `wan` behind the sandbox host's `uplink`
/// (198.51.100.1/24; wan is 198.51.100.2 and 203.0.113.10), the host's default route.
pub fn make_wan() -> Res<()> {
    sh("ip link set lo up
        ip netns add wan
        ip link add uplink type veth peer name eth0 netns wan
        ip addr add 198.51.100.1/24 dev uplink; ip link set uplink up
        ip -n wan link set lo up; ip -n wan link set eth0 up
        ip -n wan addr add 198.51.100.2/24 dev eth0; ip -n wan addr add 203.0.113.10/32 dev lo
        ip route add default via 198.51.100.2")
}

/// A server on `at` inside `ns`, a thread per connection: 'B' → read everything; 'C' → answer
/// one byte and close.
pub fn serve(ns: &str, at: SocketAddr) -> Res<()> {
    in_ns(ns, move || {
        let l = TcpListener::bind(at).expect("bind");
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut k = [0u8; 1];
                if s.read_exact(&mut k).is_err() {
                    return;
                }
                if k[0] == b'B' {
                    let mut buf = vec![0u8; 1 << 20];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                } else {
                    let _ = s.write_all(b"k");
                }
            });
        }
    })?;
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

/// Bulk throughput (Gbit/s) and connection rate (connections/s) from namespace `from` to
/// `to`, for `secs` each.
pub fn measure(from: &str, to: SocketAddr, secs: f64) -> Res<(f64, f64)> {
    let dur = Duration::from_secs_f64(secs);
    let tput = in_ns(from, move || -> Option<f64> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        s.write_all(b"B").ok()?;
        let buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        let mut sent = 0u64;
        while t.elapsed() < dur {
            sent += s.write(&buf).ok()? as u64;
        }
        Some(sent as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9)
    })?
    .join()
    .map_err(|_| "client panicked")?
    .ok_or("throughput client failed")?;
    let rate = in_ns(from, move || -> Option<f64> {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < dur {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
            s.write_all(b"C").ok()?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).ok()?;
            // RST instead of TIME_WAIT: the client's ports would run out first otherwise.
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            n += 1;
        }
        Some(n as f64 / t.elapsed().as_secs_f64())
    })?
    .join()
    .map_err(|_| "client panicked")?
    .ok_or("connection-rate client failed")?;
    Ok((tput, rate))
}

/// Measures A B B A A B B A after a discarded warm-up, calling `switch(side)` whenever the
/// side changes (the trial starts on side A), and prints every measurement as
/// `{prefix}_tput_{name}` and `{prefix}_conn_{name}` lines; the outer run takes the medians over
/// all trials. Alternating means neither side always goes first; a two-core machine makes
/// single figures noisy (sender, receiver and softirq share the cores), hence the repetitions.
pub fn alternate(
    prefix: &str,
    names: [&str; 2],
    from: &str,
    to: SocketAddr,
    mut switch: impl FnMut(bool) -> Res<()>,
) -> Res<()> {
    let secs = 1.5;
    // A first measurement warms up (conntrack, socket buffers) and is always low: discarded.
    measure(from, to, secs)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut on_a = true;
    for side in [true, false, false, true, true, false, false, true] {
        if side != on_a {
            switch(side)?;
            on_a = side;
        }
        let m = measure(from, to, secs)?;
        let name = if side { names[0] } else { names[1] };
        eprintln!("{prefix} {name}: {:.2} Gbit/s, {:.0} conn/s", m.0, m.1);
        if side { a.push(m) } else { b.push(m) }
    }
    for (name, ms) in [(names[0], a), (names[1], b)] {
        for (t, c) in ms {
            println!("{prefix}_tput_{name} {t:.3} 0");
            println!("{prefix}_conn_{name} {c:.1} 0");
        }
    }
    Ok(())
}

/// ns0x0 → the server in `wan` through NAT: nsfw's ruleset against the classic iptables rules,
/// same plumbing throughout.
pub fn dataplane(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("dp.toml");
    std::fs::write(&f, topology(1, 2))?;
    make_wan()?;
    timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    serve("wan", SocketAddr::from(SERVER))?;
    let to_iptables = format!("nft delete table inet nsfw_bench\n{CLASSIC_RULES}");
    alternate(
        "dp",
        ["nsfw", "iptables"],
        "ns0x0",
        SocketAddr::from(SERVER),
        |nsfw_side| {
            if nsfw_side {
                sh("iptables -F; iptables -t nat -F")?;
                timed(Command::new(&nsfw).arg("apply").arg(&f))?;
            } else {
                sh(&to_iptables)?;
            }
            Ok(())
        },
    )
}

/// `wan` → the host's uplink address, published port → DNAT → a server in ns42: with the
/// topology publishing 10,000 ports (the probed one among them), and publishing that one
/// only. Same namespaces and bridge on both sides; switching is an apply that changes only
/// the map's elements.
pub fn publish_dataplane(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let all = dir.join("pub.toml");
    let one = dir.join("pub-one.toml");
    std::fs::write(&all, publish_topology(Ports::All { moved: false }))?;
    std::fs::write(&one, publish_topology(Ports::One))?;
    make_wan()?;
    timed(Command::new(&nsfw).arg("apply").arg(&all))?;
    serve(
        &format!("ns{PROBE_NS}"),
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, PROBE_NS_PORT)),
    )?;
    alternate(
        "pubdp",
        ["all", "one"],
        "wan",
        SocketAddr::from((UPLINK, PROBE_HOST_PORT)),
        |all_side| {
            let file = if all_side { &all } else { &one };
            timed(Command::new(&nsfw).arg("apply").arg(file))?;
            Ok(())
        },
    )
}

/// ns0 → the server in `wan` on an egress-denied bridge, let out by the first `[[allow]]`
/// entry: with 10,000 entries against 10. Same namespaces, bridge and rules on both sides;
/// switching is an apply that changes only the allow set's elements.
pub fn policy_dataplane(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let many = dir.join("policy-many.toml");
    let few = dir.join("policy-few.toml");
    // No two entries neighbours, so the set holds every entry as an element (see tables.rs).
    std::fs::write(&many, policy_sparse_topology(POLICY_ENTRIES))?;
    std::fs::write(&few, policy_sparse_topology(POLICY_FEW))?;
    make_wan()?;
    timed(Command::new(&nsfw).arg("apply").arg(&many))?;
    serve("wan", SocketAddr::from(SERVER))?;
    alternate(
        "poldp",
        ["many", "few"],
        "ns0",
        SocketAddr::from(SERVER),
        |many_side| {
            let file = if many_side { &many } else { &few };
            timed(Command::new(&nsfw).arg("apply").arg(file))?;
            Ok(())
        },
    )
}
