//! CNI mode's benchmark: nsfw against the reference `bridge` + `portmap` plugins, each in a
//! fresh sandbox (`nsfw sandbox`), driven as a runtime drives them (environment, stdin).
//!
//!     just bench-cni      (cargo build --release --bin nsfw --example bench_cni, then run it as root)
//!
//! For each: 100 containers attached (each with one published port), then the ADD and DEL
//! latency of 10 more (median and max, per container, the plugin processes included: bridge
//! then portmap for the reference); then the connection rate from the sandbox's `wan` through
//! a published port of container 0, with the 100 attached (3 s, one client). Traffic stays in
//! the sandbox. It prints numbers and asserts none.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const ATTACHED: usize = 100;
const SAMPLES: usize = 10;

fn nsfw_bin() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("nsfw"))
        .ok_or("no nsfw binary beside the example")?)
}

fn sh(script: &str) -> Res<String> {
    let o = Command::new("bash").args(["-c", script]).output()?;
    if !o.status.success() {
        return Err(format!("`{script}` failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// One plugin process: its result (stdout) or its error.
fn plugin(bin: &Path, cmd: &str, id: &str, conf: &str) -> Res<String> {
    let mut c = Command::new(bin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{id}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin.take().ok_or("stdin")?.write_all(conf.as_bytes())?;
    let o = c.wait_with_output()?;
    if !o.status.success() {
        return Err(format!(
            "{} {cmd} {id}: {}{}",
            bin.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Nsfw,
    Reference,
}

fn ipam(dir: &str) -> String {
    format!(
        r#"{{"type":"host-local","dataDir":"{dir}","ranges":[[{{"subnet":"10.90.0.0/16"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}"#
    )
}

fn ports(i: usize) -> String {
    format!(
        r#"{{"portMappings":[{{"hostPort":{},"containerPort":80,"protocol":"tcp"}}]}}"#,
        10000 + i
    )
}

/// nsfw's configuration for container `i` (ADD and DEL take the same).
fn nsfw_conf(dir: &str, i: usize) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","type":"nsfw","bridge":"cni-bench","ipMasq":true,"ipam":{},"runtimeConfig":{}}}"#,
        ipam(dir),
        ports(i)
    )
}

/// ADD of container `i`, as a runtime would: nsfw alone, or bridge then portmap.
fn add(k: Kind, nsfw: &Path, dir: &str, i: usize) -> Res<()> {
    let id = format!("c{i}");
    match k {
        Kind::Nsfw => {
            let conf = nsfw_conf(dir, i);
            plugin(nsfw, "ADD", &id, &conf)?;
        }
        Kind::Reference => {
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"cni-bench","isGateway":true,"ipMasq":true,"ipam":{}}}"#,
                ipam(dir)
            );
            let r = plugin(Path::new("/usr/lib/cni/bridge"), "ADD", &id, &conf)?;
            let pm = format!(
                r#"{{"cniVersion":"1.0.0","name":"bench","type":"portmap","runtimeConfig":{},"prevResult":{}}}"#,
                ports(i),
                r.trim()
            );
            plugin(Path::new("/usr/lib/cni/portmap"), "ADD", &id, &pm)?;
        }
    }
    Ok(())
}

fn del(k: Kind, nsfw: &Path, dir: &str, i: usize) -> Res<()> {
    let id = format!("c{i}");
    match k {
        Kind::Nsfw => {
            let conf = nsfw_conf(dir, i);
            plugin(nsfw, "DEL", &id, &conf)?;
        }
        Kind::Reference => {
            let pm = format!(
                r#"{{"cniVersion":"1.0.0","name":"bench","type":"portmap","runtimeConfig":{}}}"#,
                ports(i)
            );
            plugin(Path::new("/usr/lib/cni/portmap"), "DEL", &id, &pm)?;
            let conf = format!(
                r#"{{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"cni-bench","isGateway":true,"ipMasq":true,"ipam":{}}}"#,
                ipam(dir)
            );
            plugin(Path::new("/usr/lib/cni/bridge"), "DEL", &id, &conf)?;
        }
    }
    Ok(())
}

fn enter(ns: &str) -> Res<()> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a namespace file we hold open; only this thread moves.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Connections per second from `wan` to 198.51.100.1:10000 (container c0's port 80) for 3 s.
fn conn_rate() -> Res<f64> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let l = enter("c0")
            .map_err(|e| e.to_string())
            .and_then(|()| TcpListener::bind("0.0.0.0:80").map_err(|e| e.to_string()));
        match l {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                for mut c in l.incoming().flatten() {
                    let _ = c.write_all(b"x");
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    rx.recv()??;
    let client = std::thread::spawn(|| -> Result<f64, String> {
        enter("wan").map_err(|e| e.to_string())?;
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(3) {
            let mut s = TcpStream::connect_timeout(
                &"198.51.100.1:10000".parse().map_err(|_| "addr")?,
                Duration::from_secs(2),
            )
            .map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    });
    Ok(client.join().map_err(|_| "client thread")??)
}

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

/// Inside the sandbox: one plugin's trial.
fn trial(k: Kind) -> Res<()> {
    let nsfw = nsfw_bin()?;
    let dir = std::env::temp_dir().join(format!("bench-cni-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.display().to_string();
    sh("ip link set lo up
        ip netns add wan
        ip link add uplink type veth peer name eth0 netns wan
        ip addr add 198.51.100.1/24 dev uplink && ip link set uplink up
        ip -n wan link set lo up && ip -n wan link set eth0 up
        ip -n wan addr add 198.51.100.2/24 dev eth0
        ip route add default via 198.51.100.2")?;
    let total = ATTACHED + SAMPLES;
    sh(&format!(
        "for i in $(seq 0 {}); do ip netns add c$i; done",
        total - 1
    ))?;
    for i in 0..ATTACHED {
        add(k, &nsfw, &d, i)?;
    }
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in ATTACHED..total {
        let t = Instant::now();
        add(k, &nsfw, &d, i)?;
        adds.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = conn_rate()?;
    for i in ATTACHED..total {
        let t = Instant::now();
        del(k, &nsfw, &d, i)?;
        dels.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (am, ax) = stats(&mut adds);
    let (dm, dx) = stats(&mut dels);
    let name = match k {
        Kind::Nsfw => "nsfw",
        Kind::Reference => "bridge + portmap",
    };
    println!("| {name} | {am:.1} | {ax:.1} | {dm:.1} | {dx:.1} | {rate:.0} |");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--inside") {
        let k = if args.get(2).map(String::as_str) == Some("reference") {
            Kind::Reference
        } else {
            Kind::Nsfw
        };
        return trial(k);
    }
    let me = std::env::current_exe()?;
    println!(
        "{ATTACHED} containers attached, each with a published port; {SAMPLES} more ADDed and DELeted (ms per container)\n"
    );
    println!(
        "| plugin | ADD median | ADD max | DEL median | DEL max | connections/s via a published port |"
    );
    println!("|---|---|---|---|---|---|");
    for k in ["nsfw", "reference"] {
        let s = Command::new(nsfw_bin()?)
            .arg("sandbox")
            .arg("--")
            .arg(&me)
            .args(["--inside", k])
            .status()?;
        if !s.success() {
            return Err(format!("the {k} trial failed").into());
        }
    }
    Ok(())
}
