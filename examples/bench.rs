//! nsfw's benchmarks: nsfw against the hand-written way, in throwaway sandboxes.
//!
//!     cargo run --release --example bench -- [--runs 5] [--out docs/benchmarks.md]
//!
//! As root. Every trial runs in a fresh sandbox (`nsfw sandbox`), so nothing touches the host
//! and no trial inherits another's state. Traffic goes only between the sandbox's namespaces
//! (the data-plane trial's "internet" is a namespace on 198.51.100.0/24 and 203.0.113.0/24).
//!
//! For N namespaces on one bridge with masquerade and the stateful forward rules it times:
//!   a. the classic script: one `ip`/`iptables`/`sysctl` process per step (netns-lab-up.sh),
//!   b. the fastest stock-tool path: one `ip -batch` for the host, one `ip -n NS -batch` per
//!      namespace, one `nft -f`,
//!   c. nsfw apply (cold), apply with nothing to do, diff, flush,
//!   d. the kernel floor estimate: the host-side `ip -batch` of (b) alone;
//! then the scale trial (4 bridges of N/4 namespaces) and the data-plane trial (throughput and
//! connection rate through NAT under nsfw's ruleset and under the classic iptables rules).
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
    Ok((ms, ru.ru_maxrss as u64))
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

/// One trial, inside a fresh sandbox: prints `label ms rss_kib` lines.
fn inner(kind: &str, n: usize, dir: &Path) -> Res<()> {
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
        "dataplane" => dataplane(dir)?,
        _ => return Err(format!("unknown trial {kind}").into()),
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

const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 10), 5201);

/// Bulk throughput (Gbit/s) and connection rate (connections/s) from ns0x0 to the server in
/// `wan`, through NAT, for `secs` each.
fn measure(secs: f64) -> Res<(f64, f64)> {
    let dur = Duration::from_secs_f64(secs);
    let tput = in_ns("ns0x0", move || -> Option<f64> {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from(SERVER), Duration::from_secs(2)).ok()?;
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
    let rate = in_ns("ns0x0", move || -> Option<f64> {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < dur {
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::from(SERVER), Duration::from_secs(2))
                    .ok()?;
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

fn dataplane(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("dp.toml");
    std::fs::write(&f, topology(1, 2))?;
    sh("ip link set lo up
        ip netns add wan
        ip link add uplink type veth peer name eth0 netns wan
        ip addr add 198.51.100.1/24 dev uplink; ip link set uplink up
        ip -n wan link set lo up; ip -n wan link set eth0 up
        ip -n wan addr add 198.51.100.2/24 dev eth0; ip -n wan addr add 203.0.113.10/32 dev lo
        ip route add default via 198.51.100.2")?;
    timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    // The server: 'B' → read everything; 'C' → answer one byte and close.
    in_ns("wan", || {
        let l = TcpListener::bind(SocketAddr::from(SERVER)).expect("bind");
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
    // A B B A A B B A: nsfw's ruleset, the classic iptables rules, ... — so that neither side
    // always goes first; the figures are the medians of each side's four. Same plumbing
    // throughout. A two-core machine makes single figures noisy (sender, receiver and softirq
    // share the cores), hence the repetitions.
    let secs = 1.5;
    let to_iptables = format!("nft delete table inet nsfw_bench\n{CLASSIC_RULES}");
    let to_nsfw = "iptables -F; iptables -t nat -F";
    // A first measurement warms up (conntrack, socket buffers) and is always low: discarded.
    measure(secs)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut on_nsfw = true;
    for side in [true, false, false, true, true, false, false, true] {
        if side != on_nsfw {
            if side {
                sh(to_nsfw)?;
                timed(Command::new(&nsfw).arg("apply").arg(&f))?;
            } else {
                sh(&to_iptables)?;
            }
            on_nsfw = side;
        }
        let m = measure(secs)?;
        eprintln!(
            "dataplane {}: {:.2} Gbit/s, {:.0} conn/s",
            if side { "nsfw" } else { "iptables" },
            m.0,
            m.1
        );
        if side { a.push(m) } else { b.push(m) }
    }
    // Every measurement is reported; the outer run takes the medians over all trials.
    for (t, c) in &a {
        println!("dp_tput_nsfw {t:.3} 0");
        println!("dp_conn_nsfw {c:.1} 0");
    }
    for (t, c) in &b {
        println!("dp_tput_iptables {t:.3} 0");
        println!("dp_conn_iptables {c:.1} 0");
    }
    Ok(())
}

/// Runs one trial in a fresh sandbox and collects its numbers.
fn trial(kind: &str, n: usize) -> Res<Vec<(String, (f64, u64))>> {
    let n = if kind == "dataplane" { 2 } else { n };
    let dir = std::env::temp_dir().join(format!("nsfw-bench-{}-{kind}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let o = Command::new(nsfw_bin())
        .arg("sandbox")
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(["--inner", kind, &n.to_string()])
        .arg(&dir)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
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
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--inner") {
        return inner(&args[2], args[3].parse()?, Path::new(&args[4]));
    }
    let mut runs = 5;
    let mut out_path: Option<PathBuf> = None;
    let mut sizes = vec![2usize, 20, 100, 200];
    let mut only: Option<String> = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                runs = args[i + 1].parse()?;
                i += 1;
            }
            "--out" => {
                out_path = Some(PathBuf::from(&args[i + 1]));
                i += 1;
            }
            "--only" => {
                only = Some(args[i + 1].clone());
                i += 1;
            }
            "--sizes" => {
                sizes = args[i + 1]
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?;
                i += 1;
            }
            a => return Err(format!("unknown argument {a}").into()),
        }
        i += 1;
    }
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
        "- each figure: the median of {runs} runs, each run in a fresh sandbox; ratios are of medians measured in this same run\n"
    )?;
    writeln!(
        report,
        "| N | (a) classic script ms | (b) ip -batch + nft -f ms | (d) kernel floor ms | nsfw apply cold ms | apply no-op ms | diff ms | flush ms | (a)/cold | (b)/cold | no-op/cold | diff/cold | nsfw peak RSS MiB |"
    )?;
    writeln!(
        report,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    for &n in sizes.iter().filter(|_| want("apply")) {
        let mut col: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut rss = 0u64;
        for r in 0..runs {
            for kind in ["classic", "batch", "nsfw"] {
                for (k, (ms, kib)) in trial(kind, n)? {
                    col.entry(k).or_default().push(ms);
                    rss = rss.max(kib);
                }
            }
            eprintln!("N={n}: run {}/{runs} done", r + 1);
        }
        let m = |k: &str| col.get(k).map(|v| median(v.clone())).unwrap_or(f64::NAN);
        let cold = m("apply_cold");
        writeln!(
            report,
            "| {n} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1}× | {:.2}× | {:.3} | {:.3} | {:.1} |",
            m("classic"),
            m("batch"),
            m("floor"),
            cold,
            m("apply_noop"),
            m("diff"),
            m("flush"),
            m("classic") / cold,
            m("batch") / cold,
            m("apply_noop") / cold,
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
                let t = trial("scale", n)?;
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
        let mut dp: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for _ in 0..runs.min(3) {
            for (k, (v, _)) in trial("dataplane", 2)? {
                dp.entry(k).or_default().push(v);
            }
        }
        let d = |k: &str| dp.get(k).map(|v| median(v.clone())).unwrap_or(f64::NAN);
        writeln!(
            report,
            "\n### Data plane: ns → wan through NAT (in-process TCP load; 1.5 s measurements alternating A B B A A B B A after a warm-up; medians of {} measurements per side)\n\n| ruleset | throughput Gbit/s | connections/s |\n|---|---|---|",
            4 * runs.min(3)
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
    }
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
