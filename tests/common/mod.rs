//! The test sandbox: every kernel-touching test gets a fresh network and mount namespace made
//! by `nsfw sandbox` (private tmpfs over /run/netns, /etc/netns and /run/nsfw) and, inside it,
//! a PID namespace whose init is the holder, a shell waiting for the end of its input. Commands run inside through `nsenter`,
//! in that PID namespace, and so does everything they start (servers, podman's conmon and
//! containers, `nsfw try`'s own sandbox): when the holder dies, the kernel kills every process
//! in it. So nothing reaches the host's network, and everything dies with the sandbox when
//! the test ends, passes or not (a panic unwinds through `Drop`).
//!
//! Kernel tests need root: without it they skip, saying so ([`Sandbox::or_skip`]).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const NSFW: &str = env!("CARGO_BIN_EXE_nsfw");

pub struct Sandbox {
    /// `nsfw sandbox`, whose standard input the holder waits on.
    holder: Child,
    /// The holder's pid as the test sees it: init of the sandbox's PID namespace.
    pid: u32,
    dir: PathBuf,
}

/// The holder: says it is up, then waits for the end of its input.
const HOLDER: &str = "echo ready; read -r _; exit 0";

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

/// Whether this process may run kernel tests (namespaces, netlink, nftables need root).
pub fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True, after saying so, when a kernel test cannot run here: it then returns at once. Said
/// on the test harness's own stderr (not captured), so a skip is never silent.
pub fn skip_without_root() -> bool {
    if root() {
        return false;
    }
    let me = std::thread::current();
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {} needs root (network namespaces, netlink, nftables); `cargo test` as root runs it",
        me.name().unwrap_or("this test")
    );
    true
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
        // The command may hold spaces and parentheses: the fields follow the last ')'.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..))
            .and_then(|rest| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid)
            && let Ok(p) = name.parse()
        {
            out.push(p);
        }
    }
    out
}

/// The process a `spawn_*` child runs: `nsenter` forks it into the sandbox's PID namespace
/// and waits for it (passing its exit status on), so signals meant for the command go to
/// this pid, not the child's. None: it has ended already (and nsenter with it).
pub fn inner_pid(child: &Child) -> Option<u32> {
    let t = std::time::Instant::now();
    loop {
        if let Some(p) = children_of(child.id()).first() {
            return Some(*p);
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
        let ended = stat.map_or(true, |s| s.rfind(") Z").is_some());
        if ended {
            return None;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "nsenter started nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Live processes (zombies aside) whose command line or root directory names `marker` (a test's
/// own directory, say): what a test started and must not outlive it.
pub fn processes_of(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
        if state.is_none() || state == Some("Z") {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
        if cmd.contains(marker) || root.starts_with(marker) {
            out.push(format!("{pid} {}", cmd.trim()));
        }
    }
    out
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
    /// A sandbox, or None when kernel tests cannot run here (not root), said on stderr: `let
    /// Some(sb) = Sandbox::or_skip() else { return };` starts every kernel test.
    pub fn or_skip() -> Option<Sandbox> {
        (!skip_without_root()).then(Sandbox::new)
    }

    pub fn new() -> Sandbox {
        assert!(
            root(),
            "kernel tests need root: start them with Sandbox::or_skip()"
        );
        mount_points();
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nsfw-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Inside the network and mount namespaces, a PID namespace whose init is the holder,
        // with a /proc of its own (so that pids read there are the namespace's). The holder
        // waits for the end of its standard input: the test closes it when the sandbox is
        // dropped, and the kernel does when the test process ends, however it ends.
        let mut holder = Command::new(NSFW)
            .args([
                "sandbox",
                "--",
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
            ])
            .args(["--kill-child", "--", "sh", "-c", HOLDER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sandbox");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("sandbox ready");
        assert_eq!(line.trim(), "ready", "the sandbox did not start");
        // nsfw sandbox → unshare → the holder.
        let unshare = children_of(holder.id());
        let inits: Vec<u32> = unshare.iter().flat_map(|p| children_of(*p)).collect();
        let [pid] = inits[..] else {
            panic!("the sandbox's holder: {unshare:?} → {inits:?}")
        };
        let sb = Sandbox { holder, pid, dir };
        sb.ok("ip link set lo up");
        sb
    }

    /// A command entering the sandbox: `nsenter` forks it into the PID namespace, waits for
    /// it and exits as it did (see [`inner_pid`]).
    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        for (opt, ns) in [("net", "net"), ("mount", "mnt"), ("pid", "pid")] {
            c.arg(format!("--{opt}=/proc/{}/ns/{ns}", self.pid));
        }
        c.arg("--");
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

    /// Starts nsfw inside the sandbox without waiting for it (to signal it, see [`inner_pid`]).
    pub fn spawn_nsfw(&self, args: &[&str]) -> Child {
        self.enter()
            .arg(NSFW)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nsfw")
    }

    /// Starts nsfw inside the sandbox with `stdout` as its standard output (a pipe the test
    /// holds full, to stop it at its first line), without waiting for it.
    pub fn spawn_nsfw_to(&self, args: &[&str], stdout: Stdio) -> Child {
        self.enter()
            .arg(NSFW)
            .args(args)
            .stdout(stdout)
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
        // The holder reads the end of its input and exits. It is init of the PID namespace:
        // when it ends, the kernel kills every process in the namespace (and in namespaces
        // made inside it: a container's, `nsfw try`'s), however it was started: in the
        // background, as a daemon, in a namespace deleted since. The nsenter of each command
        // exits with its command; unshare with the holder, and with it `nsfw sandbox`.
        drop(self.holder.stdin.take());
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
    /// anything under /run/nsfw but the lock. The kernel tears a deleted namespace down in its
    /// own time, its veth pairs with it, and neither `ip netns del` nor a flush waits for that:
    /// what is left is given 5 s to go.
    pub fn leftovers(&self, keep: &[&str]) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = self.leftovers_now(keep);
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn leftovers_now(&self, keep: &[&str]) -> Vec<String> {
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

/// The raw-frame script (tests/tools/frames.py), run with Debian's python3.
pub fn frames_py() -> String {
    format!(
        "/usr/bin/python3 {}/tests/tools/frames.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

impl Sandbox {
    /// Runs the shell lines `send` while frames.py sniffs `eth0` of namespace `lan` (the LAN's
    /// host) for `secs` s, ready first: the status of `send`, and the frames marked `marker` seen.
    pub fn lan_sniff(&self, secs: f64, marker: &str, send: &str) -> (Output, Option<u64>) {
        let log = self.dir().join(format!("sniff-{marker}.log"));
        let o = self.sh(&format!(
            "ip netns exec lan {py} sniff eth0 {secs} {marker} > {log} 2>&1 &
             for i in $(seq 100); do grep -q ready {log} && break; sleep 0.02; done
             {send}
             rc=$?; wait; exit $rc",
            py = frames_py(),
            log = log.display(),
        ));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (o, text.lines().nth(1).and_then(|l| l.trim().parse().ok()))
    }

    /// [`Sandbox::lan_sniff`] of lines that must succeed: the count.
    pub fn lan_count(&self, secs: f64, marker: &str, send: &str) -> u64 {
        let (o, n) = self.lan_sniff(secs, marker, send);
        assert!(o.status.success(), "{send}\n{}", show(&o));
        n.expect("a count")
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

/// Topology `name`: `n` namespaces `{prefix}{i}` spread over `bridges` masquerading bridges
/// `br{b}`, a /22 each from `10.{octet + b}.0.1`, `first` added to the first namespace's table;
/// with `extra`, one more namespace, `extra`, on br0.
pub fn spread(
    name: &str,
    prefix: &str,
    bridges: usize,
    octet: usize,
    n: usize,
    first: &str,
    extra: bool,
) -> String {
    let mut s = format!("name = \"{name}\"\n");
    for b in 0..bridges {
        s.push_str(&format!(
            "[bridges.br{b}]\naddress = \"10.{}.0.1/22\"\nmasquerade = true\n",
            octet + b
        ));
    }
    for i in 0..n {
        let (b, a) = (i % bridges, i / bridges + 2);
        s.push_str(&format!(
            "[namespaces.{prefix}{i}]\nbridge = \"br{b}\"\naddress = \"10.{}.{}.{}/22\"\n",
            octet + b,
            a / 256,
            a % 256
        ));
        if i == 0 {
            s.push_str(first);
        }
    }
    if extra {
        s.push_str(&format!(
            "[namespaces.extra]\nbridge = \"br0\"\naddress = \"10.{octet}.3.250/22\"\n"
        ));
    }
    s
}

/// A small random source for kill instants: xorshift seeded from the clock, the seed printed
/// so a failing run can be told apart.
pub struct Instants(u64);

impl Instants {
    pub fn new() -> Instants {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("seed {seed}");
        Instants(seed)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
