//! nsfw's benchmarks: nsfw against the hand-written way, in throwaway sandboxes.
//!
//!     cargo run --release --example bench -- [--runs 5] [--out docs/benchmarks.md]
//!         [--baseline OLD_NSFW] [--sizes 2,20,100,200]
//!         [--only apply,scale,dataplane,publish,publish-dataplane]
//!
//! As root. Every trial runs in a fresh sandbox (`nsfw sandbox`), so nothing touches the host
//! and no trial inherits another's state. Traffic goes only between the sandbox's namespaces
//! (the data-plane trials' "internet" is a namespace on 198.51.100.0/24 and 203.0.113.0/24).
//!
//! For N namespaces on one bridge with masquerade and the stateful forward rules it times:
//!   a. the classic script: one `ip`/`iptables`/`sysctl` process per step (netns-lab-up.sh),
//!   b. the fastest stock-tool path: one `ip -batch` for the host, one `ip -n NS -batch` per
//!      namespace, one `nft -f`,
//!   c. nsfw apply (cold), apply with nothing to do, diff, flush — and with `--baseline`, cold
//!      and no-op apply by that older binary, alternating A B B A with nsfw's,
//!   d. the kernel floor estimate: the host-side `ip -batch` of (b) alone;
//! then the scale trial (4 bridges of N/4 namespaces), the data-plane trial (throughput and
//! connection rate through NAT under nsfw's ruleset and under the classic iptables rules), and
//! with 100 namespaces publishing 10,000 ports: the table loaded by nsfw against `nft -f` of the
//! same ruleset, one port changed, and the data plane through a published port with 10,000
//! ports published against 1.
//! Nothing here asserts a timing: it prints numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn nsfw_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/release/examples/bench → target/release/nsfw
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("nsfw"))
        .expect("nsfw binary")
}

/// Runs a command to completion; returns (wall ms, peak RSS KiB).
fn timed(cmd: &mut Command) -> Res<(f64, u64)> {
    timed_stderr(cmd).map(|(ms, rss, _)| (ms, rss))
}

/// `timed`, also returning what the command wrote on stderr (it must be small: it is read
/// only once the command has ended).
fn timed_stderr(cmd: &mut Command) -> Res<(f64, u64, String)> {
    let t = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; `child` is not waited on elsewhere.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if r < 0 {
        return Err("wait4 failed".into());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        let _ = e.read_to_string(&mut err);
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{cmd:?} failed: {err}").into());
    }
    Ok((ms, ru.ru_maxrss as u64, err))
}

fn sh(script: &str) -> Res<()> {
    let o = Command::new("bash").args(["-c", script]).output()?;
    if !o.status.success() {
        return Err(format!("`{script}` failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(())
}

/// The topology file for `bridges` × `per` namespaces.
fn topology(bridges: usize, per: usize) -> String {
    let mut s = String::from("name = \"bench\"\n");
    for b in 0..bridges {
        writeln!(
            s,
            "[bridges.br{b}]\naddress = \"10.{}.0.1/24\"\nmasquerade = true",
            100 + b
        )
        .ok();
    }
    for b in 0..bridges {
        for i in 0..per {
            writeln!(
                s,
                "[namespaces.ns{b}x{i}]\nbridge = \"br{b}\"\naddress = \"10.{}.{}.{}/24\"",
                100 + b,
                0,
                i + 2
            )
            .ok();
        }
    }
    s
}

/// The published-port topology: `PUB_NS` namespaces on one bridge.
const PUB_NS: usize = 100;
/// Ports each namespace publishes (host ports `20000 + 100 i ..`, namespace ports 8000..8099).
const PUB_PER: u16 = 100;
/// The namespace and host port the data-plane trial connects through, and where it lands.
const PROBE_NS: usize = 42;
const PROBE_HOST_PORT: u16 = 20000 + PROBE_NS as u16 * PUB_PER + 42;
const PROBE_NS_PORT: u16 = 8042;
/// What the published-port topology publishes.
#[derive(Clone, Copy)]
enum Ports {
    /// `PUB_NS × PUB_PER` ports; `moved`: ns0's first port on host port 30000 instead of 20000.
    All { moved: bool },
    /// Only the probed port.
    One,
}

/// 100 namespaces on one /22, publishing 10,000 ports or just the probed one. ns0's first
/// port is an entry of its own, so that one host port can change by editing one entry.
fn publish_topology(ports: Ports) -> String {
    let mut s = String::from(
        "name = \"bench\"\n[bridges.br0]\naddress = \"10.200.0.1/22\"\nmasquerade = true\n",
    );
    for i in 0..PUB_NS {
        let a = i + 2;
        writeln!(
            s,
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.200.{}.{}/22\"",
            a / 256,
            a % 256
        )
        .ok();
        let h = 20000 + i as u16 * PUB_PER;
        let (hl, nl) = (h + PUB_PER - 1, 8000 + PUB_PER - 1);
        let publish = match ports {
            Ports::All { moved } if i == 0 => {
                let first = if moved { 30000 } else { h };
                format!("[\"{first}:8000\", \"{}-{hl}:8001-{nl}\"]", h + 1)
            }
            Ports::All { .. } => format!("[\"{h}-{hl}:8000-{nl}\"]"),
            Ports::One if i == PROBE_NS => format!("[\"{PROBE_HOST_PORT}:{PROBE_NS_PORT}\"]"),
            Ports::One => continue,
        };
        writeln!(s, "publish = {publish}").ok();
    }
    s
}

/// The classic script, generalised to N namespaces on br0: one process per step.
fn classic_script(n: usize) -> String {
    let mut s = String::from("set -euo pipefail\n");
    for i in 0..n {
        writeln!(s, "ip netns add ns{i}").ok();
    }
    s.push_str(
        "ip link add br0 type bridge\nip addr add 10.100.0.1/24 dev br0\nip link set br0 up\n",
    );
    for i in 0..n {
        writeln!(
            s,
            "ip link add veth-ns{i} type veth peer name eth0-ns{i}\nip link set eth0-ns{i} netns ns{i}\nip link set veth-ns{i} master br0\nip link set veth-ns{i} up"
        )
        .ok();
    }
    for i in 0..n {
        let a = i + 2;
        writeln!(
            s,
            "ip netns exec ns{i} ip addr add 10.100.0.{a}/24 dev eth0-ns{i}\nip netns exec ns{i} ip link set eth0-ns{i} up\nip netns exec ns{i} ip link set lo up\nip netns exec ns{i} ip route add default via 10.100.0.1"
        )
        .ok();
    }
    s.push_str(CLASSIC_RULES);
    s
}

/// The guide's NAT line plus its "production" stateful FORWARD rules, scoped to the bridge.
const CLASSIC_RULES: &str = "sysctl -qw net.ipv4.ip_forward=1
iptables -t nat -A POSTROUTING -s 10.100.0.0/24 ! -o br0 -j MASQUERADE
iptables -A FORWARD -i br0 -m conntrack --ctstate INVALID -j DROP
iptables -A FORWARD -i br0 -j ACCEPT
iptables -A FORWARD -o br0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -o br0 -j DROP
";

/// The fastest stock-tool path: batch files for ip and nft.
fn batch_files(dir: &Path, n: usize) -> Res<()> {
    let mut host = String::new();
    for i in 0..n {
        writeln!(host, "netns add ns{i}").ok();
    }
    host.push_str("link add br0 type bridge\naddr add 10.100.0.1/24 dev br0\nlink set br0 up\n");
    for i in 0..n {
        writeln!(
            host,
            "link add veth-ns{i} master br0 up type veth peer name eth0 netns ns{i}"
        )
        .ok();
    }
    std::fs::write(dir.join("host.batch"), host)?;
    for i in 0..n {
        let a = i + 2;
        std::fs::write(
            dir.join(format!("ns{i}.batch")),
            format!(
                "addr add 10.100.0.{a}/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 10.100.0.1\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("rules.nft"),
        "table inet lab {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname \"br0\" jump from_br0
    oifname \"br0\" jump to_br0
  }
  chain from_br0 {
    ct state invalid drop
    oifname \"br0\" accept
    accept
  }
  chain to_br0 {
    ct state established,related accept
    drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.100.0.0/24 oifname != \"br0\" masquerade
  }
}
",
    )?;
    Ok(())
}

/// One trial, inside a fresh sandbox: prints `label value rss_kib` lines. `bin` is the
/// baseline binary of the `base` trial.
fn inner(kind: &str, n: usize, dir: &Path, bin: Option<&Path>) -> Res<()> {
    let nsfw = nsfw_bin();
    let out = |label: &str, (ms, rss): (f64, u64)| println!("{label} {ms:.3} {rss}");
    match kind {
        "classic" => {
            let f = dir.join("classic.sh");
            std::fs::write(&f, classic_script(n))?;
            out("classic", timed(Command::new("bash").arg(&f))?);
        }
        "batch" => {
            batch_files(dir, n)?;
            let t = Instant::now();
            let (floor, _) = timed(Command::new("ip").arg("-batch").arg(dir.join("host.batch")))?;
            for i in 0..n {
                timed(
                    Command::new("ip")
                        .args(["-n", &format!("ns{i}"), "-batch"])
                        .arg(dir.join(format!("ns{i}.batch"))),
                )?;
            }
            timed(Command::new("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
            timed(Command::new("nft").arg("-f").arg(dir.join("rules.nft")))?;
            out("batch", (t.elapsed().as_secs_f64() * 1000.0, 0));
            out("floor", (floor, 0));
        }
        "nsfw" | "scale" => {
            let (b, per) = if kind == "scale" { (4, n / 4) } else { (1, n) };
            let f = dir.join("bench.toml");
            std::fs::write(&f, topology(b, per))?;
            out(
                "apply_cold",
                timed(Command::new(&nsfw).arg("apply").arg(&f))?,
            );
            if kind == "nsfw" {
                out(
                    "apply_noop",
                    timed(Command::new(&nsfw).arg("apply").arg(&f))?,
                );
                out("diff", timed(Command::new(&nsfw).arg("diff").arg(&f))?);
                out("flush", timed(Command::new(&nsfw).arg("flush").arg(&f))?);
            }
        }
        "base" => {
            // The same file and the same two steps as the `nsfw` trial, by the older binary.
            let bin = bin.ok_or("the base trial needs the baseline binary")?;
            let f = dir.join("bench.toml");
            std::fs::write(&f, topology(1, n))?;
            out("base_cold", timed(Command::new(bin).arg("apply").arg(&f))?);
            out("base_noop", timed(Command::new(bin).arg("apply").arg(&f))?);
        }
        "publish" => publish(dir)?,
        "dataplane" => dataplane(dir)?,
        "pubdp" => publish_dataplane(dir)?,
        _ => return Err(format!("unknown trial {kind}").into()),
    }
    Ok(())
}

/// 10,000 published ports: full cold apply; the table alone by nsfw and by `nft -f` (A B B A);
/// no-op apply; one host port changed (four times, there and back).
fn publish(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("pub.toml");
    let moved = dir.join("pub-moved.toml");
    let nft_file = dir.join("pub.nft");
    std::fs::write(&f, publish_topology(Ports::All { moved: false }))?;
    std::fs::write(&moved, publish_topology(Ports::All { moved: true }))?;
    // Exactly the ruleset apply loads, in nft syntax: what `nft -f` is given.
    let show = Command::new(&nsfw).arg("show").arg(&f).output()?;
    if !show.status.success() {
        return Err(format!("nsfw show: {}", String::from_utf8_lossy(&show.stderr)).into());
    }
    std::fs::write(&nft_file, &show.stdout)?;

    let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    println!("pub_cold {ms:.3} {rss}");
    let drop_table = "nft delete table inet nsfw_bench";
    let mut checked = false;
    for by_nsfw in [true, false, false, true] {
        sh(drop_table)?;
        if by_nsfw {
            let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
            println!("pub_table_nsfw {ms:.3} {rss}");
        } else {
            let (ms, rss) = timed(Command::new("nft").arg("-f").arg(&nft_file))?;
            println!("pub_table_nft {ms:.3} {rss}");
            if !checked {
                // Both sides must leave the same kernel state: nsfw finds nothing to do after
                // nft -f (exit 0; 2 would mean changes pending).
                let st = Command::new(&nsfw)
                    .arg("diff")
                    .arg(&f)
                    .stdout(Stdio::null())
                    .status()?;
                if !st.success() {
                    return Err("after nft -f of nsfw show's output, nsfw diff is not clean".into());
                }
                checked = true;
            }
        }
    }
    // The loop ends on nsfw's side: the topology is applied.
    let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    println!("pub_noop {ms:.3} {rss}");
    for file in [&moved, &f, &moved, &f] {
        let (ms, rss, err) = timed_stderr(Command::new(&nsfw).args(["apply", "-v"]).arg(file))?;
        println!("pub_change {ms:.3} {rss}");
        // `timing: nft batch of N messages (B bytes): T`
        let (msgs, bytes) = err
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("timing: nft batch of ")?;
                let (m, rest) = rest.split_once(" messages (")?;
                let (b, _) = rest.split_once(" bytes)")?;
                Some((m.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            })
            .ok_or("apply -v printed no nft batch line")?;
        println!("pub_change_msgs {msgs} 0");
        println!("pub_change_bytes {bytes} 0");
    }
    Ok(())
}

/// Runs `f` on a thread inside the named namespace.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Res<std::thread::JoinHandle<T>> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    }))
}

/// The data-plane trial's server in `wan`.
const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 10), 5201);
/// The sandbox host's uplink address, where `wan` reaches published ports.
const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The simulated internet: namespace `wan` behind the sandbox host's `uplink`
/// (198.51.100.1/24; wan is 198.51.100.2 and 203.0.113.10), the host's default route.
fn make_wan() -> Res<()> {
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
fn serve(ns: &str, at: SocketAddr) -> Res<()> {
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
fn measure(from: &str, to: SocketAddr, secs: f64) -> Res<(f64, f64)> {
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
fn alternate(
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
fn dataplane(dir: &Path) -> Res<()> {
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
fn publish_dataplane(dir: &Path) -> Res<()> {
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

/// Runs one trial in a fresh sandbox and collects its numbers.
fn trial(kind: &str, n: usize, bin: Option<&Path>) -> Res<Vec<(String, (f64, u64))>> {
    let n = if kind == "dataplane" { 2 } else { n };
    let dir = std::env::temp_dir().join(format!("nsfw-bench-{}-{kind}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(nsfw_bin());
    cmd.arg("sandbox")
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(["--inner", kind, &n.to_string()])
        .arg(&dir);
    if let Some(b) = bin {
        cmd.arg(b);
    }
    let o = cmd.output()?;
    let _ = std::fs::remove_dir_all(&dir);
    // What a trial says on stderr (each data-plane measurement) is progress for the reader.
    if o.status.success() {
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
    }
    // The kernel tears the sandbox's namespaces down asynchronously after it exits; let that
    // finish so it does not land in the next trial's time.
    static LAST_N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let last = LAST_N.swap(n, std::sync::atomic::Ordering::Relaxed).max(n);
    std::thread::sleep(Duration::from_millis(300 + 4 * last as u64));
    if !o.status.success() {
        return Err(format!(
            "trial {kind} {n} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let mut m = Vec::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let [label, ms, rss] = w[..] {
            m.push((label.to_string(), (ms.parse()?, rss.parse()?)));
        }
    }
    Ok(m)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Figures by label, every sample kept.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    fn add(&mut self, trial: Vec<(String, (f64, u64))>) {
        for (k, (v, _)) in trial {
            self.0.entry(k).or_default().push(v);
        }
    }
    fn median(&self, k: &str) -> f64 {
        self.0.get(k).map(|v| median(v.clone())).unwrap_or(f64::NAN)
    }
    fn count(&self, k: &str) -> usize {
        self.0.get(k).map_or(0, Vec::len)
    }
    /// "2" when every sample is 2, "2–3" otherwise.
    fn span(&self, k: &str) -> String {
        let v = self.0.get(k).cloned().unwrap_or_default();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo == hi {
            format!("{lo:.0}")
        } else {
            format!("{lo:.0}–{hi:.0}")
        }
    }
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--inner") {
        return inner(
            &args[2],
            args[3].parse()?,
            Path::new(&args[4]),
            args.get(5).map(Path::new),
        );
    }
    let mut runs = 5;
    let mut out_path: Option<PathBuf> = None;
    let mut sizes = vec![2usize, 20, 100, 200];
    let mut only: Option<Vec<String>> = None;
    let mut baseline: Option<PathBuf> = None;
    let mut i = 1;
    let value = |i: usize| {
        args.get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => runs = value(i)?.parse()?,
            "--out" => out_path = Some(PathBuf::from(value(i)?)),
            "--only" => only = Some(value(i)?.split(',').map(str::to_string).collect()),
            "--baseline" => baseline = Some(PathBuf::from(value(i)?)),
            "--sizes" => {
                sizes = value(i)?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            a => return Err(format!("unknown argument {a}").into()),
        }
        i += 2;
    }
    const PARTS: [&str; 5] = [
        "apply",
        "scale",
        "dataplane",
        "publish",
        "publish-dataplane",
    ];
    for o in only.iter().flatten() {
        if !PARTS.contains(&o.as_str()) {
            return Err(format!("--only {o}: the parts are {}", PARTS.join(", ")).into());
        }
    }
    if let Some(b) = &baseline {
        // A relative path would not survive the sandbox's working directory.
        baseline = Some(std::fs::canonicalize(b).map_err(|e| format!("{}: {e}", b.display()))?);
    }
    let base = baseline.as_deref();
    let want = |part: &str| only.as_ref().is_none_or(|o| o.iter().any(|p| p == part));
    let mut report = String::new();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    writeln!(
        report,
        "- date: {}",
        String::from_utf8_lossy(&date.stdout).trim()
    )?;
    writeln!(
        report,
        "- machine: {} cores, {cpu}, Linux {kernel}",
        std::thread::available_parallelism()?.get()
    )?;
    writeln!(
        report,
        "- command: `{}`",
        std::iter::once("cargo run --release --example bench --".to_string())
            .chain(args[1..].iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    writeln!(
        report,
        "- each figure: the median of {runs} runs, each run in a fresh sandbox; ratios are of medians measured in this same run"
    )?;
    if let Some(b) = base {
        writeln!(
            report,
            "- baseline: `{}`, run in the same sandboxes as nsfw, alternating A B B A within every run (so {} samples per side)",
            b.display(),
            2 * runs
        )?;
    }
    // Other work on the machine skews every figure; the reader should know how busy it was.
    writeln!(
        report,
        "- load average (1, 5, 15 min) at start: {}\n",
        loadavg()
    )?;
    let started = Instant::now();
    if want("apply") {
        let (bh, bs) = if base.is_some() {
            (
                " baseline cold ms | cold/baseline | apply no-op ms | baseline no-op ms | no-op/baseline |",
                "---|---|---|---|---|",
            )
        } else {
            (" apply no-op ms |", "---|")
        };
        writeln!(
            report,
            "| N | (a) classic script ms | (b) ip -batch + nft -f ms | (d) kernel floor ms | nsfw apply cold ms |{bh} diff ms | flush ms | (a)/cold | (b)/cold | no-op/cold | diff/cold | nsfw peak RSS MiB |"
        )?;
        writeln!(
            report,
            "|---|---|---|---|---|{bs}---|---|---|---|---|---|---|"
        )?;
    }
    for &n in sizes.iter().filter(|_| want("apply")) {
        let mut col = Samples::default();
        let mut rss = 0u64;
        for r in 0..runs {
            for kind in ["classic", "batch"] {
                col.add(trial(kind, n, None)?);
            }
            // With a baseline: nsfw, baseline, baseline, nsfw — neither always goes first.
            let order: &[&str] = if base.is_some() {
                &["nsfw", "base", "base", "nsfw"]
            } else {
                &["nsfw"]
            };
            for &kind in order {
                let t = trial(kind, n, base)?;
                if kind == "nsfw" {
                    rss = t.iter().map(|(_, (_, kib))| *kib).fold(rss, u64::max);
                }
                col.add(t);
            }
            eprintln!("N={n}: run {}/{runs} done", r + 1);
        }
        let m = |k: &str| col.median(k);
        let cold = m("apply_cold");
        let noop = m("apply_noop");
        let beside = if base.is_some() {
            format!(
                " {:.0} | {:.2}× | {noop:.1} | {:.1} | {:.2}× |",
                m("base_cold"),
                cold / m("base_cold"),
                m("base_noop"),
                noop / m("base_noop"),
            )
        } else {
            format!(" {noop:.1} |")
        };
        writeln!(
            report,
            "| {n} | {:.0} | {:.0} | {:.0} | {cold:.0} |{beside} {:.1} | {:.0} | {:.1}× | {:.2}× | {:.3} | {:.3} | {:.1} |",
            m("classic"),
            m("batch"),
            m("floor"),
            m("diff"),
            m("flush"),
            m("classic") / cold,
            m("batch") / cold,
            noop / cold,
            m("diff") / cold,
            rss as f64 / 1024.0
        )?;
        eprint!("{report}");
    }
    // Scale: 4 bridges × 25 and × 250.
    if want("scale") {
        writeln!(
            report,
            "\n### Scale: 4 bridges\n\n| namespaces | nsfw apply cold ms | ms per namespace | peak RSS MiB |\n|---|---|---|---|"
        )?;
        let mut per = Vec::new();
        for n in [100usize, 1000] {
            let mut v = Vec::new();
            let mut rss = 0;
            for _ in 0..runs.min(3) {
                let t = trial("scale", n, None)?;
                let (ms, kib) = t
                    .iter()
                    .find(|(k, _)| k == "apply_cold")
                    .map(|(_, v)| *v)
                    .ok_or("no apply_cold figure")?;
                v.push(ms);
                rss = rss.max(kib);
            }
            let ms = median(v);
            per.push(ms / n as f64);
            writeln!(
                report,
                "| {n} | {ms:.0} | {:.3} | {:.1} |",
                ms / n as f64,
                rss as f64 / 1024.0
            )?;
        }
        writeln!(
            report,
            "\nper-namespace cost at 1000 / at 100: {:.2}×",
            per[1] / per[0]
        )?;
    }
    // Data plane.
    if want("dataplane") {
        let mut dp = Samples::default();
        for _ in 0..runs.min(3) {
            dp.add(trial("dataplane", 2, None)?);
        }
        let d = |k: &str| dp.median(k);
        writeln!(
            report,
            "\n### Data plane: ns → wan through NAT (in-process TCP load; 1.5 s measurements alternating A B B A A B B A after a warm-up; medians of {} measurements per side)\n\n| ruleset | throughput Gbit/s | connections/s |\n|---|---|---|",
            dp.count("dp_tput_nsfw")
        )?;
        writeln!(
            report,
            "| nsfw (inet nsfw_bench) | {:.2} | {:.0} |",
            d("dp_tput_nsfw"),
            d("dp_conn_nsfw")
        )?;
        writeln!(
            report,
            "| classic iptables rules | {:.2} | {:.0} |",
            d("dp_tput_iptables"),
            d("dp_conn_iptables")
        )?;
        writeln!(
            report,
            "\nnsfw / iptables: throughput {:.2}×, connection rate {:.2}×",
            d("dp_tput_nsfw") / d("dp_tput_iptables"),
            d("dp_conn_nsfw") / d("dp_conn_iptables")
        )?;
        eprintln!(
            "data plane done after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let ports = PUB_NS * PUB_PER as usize;
    if want("publish") {
        let mut p = Samples::default();
        for r in 0..runs {
            p.add(trial("publish", PUB_NS, None)?);
            eprintln!("publish: run {}/{runs} done", r + 1);
        }
        let m = |k: &str| p.median(k);
        writeln!(
            report,
            "\n### Published ports: {PUB_NS} namespaces on one bridge (10.200.0.0/22), {PUB_PER} ports each = {ports} published\n\n| what is timed | ms | samples |\n|---|---|---|"
        )?;
        for (k, what) in [
            (
                "pub_cold",
                "full cold apply from nothing (namespaces, bridge, veths, addresses, table)",
            ),
            (
                "pub_table_nsfw",
                "`nsfw apply`, everything there but nsfw's table",
            ),
            (
                "pub_table_nft",
                "`nft -f` of `nsfw show`'s output, same state",
            ),
            ("pub_noop", "`nsfw apply` with nothing to do"),
            (
                "pub_change",
                "one host port changed in the file: `nsfw apply -v`",
            ),
        ] {
            writeln!(report, "| {what} | {:.0} | {} |", m(k), p.count(k))?;
        }
        writeln!(
            report,
            "\nnsfw apply / nft -f (table only): {:.2}×; one port changed: nft batch of {} messages ({} bytes)",
            m("pub_table_nsfw") / m("pub_table_nft"),
            p.span("pub_change_msgs"),
            p.span("pub_change_bytes"),
        )?;
        eprintln!(
            "publish done after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    if want("publish-dataplane") {
        let mut dp = Samples::default();
        for _ in 0..runs.min(3) {
            dp.add(trial("pubdp", PUB_NS, None)?);
        }
        let d = |k: &str| dp.median(k);
        writeln!(
            report,
            "\n### Data plane through a published port: wan → {UPLINK}:{PROBE_HOST_PORT} → DNAT → ns{PROBE_NS}:{PROBE_NS_PORT} (same load and alternation as above; medians of {} measurements per side)\n\n| ports published | throughput Gbit/s | connections/s |\n|---|---|---|",
            dp.count("pubdp_tput_all")
        )?;
        writeln!(
            report,
            "| {ports} | {:.2} | {:.0} |",
            d("pubdp_tput_all"),
            d("pubdp_conn_all")
        )?;
        writeln!(
            report,
            "| 1 | {:.2} | {:.0} |",
            d("pubdp_tput_one"),
            d("pubdp_conn_one")
        )?;
        writeln!(
            report,
            "\n{ports} published / 1 published: throughput {:.2}×, connection rate {:.2}×",
            d("pubdp_tput_all") / d("pubdp_tput_one"),
            d("pubdp_conn_all") / d("pubdp_conn_one")
        )?;
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!("bench done after {took:.0} s");
    // Into the header, after the start's load average.
    let at = report.find("\n\n").map_or(report.len(), |i| i + 1);
    report.insert_str(
        at,
        &format!(
            "- load average at end: {}; the run took {:.0} min\n",
            loadavg(),
            took / 60.0
        ),
    );
    print!("{report}");
    if let Some(p) = out_path {
        let head = "# Benchmarks\n\nProduced by `just bench` (examples/bench.rs). Each trial runs in its own sandbox.\n\n";
        let old = std::fs::read_to_string(&p).unwrap_or_default();
        let notes = old
            .split_once("\n## Notes")
            .map(|(_, n)| format!("\n## Notes{n}"))
            .unwrap_or_default();
        std::fs::write(&p, format!("{head}## Latest run\n\n{report}{notes}"))?;
    }
    Ok(())
}
