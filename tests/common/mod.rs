//! The test sandbox: every kernel-touching test gets a fresh network and mount namespace made
//! by `nsfw sandbox` (private tmpfs over /run/netns and /etc/netns), held open by a `sleep`,
//! and runs its commands inside it through `nsenter`. Nothing reaches the host's network, and
//! everything dies with the holder when the test ends, passes or not.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const NSFW: &str = env!("CARGO_BIN_EXE_nsfw");

pub struct Sandbox {
    holder: Child,
    pid: u32,
    dir: PathBuf,
}

/// The sandbox mounts tmpfs over /run/netns, /etc/netns and /run/nsfw, which need mount points. Create
/// them once, before any sandbox, and never remove them: concurrent sandboxes then never race
/// over creating and removing the mount points.
fn mount_points() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for d in ["/run/netns", "/etc/netns", "/run/nsfw"] {
            std::fs::create_dir_all(d).expect("create mount point");
        }
    });
}

/// The text of a command's run, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Sandbox {
    pub fn new() -> Sandbox {
        mount_points();
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nsfw-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut holder = Command::new(NSFW)
            .args(["sandbox", "--", "sh", "-c", "echo $$; exec sleep 900"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sandbox");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("sandbox pid");
        let pid: u32 = line.trim().parse().expect("sandbox pid");
        let sb = Sandbox { holder, pid, dir };
        sb.ok("ip link set lo up");
        sb
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.pid))
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid))
            .arg("--");
        c
    }

    /// Runs a shell script inside the sandbox.
    pub fn sh(&self, script: &str) -> Output {
        self.enter()
            .args(["bash", "-c", script])
            .output()
            .expect("run in sandbox")
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(o.status.success(), "`{script}` failed\n{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs nsfw inside the sandbox.
    pub fn nsfw(&self, args: &[&str]) -> Output {
        self.enter()
            .arg(NSFW)
            .args(args)
            .output()
            .expect("run nsfw")
    }

    /// Starts nsfw inside the sandbox without waiting for it (nsenter execs nsfw in place, so
    /// the child's pid is nsfw's).
    pub fn spawn_nsfw(&self, args: &[&str]) -> Child {
        self.enter()
            .arg(NSFW)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nsfw")
    }

    /// Starts a shell script inside the sandbox without waiting for it.
    pub fn spawn_sh(&self, script: &str) -> Child {
        self.enter()
            .args(["bash", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start script")
    }

    /// Runs nsfw, which must exit with `code`; returns stdout.
    pub fn nsfw_code(&self, args: &[&str], code: i32) -> String {
        let o = self.nsfw(args);
        assert_eq!(o.status.code(), Some(code), "nsfw {args:?}\n{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes a file for the test (a topology, say) and returns its absolute path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write test file");
        p.display().to_string()
    }

    /// The sandbox holder's pid: `nsenter --net=/proc/PID/ns/net` enters it.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip -j` output as JSON.
    pub fn json(&self, script: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(script)).expect("json")
    }

    /// The ifindex of `dev` in `ns` (None: the sandbox's own namespace).
    pub fn ifindex(&self, ns: Option<&str>, dev: &str) -> u64 {
        let cmd = match ns {
            Some(n) => format!("ip -n {n} -j link show dev {dev}"),
            None => format!("ip -j link show dev {dev}"),
        };
        self.json(&cmd)[0]["ifindex"].as_u64().expect("ifindex")
    }

    /// Whether `ns` reaches `addr` (one ICMP echo, witnessed by `ping`).
    pub fn pings(&self, ns: &str, addr: &str) -> bool {
        self.sh(&format!("ip netns exec {ns} ping -c1 -W2 {addr}"))
            .status
            .success()
    }

    pub fn netns(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok("ls /run/netns")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

impl Sandbox {
    /// A simulated internet inside the sandbox: `uplink` 198.51.100.1 ⇄ namespace `wan`
    /// 198.51.100.2 with 203.0.113.10 on its loopback, a default route towards it, routes back
    /// to `subnets` through the sandbox's host, and counters in `wan` that tell which source
    /// addresses reached it (see [`Sandbox::seen_from`]).
    pub fn upstream(&self, subnets: &[&str]) {
        let mut s = String::from(
            "set -e
             ip netns add wan
             ip link add uplink type veth peer name eth0 netns wan
             ip addr add 198.51.100.1/24 dev uplink
             ip link set uplink up
             ip -n wan link set lo up
             ip -n wan link set eth0 up
             ip -n wan addr add 198.51.100.2/24 dev eth0
             ip -n wan addr add 203.0.113.10/32 dev lo
             ip route add default via 198.51.100.2
             ip netns exec wan nft add table ip seen
             ip netns exec wan nft add chain ip seen input '{ type filter hook input priority 0; }'
             ip netns exec wan nft add rule ip seen input ip saddr 198.51.100.1 counter comment uplink
             ip netns exec wan nft add rule ip seen input ip saddr 10.0.0.0/8 counter comment private
            ",
        );
        for n in subnets {
            s.push_str(&format!("ip -n wan route add {n} via 198.51.100.1\n"));
        }
        self.ok(&s);
    }

    /// Packets that reached `wan` from the uplink's address ("uplink") or from a private,
    /// un-NATed address ("private").
    pub fn seen_from(&self, which: &str) -> u64 {
        let out = self.ok("ip netns exec wan nft list table ip seen");
        let line = out
            .lines()
            .find(|l| l.contains(&format!("comment \"{which}\"")))
            .expect("counter rule");
        let n = line
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .expect("packets");
        n.parse().expect("count")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Witness servers and helpers started in the sandbox or its namespaces would outlive
        // it (a namespace lives while a process is in it): end every one of them first.
        let _ = self.sh(
            "for n in $(ip netns list 2>/dev/null | cut -d' ' -f1); do ip netns pids \"$n\" 2>/dev/null | xargs -r kill -9; done",
        );
        let net = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if let Some(mine) = net(&self.pid.to_string())
            && let Ok(dir) = std::fs::read_dir("/proc")
        {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<u32>().is_ok_and(|p| p != self.pid)
                    && net(&name).as_ref() == Some(&mine)
                    && let Ok(p) = name.parse::<i32>()
                {
                    // SAFETY: kill(2) on a process inside this test's own sandbox.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
            }
        }
        // The holder's child (sh exec'd into sleep) pins the namespaces: end it, and
        // `nsfw sandbox` returns with it.
        // SAFETY: kill(2) on a pid we started; at worst it is already gone.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub const LAB: &str = r#"
name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
address = "10.10.0.3/24"
"#;

/// A topology of `n` namespaces spread over two bridges (br0 10.10.0.0/21, br1 10.20.0.0/21),
/// NATed, every third with DNS; `shift` moves the addresses, so two shifts differ everywhere.
pub fn two_bridges(name: &str, n: usize, shift: usize) -> String {
    let mut s = format!(
        "name = \"{name}\"\n[bridges.br0]\naddress = \"10.10.0.1/21\"\nmasquerade = true\n[bridges.br1]\naddress = \"10.20.0.1/21\"\nmasquerade = true\n"
    );
    for i in 0..n {
        let (br, net) = if i % 2 == 0 { ("br0", 10) } else { ("br1", 20) };
        let host = 10 + i + shift;
        s.push_str(&format!(
            "[namespaces.n{i}]\nbridge = \"{br}\"\naddress = \"10.{net}.{}.{}\"\n",
            host / 250,
            host % 250 + 2
        ));
        if i % 3 == 0 {
            s.push_str("dns = [\"192.0.2.53\"]\n");
        }
    }
    s
}

impl Sandbox {
    /// What nsfw could have made, for "nothing is left" checks: namespaces, links but lo (and
    /// `keep`), nsfw's tables, rules with an nsfw comment, files under /etc/netns, and
    /// anything under /run/nsfw but the lock.
    pub fn leftovers(&self, keep: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.netns() {
            if !keep.contains(&n.as_str()) {
                out.push(format!("namespace {n}"));
            }
        }
        for l in self
            .ok("ip -o link | awk -F': ' '{print $2}' | cut -d@ -f1")
            .lines()
        {
            if l != "lo" && !keep.contains(&l) {
                out.push(format!("link {l}"));
            }
        }
        let rules = self.ok("nft list ruleset 2>/dev/null || true");
        for l in rules.lines() {
            if l.contains("nsfw") {
                out.push(format!("nft: {}", l.trim()));
            }
        }
        for f in self
            .ok("find /etc/netns /run/nsfw -mindepth 1 ! -path /run/nsfw/lock")
            .lines()
        {
            out.push(format!("file {f}"));
        }
        out
    }
}

/// The witness script (tests/tools/net.py), run with Debian's python3.
pub fn net_py() -> String {
    format!(
        "/usr/bin/python3 {}/tests/tools/net.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

impl Sandbox {
    /// Starts answer-with-source-address servers in namespace `ns` (None: the sandbox's host)
    /// on `ports` (`tcp`/`udp`), and waits until they listen. They die with the sandbox.
    pub fn serve(&self, ns: Option<&str>, proto: &str, ports: &[u16]) {
        let exec = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let log = self.dir().join(format!(
            "serve-{}-{proto}-{}.log",
            ns.unwrap_or("host"),
            list.join("-")
        ));
        self.ok(&format!(
            "{exec}{} serve {proto} {} > {} 2>&1 &
             for i in $(seq 100); do grep -q ready {} && break; sleep 0.05; done; grep -q ready {}",
            net_py(),
            list.join(" "),
            log.display(),
            log.display(),
            log.display()
        ));
    }

    /// Asks a server from namespace `ns` (None: the host): the source address it saw, or None
    /// when nothing answered.
    pub fn ask(&self, ns: Option<&str>, proto: &str, host: &str, port: u16) -> Option<String> {
        let exec = ns
            .map(|n| format!("ip netns exec {n} "))
            .unwrap_or_default();
        let o = self.sh(&format!("{exec}{} ask {proto} {host} {port}", net_py()));
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}
