//! Trustworthy convergence: however a run ends — killed at any instant, its output closed,
//! racing another run, short of file descriptors — the next apply converges and flush removes
//! everything nsfw made.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Sandbox, show, two_bridges};

/// A small xorshift generator: the tests need spread, not cryptography; the seed is printed so
/// a failure can be replayed (NSFW_TEST_SEED).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("NSFW_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("NSFW_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts `nsfw ARGS`, kills it (SIGKILL, or SIGTERM one time in four) after `after`, and
/// waits for it; returns what it printed.
fn kill_after(sb: &Sandbox, args: &[&str], after: Duration, term: bool) -> String {
    let mut child = sb.spawn_nsfw(args);
    std::thread::sleep(after);
    let sig = if term { libc::SIGTERM } else { libc::SIGKILL };
    if let Some(pid) = common::inner_pid(&child) {
        // SAFETY: kill(2) on the nsfw our child runs (and waits for); at worst it has exited.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn assert_clean(sb: &Sandbox, what: &str) {
    let left = sb.leftovers(&[]);
    assert!(left.is_empty(), "{what}: left behind: {left:#?}");
}

/// Docker's way: FORWARD policy drop and a DOCKER-USER chain, so that nsfw also places rules
/// in another owner's chain, which must go with flush too.
fn docker_like(sb: &Sandbox) {
    sb.ok("iptables -P FORWARD DROP; iptables -N DOCKER-USER; iptables -A DOCKER-USER -j RETURN; iptables -I FORWARD -j DOCKER-USER");
}

#[test]
fn killed_applies_and_flushes_always_converge() {
    let Some(sb) = Sandbox::or_skip() else { return };
    docker_like(&sb);
    let mut rng = Rng::new();
    let a = sb.file("a.toml", &two_bridges("crash", 50, 0));
    let b = sb.file("b.toml", &two_bridges("crash", 56, 7));
    // How long a cold apply takes here: kills land anywhere in it.
    let t = Instant::now();
    sb.nsfw_code(&["apply", &a], 0);
    let span = (t.elapsed().as_millis() as u64).max(50) * 5 / 4;
    sb.nsfw_code(&["flush", &a], 0);
    for trial in 0..32 {
        // Alternate between two files that differ in every address and in their namespaces,
        // so the killed run is always in the middle of real work; every fourth trial starts
        // from an empty host.
        let f = if trial % 2 == 0 { &a } else { &b };
        if trial % 4 == 0 {
            sb.nsfw_code(&["flush", "--all"], 0);
        }
        let at = Duration::from_millis(rng.below(span));
        let term = rng.below(4) == 0;
        let err = kill_after(&sb, &["apply", f], at, term);
        assert!(!err.contains("panicked"), "trial {trial}: {err}");
        let o = sb.nsfw(&["apply", f]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "trial {trial} (killed after {at:?}): apply\n{}",
            show(&o)
        );
        sb.nsfw_code(&["diff", f], 0);
    }
    for trial in 0..12 {
        let f = if trial % 2 == 0 { &a } else { &b };
        sb.nsfw_code(&["apply", f], 0);
        let at = Duration::from_millis(rng.below(span));
        let err = kill_after(&sb, &["flush", f], at, rng.below(4) == 0);
        assert!(!err.contains("panicked"), "flush trial {trial}: {err}");
        let o = sb.nsfw(&["apply", f]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "flush trial {trial} (killed after {at:?}): apply\n{}",
            show(&o)
        );
        sb.nsfw_code(&["diff", f], 0);
        sb.nsfw_code(&["flush", f], 0);
        assert_clean(&sb, &format!("flush trial {trial}"));
    }
    sb.nsfw_code(&["apply", &a], 0);
    sb.nsfw_code(&["flush", &a], 0);
    assert_clean(&sb, "the end");
}

/// `two_bridges(name, n, 0)` with `allows` `[[allow]]` entries and a published port per
/// namespace; `moved` changes one entry's port and one published port, so applying it is an
/// element change of two sets and nothing else.
fn big_tables(name: &str, n: usize, allows: usize, moved: bool) -> String {
    let mut s = two_bridges(name, n, 0);
    for i in 0..n {
        let host = if moved && i == 0 { 30000 } else { 20000 + i };
        s = s.replacen(
            &format!("[namespaces.n{i}]\n"),
            &format!("[namespaces.n{i}]\npublish = [\"{host}:80\"]\n"),
            1,
        );
    }
    let first = if moved { 5202 } else { 5201 };
    s.push_str(&format!(
        "[[allow]]\nfrom = \"n0\"\nto = \"203.0.113.10/32\"\nports = [\"tcp/{first}\"]\n"
    ));
    for e in 1..allows {
        s.push_str(&format!(
            "[[allow]]\nfrom = \"n{}\"\nto = \"198.51.100.{}/32\"\nports = [\"tcp/{}\"]\n",
            e % n,
            2 * ((e / n) % 125) + 2,
            10000 + 2 * (e / (n * 125))
        ));
    }
    s
}

#[test]
fn killed_element_changes_and_flushes_without_waiting_always_converge() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let mut rng = Rng::new();
    let a = sb.file("a.toml", &big_tables("big", 20, 1000, false));
    let b = sb.file("b.toml", &big_tables("big", 20, 1000, true));
    sb.nsfw_code(&["apply", &a], 0);
    // How long a one-entry change takes here: kills land anywhere in it (its batch included).
    let t = Instant::now();
    sb.nsfw_code(&["apply", &b], 0);
    let span = (t.elapsed().as_millis() as u64).max(20) * 5 / 4;
    for trial in 0..8 {
        let f = if trial % 2 == 0 { &a } else { &b };
        let at = Duration::from_millis(rng.below(span));
        let err = kill_after(&sb, &["apply", f], at, false);
        assert!(!err.contains("panicked"), "trial {trial}: {err}");
        // Whichever file the killed run had, the other one's change is one apply away.
        let g = if trial % 2 == 0 { &b } else { &a };
        for file in [f, g] {
            let o = sb.nsfw(&["apply", file]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "trial {trial} (killed after {at:?}):\n{}",
                show(&o)
            );
            sb.nsfw_code(&["diff", file], 0);
        }
    }
    // A flush (which no longer waits for the kernel to take the namespaces' veths) killed
    // anywhere: the next apply converges, the next flush leaves nothing once the kernel is done.
    let t = Instant::now();
    sb.nsfw_code(&["flush", &a], 0);
    let span = (t.elapsed().as_millis() as u64).max(20) * 5 / 4;
    for trial in 0..4 {
        sb.nsfw_code(&["apply", &a], 0);
        let at = Duration::from_millis(rng.below(span));
        let err = kill_after(&sb, &["flush", &a], at, false);
        assert!(!err.contains("panicked"), "flush trial {trial}: {err}");
        if trial % 2 == 0 {
            let o = sb.nsfw(&["apply", &a]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "flush trial {trial} (killed after {at:?}):\n{}",
                show(&o)
            );
            sb.nsfw_code(&["diff", &a], 0);
        }
        sb.nsfw_code(&["flush", &a], 0);
        assert_clean(&sb, &format!("flush trial {trial}"));
    }
}

#[test]
fn runs_at_once_take_turns() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("t.toml", &two_bridges("race", 60, 0));
    // Two applies of one file: both succeed (the second waits), the host is in sync.
    let one = sb.spawn_nsfw(&["apply", &f]);
    let two = sb.spawn_nsfw(&["apply", &f]);
    for c in [one, two] {
        let o = c.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
    sb.nsfw_code(&["diff", &f], 0);
    sb.nsfw_code(&["flush", &f], 0);
    // apply and flush together: the host ends fully applied or fully flushed.
    for _ in 0..3 {
        let ap = sb.spawn_nsfw(&["apply", &f]);
        std::thread::sleep(Duration::from_millis(5));
        let fl = sb.spawn_nsfw(&["flush", &f]);
        let (a, b) = (
            ap.wait_with_output().expect("wait"),
            fl.wait_with_output().expect("wait"),
        );
        assert_eq!(a.status.code(), Some(0), "{}", show(&a));
        assert_eq!(b.status.code(), Some(0), "{}", show(&b));
        let diff = sb.nsfw(&["diff", &f]);
        match diff.status.code() {
            Some(0) => {}
            Some(2) => assert_clean(&sb, "apply then flush"),
            _ => panic!("{}", show(&diff)),
        }
        sb.nsfw_code(&["flush", &f], 0);
    }
    // --no-wait fails at once while another run holds the lock.
    let holder = sb.spawn_nsfw(&["apply", &f]);
    std::thread::sleep(Duration::from_millis(30));
    let o = sb.nsfw(&["apply", "--no-wait", &f]);
    let _ = holder.wait_with_output();
    if o.status.code() == Some(1) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("another nsfw (pid"), "{err}");
    }
}

#[test]
fn a_closed_pipe_never_stops_the_work() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("t.toml", &two_bridges("pipe", 300, 0));
    for cmd in ["apply", "flush"] {
        let o = sb.sh(&format!(
            "set -o pipefail; {} {cmd} {f} | head -1",
            common::NSFW
        ));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{cmd}: {err}");
        if cmd == "apply" {
            sb.nsfw_code(&["diff", &f], 0);
        } else {
            assert_clean(&sb, "flush | head -1");
        }
    }
    // stderr closed as well, and stdout a reader that went away.
    sb.ok(&format!("{} apply {f} >&- 2>&-; true", common::NSFW));
    sb.nsfw_code(&["diff", &f], 0);
}

#[test]
fn a_thousand_namespaces_with_256_open_files() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("t.toml", &two_bridges("many", 1000, 0));
    let run = |cmd: &str, code: i32| {
        let o = sb.sh(&format!("ulimit -Sn 256; {} {cmd} {f}", common::NSFW));
        assert_eq!(o.status.code(), Some(code), "{cmd}\n{}", show(&o));
    };
    run("apply", 0);
    run("diff", 0);
    assert_eq!(sb.netns().len(), 1000);
    run("flush", 0);
    assert_clean(&sb, "flush of 1000");
}

#[test]
fn readdressing_converges_in_one_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let lab = |ns1: &str, gw: &str| {
        format!(
            "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.{gw}/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.{ns1}/24\"\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n"
        )
    };
    sb.nsfw_code(&["apply", &sb.file("a.toml", &lab("2", "1"))], 0);
    assert!(sb.pings("ns1", "203.0.113.10"));
    for (what, ns1, gw) in [
        ("namespace .2 → .20", "20", "1"),
        ("gateway .1 → .254", "20", "254"),
        ("both back", "2", "1"),
    ] {
        let f = sb.file("b.toml", &lab(ns1, gw));
        let o = sb.nsfw(&["apply", &f]);
        assert_eq!(o.status.code(), Some(0), "{what}\n{}", show(&o));
        sb.nsfw_code(&["diff", &f], 0);
        let addrs = sb.ok("ip -n ns1 -4 -o addr show dev eth0");
        assert!(
            addrs.contains(&format!("10.10.0.{ns1}/24")) && addrs.lines().count() == 1,
            "{what}: {addrs}"
        );
        let route = sb.ok("ip -n ns1 route show default");
        assert!(
            route.contains(&format!("via 10.10.0.{gw}")),
            "{what}: {route}"
        );
        assert!(
            sb.pings("ns1", "203.0.113.10"),
            "{what}: ns1 cannot reach the upstream"
        );
        assert!(
            sb.pings("ns2", &format!("10.10.0.{ns1}")),
            "{what}: ns2 cannot reach ns1"
        );
    }
}

#[test]
fn renamed_bridges_and_traded_addresses_work_right_after_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let lab = |br: &str, a: &str, b: &str| {
        format!(
            "name = \"lab\"\n[bridges.{br}]\naddress = \"10.10.0.1/24\"\n[namespaces.ns1]\nbridge = \"{br}\"\naddress = \"10.10.0.{a}/24\"\n[namespaces.ns2]\nbridge = \"{br}\"\naddress = \"10.10.0.{b}/24\"\n[namespaces.ns3]\nbridge = \"{br}\"\naddress = \"10.10.0.4/24\"\n"
        )
    };
    sb.nsfw_code(&["apply", &sb.file("a.toml", &lab("br0", "2", "3"))], 0);
    // Every neighbour learnt before the change.
    assert!(
        sb.pings("ns3", "10.10.0.2")
            && sb.pings("ns3", "10.10.0.3")
            && sb.pings("ns3", "10.10.0.1")
    );
    for (what, br, a, b) in [
        ("bridge renamed", "brx", "2", "3"),
        ("addresses traded", "brx", "3", "2"),
    ] {
        let f = sb.file("b.toml", &lab(br, a, b));
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        // One echo each, at once: a stale neighbour entry would lose them.
        for (from, to) in [
            ("ns3", "10.10.0.1"),
            ("ns3", "10.10.0.2"),
            ("ns3", "10.10.0.3"),
            ("ns1", "10.10.0.1"),
        ] {
            let o = sb.sh(&format!("ip netns exec {from} ping -c1 -W1 {to}"));
            assert!(
                o.status.success(),
                "{what}: {from} cannot reach {to} right after apply\n{}",
                show(&o)
            );
        }
    }
}

#[test]
fn flush_puts_ip_forward_back() {
    let Some(sb) = Sandbox::or_skip() else { return };
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
    let lab = sb.file("lab.toml", common::LAB);
    let other = sb.file("o.toml", "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n[namespaces.o1]\nbridge = \"br1\"\n");
    sb.nsfw_code(&["apply", &lab], 0);
    sb.nsfw_code(&["apply", &other], 0);
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    // Another topology still needs it.
    sb.nsfw_code(&["flush", &lab], 0);
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    let out = sb.nsfw_code(&["flush", &other], 0);
    assert!(out.contains("~ sysctl net.ipv4.ip_forward: 1 → 0"), "{out}");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
    assert_clean(&sb, "flush");
}

/// A topology that vanished without a flush (its namespaces and bridge deleted by hand) and
/// one applied in another network namespace sharing /run do not keep the last flush here from
/// putting ip_forward back; the other namespace's own value is not touched.
#[test]
fn a_vanished_topology_does_not_keep_ip_forward_on() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let lab = sb.file("lab.toml", common::LAB);
    let other = sb.file("o.toml", "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n[namespaces.o1]\nbridge = \"br1\"\n");
    let third = sb.file(
        "t.toml",
        "name = \"third\"\n[bridges.br3]\naddress = \"10.30.0.1/24\"\nmasquerade = true\n",
    );
    sb.nsfw_code(&["apply", &lab], 0);
    sb.nsfw_code(&["apply", &other], 0);
    // Another network namespace, the same /run: nsfw applies `third` there.
    sb.ok(&format!(
        "ip netns add elsewhere && ip netns exec elsewhere {} apply -q {third}",
        env!("CARGO_BIN_EXE_nsfw")
    ));
    assert_eq!(
        sb.ok("ip netns exec elsewhere cat /proc/sys/net/ipv4/ip_forward")
            .trim(),
        "1"
    );
    // `lab` vanishes by hand.
    sb.ok("ip netns del ns1; ip netns del ns2; ip link del br0");
    // The kernel tears the namespaces' veth pairs down a moment later.
    sb.ok("for i in $(seq 200); do ip link show veth-ns1 >/dev/null 2>&1 || ip link show veth-ns2 >/dev/null 2>&1 || exit 0; sleep 0.02; done; exit 1");
    let out = sb.nsfw_code(&["flush", &other], 0);
    assert!(out.contains("~ sysctl net.ipv4.ip_forward: 1 → 0"), "{out}");
    assert_eq!(sb.ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "0");
    assert_eq!(
        sb.ok("ip netns exec elsewhere cat /proc/sys/net/ipv4/ip_forward")
            .trim(),
        "1"
    );
    let rec = sb.ok("cat /run/nsfw/record");
    assert!(rec.contains("third") && !rec.contains("\"lab\""), "{rec}");
}

#[test]
fn without_cap_sys_admin_flush_says_what_it_could_not_reach() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", common::LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let o = sb.sh(&format!(
        "setpriv --bounding-set -sys_admin {} flush {f}",
        common::NSFW
    ));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("namespace ns1") && err.contains("CAP_SYS_ADMIN"),
        "{err}"
    );
    sb.nsfw_code(&["flush", &f], 0);
    assert_clean(&sb, "flush with every capability");
}

#[test]
fn usage_errors_exit_1_and_the_default_file_must_be_the_callers() {
    let Some(sb) = Sandbox::or_skip() else { return };
    for args in [
        vec!["diff", "--jsn"],
        vec!["frobnicate"],
        vec!["flush", "--all", "--name", "x"],
    ] {
        let o = sb.nsfw(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}\n{}", show(&o));
    }
    sb.nsfw_code(&["--help"], 0);
    let dir = sb.dir().join("cwd");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("nsfw.toml"), common::LAB).expect("write");
    let d = dir.display();
    // Group-writable: not taken by default.
    let o = sb.sh(&format!(
        "cd {d} && chmod 664 nsfw.toml && {} diff",
        common::NSFW
    ));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("others can write"),
        "{}",
        show(&o)
    );
    // Someone else's: not taken either.
    let o = sb.sh(&format!(
        "cd {d} && chmod 644 nsfw.toml && chown 65534 nsfw.toml && {} diff",
        common::NSFW
    ));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not to you"),
        "{}",
        show(&o)
    );
    // The caller's own, writable by nobody else: taken.
    let o = sb.sh(&format!(
        "cd {d} && chown 0 nsfw.toml && {} diff",
        common::NSFW
    ));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn files_under_etc_netns_are_never_followed_or_waited_on() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let dns = format!(
        "{}\n[namespaces.ns3]\nbridge = \"br0\"\ndns = [\"192.0.2.53\"]\n",
        common::LAB
    );
    let f = sb.file("lab.toml", &dns);
    let target = sb.dir().join("target");
    std::fs::write(&target, "precious\n").expect("write");
    let t = target.display();
    // A planted temporary name that points elsewhere; strange entries of other namespaces:
    // a FIFO (opening it for reading would wait forever), non-UTF-8 bytes, a directory, a
    // symlinked directory.
    sb.ok(&format!(
        "mkdir -p /etc/netns/ns3 /etc/netns/fifo /etc/netns/bytes /etc/netns/dir/resolv.conf
         ln -s {t} /etc/netns/ns3/.resolv.conf.nsfw
         mkfifo /etc/netns/fifo/resolv.conf
         printf 'nameserver \\377\\376\\n' > /etc/netns/bytes/resolv.conf
         ln -s /tmp /etc/netns/linked"
    ));
    for args in [
        vec!["diff", &f],
        vec!["apply", &f],
        vec!["diff", &f],
        vec!["flush", &f],
    ] {
        let o = sb.sh(&format!("timeout 20 {} {}", common::NSFW, args.join(" ")));
        let code = o.status.code();
        assert!(code == Some(0) || code == Some(2), "{args:?}\n{}", show(&o));
        if args[0] == "apply" {
            let err = String::from_utf8_lossy(&o.stderr);
            for w in [
                "fifo/resolv.conf is a FIFO",
                "bytes/resolv.conf is a file that is not UTF-8",
                "dir/resolv.conf is a directory",
                "linked is a symlink",
            ] {
                assert!(err.contains(w), "expected a warning {w:?}:\n{err}");
            }
            assert_eq!(
                sb.ok("cat /etc/netns/ns3/resolv.conf").lines().nth(1),
                Some("nameserver 192.0.2.53")
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
    assert!(
        sb.ok("ls -A /etc/netns")
            .lines()
            .all(|l| ["fifo", "bytes", "dir", "linked"].contains(&l))
    );
    // The topology's own file in the way fails its own step only (exit 4, named): the rest
    // comes up, the symlink is neither followed nor replaced.
    sb.ok(&format!(
        "mkdir -p /etc/netns/ns3; ln -s {t} /etc/netns/ns3/resolv.conf"
    ));
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("namespaces.ns3.dns"),
        "{}",
        show(&o)
    );
    assert_eq!(sb.netns(), ["ns1", "ns2", "ns3"]);
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
    sb.ok("rm -r /etc/netns/ns3");
    sb.nsfw_code(&["flush", &f], 0);
    // Modes are nsfw's own whatever the umask.
    sb.ok(&format!("umask 000; {} apply {f}", common::NSFW));
    let modes =
        sb.ok("stat -c '%a %n' /etc/netns/ns3 /etc/netns/ns3/resolv.conf /run/nsfw /run/nsfw/lock");
    assert_eq!(
        modes,
        "755 /etc/netns/ns3\n644 /etc/netns/ns3/resolv.conf\n755 /run/nsfw\n644 /run/nsfw/lock\n"
    );
}

#[test]
fn a_foreign_port_on_an_nsfw_bridge_is_drift() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", common::LAB);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("ip link add eth9 type veth peer name eth9p; ip link set eth9 master br0 up");
    let out = sb.nsfw_code(&["diff", &f], 2);
    assert!(out.contains("~ link eth9: master br0 → none"), "{out}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
    let l = sb.json("ip -j link show dev eth9");
    assert!(l[0].get("master").is_none(), "{l}");
    assert!(
        sb.ok("ip -o link").contains("eth9"),
        "the foreign link must stay"
    );
}
