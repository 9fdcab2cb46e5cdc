//! Rate limits (`rate`, `burst`, `ceil` on a namespace interface): a tbf on both ends of the
//! veth, made without netem, measured with a timed TCP transfer between the namespace and the
//! sandbox's world in both directions; drift of the qdiscs named by diff and repaired by
//! apply; a foreign root left alone; kill -9 mid-apply converging. `tc` is the witness.

mod common;

use std::time::{Duration, Instant};

use common::Sandbox;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const LAB: &str = r#"
name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
rate = "10mbit"
"#;

/// Bytes sent per measurement: 3 s at 10 Mbit/s.
const BYTES: u64 = 3_750_000;

/// Moves `BYTES` over one TCP connection that `ns1` opens to the world (203.0.113.10 in
/// `wan`: the firewall lets the namespace's connections out, and their replies in), `ns1`
/// sending when `upload`, `wan` otherwise; returns the rate the receiver saw, in Mbit/s, from
/// its first byte to its last (the tbf's initial burst is 50 kB of the 3.75 MB).
fn mbits(sb: &Sandbox, upload: bool) -> f64 {
    // One script for both ends: `serve` listens in wan, `connect` runs in ns1; the receiver
    // prints the bytes and seconds.
    let script = sb.file(
        "bulk.py",
        &format!(
            r#"import socket, sys, time
def send(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b = bytes(65536); left = {BYTES}
    while left > 0:
        left -= c.send(b[:min(left, len(b))])
    c.shutdown(socket.SHUT_WR); c.recv(1)
def receive(c):
    n = 0; t0 = None
    while True:
        b = c.recv(65536)
        if not b: break
        if t0 is None: t0 = time.monotonic()
        n += len(b)
    print(n, time.monotonic() - t0, flush=True)
role, upload = sys.argv[1], sys.argv[2] == "up"
if role == "serve":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("203.0.113.10", 5201)); s.listen(1); print("ready", flush=True)
    c, _ = s.accept()
    receive(c) if upload else send(c)
else:
    c = socket.socket(); c.settimeout(20)
    # Deep buffers at both ends: the kernel keeps the link busy while this process waits
    # for a CPU on a loaded machine.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    c.connect(("203.0.113.10", 5201))
    send(c) if upload else receive(c)
"#
        ),
    );
    let dir = sb.dir().display().to_string();
    let way = if upload { "up" } else { "down" };
    sb.ok(&format!(
        "ip netns exec wan /usr/bin/python3 {script} serve {way} > {dir}/serve.out 2>&1 &
         for i in $(seq 100); do grep -q ready {dir}/serve.out && break; sleep 0.05; done"
    ));
    let client = sb.ok(&format!(
        "ip netns exec ns1 /usr/bin/python3 {script} connect {way}"
    ));
    let out = match upload {
        true => {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let out = sb.ok(&format!("cat {dir}/serve.out"));
                if out.lines().count() >= 2 || Instant::now() > deadline {
                    break out.lines().nth(1).unwrap_or_default().to_string();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        false => client,
    };
    let mut w = out.split_whitespace();
    let n: f64 = w.next().and_then(|v| v.parse().ok()).expect("bytes");
    let secs: f64 = w.next().and_then(|v| v.parse().ok()).expect("seconds");
    assert_eq!(n as u64, BYTES, "{out}");
    n * 8.0 / secs / 1e6
}

/// The tests of this file take turns: a transfer measured beside three applies killed and
/// retried measures the machine's load, not the rate.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn lab(sb: &Sandbox) -> String {
    sb.upstream(&["10.10.0.0/24"]);
    sb.file("lab.toml", LAB)
}

/// The acceptance: 10mbit measured 8.5–11.5 Mbit/s both ways, on a kernel without netem,
/// and the qdiscs read as tc reads them.
#[test]
fn a_rate_holds_both_ways_without_netem() {
    let _turn = turn();
    let Some(sb) = Sandbox::or_skip() else {
        return;
    };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    let tc = sb.ok("ip netns exec ns1 tc qdisc show dev eth0; tc qdisc show dev veth-ns1");
    assert_eq!(
        tc.matches("qdisc tbf 6e73: root refcnt 3 rate 10Mbit burst ")
            .count(),
        2,
        "{tc}"
    );
    sb.nsfw_code(&["diff", &f], 0);
    // Frames count whole in the bucket: a full 1514-byte frame carries 1448 bytes of TCP
    // payload, so 9.56 Mbit/s is the most a transfer can see. A loaded machine (the tests run
    // beside others on two cores) starves the tbf's timer now and then and the rate measured
    // falls short: a second transfer is measured then. Too fast is never retried.
    for (what, upload) in [("ns1 → wan", true), ("wan → ns1", false)] {
        let mut v = mbits(&sb, upload);
        if v < 8.5 {
            eprintln!("{what}: {v:.2} Mbit/s, measured again");
            v = mbits(&sb, upload);
        }
        eprintln!("measured: {what} {v:.2} Mbit/s");
        assert!((8.5..=11.5).contains(&v), "{what}: {v:.2} Mbit/s");
    }
}

/// A changed or deleted qdisc is named by diff and repaired by apply; a changed rate in the
/// file is changed in place; a rate taken out of the file takes nsfw's qdiscs with it.
#[test]
fn qdisc_drift_is_named_and_repaired() {
    let _turn = turn();
    let Some(sb) = Sandbox::or_skip() else {
        return;
    };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    for (breakage, expect) in [
        (
            "ip netns exec ns1 tc qdisc del dev eth0 root",
            "~ qdisc ns1:eth0: none → rate 10mbit burst 50000b",
        ),
        (
            "tc qdisc change dev veth-ns1 root handle 6e73: tbf rate 20mbit burst 12500b limit 75000",
            "~ qdisc veth-ns1: rate 20mbit burst 12500b → rate 10mbit burst 50000b",
        ),
    ] {
        sb.ok(breakage);
        let out = sb.nsfw_code(&["diff", &f], 2);
        assert!(out.contains(expect), "{breakage}: {out}");
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
    }
    let faster = sb.file(
        "faster.toml",
        &LAB.replace(
            "\"10mbit\"",
            "\"20mbit\"\nburst = \"30kb\"\nceil = \"40mbit\"",
        ),
    );
    let out = sb.nsfw_code(&["apply", &faster], 0);
    assert!(
        out.contains(
            "~ qdisc ns1:eth0: rate 10mbit burst 50000b → rate 20mbit burst 30720b ceil 40mbit"
        ),
        "{out}"
    );
    sb.nsfw_code(&["diff", &faster], 0);
    let tc = sb.ok("tc qdisc show dev veth-ns1");
    assert!(
        tc.contains("rate 20Mbit burst 30Kb peakrate 40Mbit"),
        "{tc}"
    );
    let none = sb.file("none.toml", &LAB.replace("rate = \"10mbit\"", ""));
    sb.nsfw_code(&["apply", &none], 0);
    sb.nsfw_code(&["diff", &none], 0);
    let tc = sb.ok("ip netns exec ns1 tc qdisc show dev eth0; tc qdisc show dev veth-ns1");
    assert!(!tc.contains("tbf"), "{tc}");
}

/// Someone else's root qdisc on the bridge port is left alone: its step alone is left out,
/// the rest of the file is applied, and flush leaves it as it was.
#[test]
fn a_foreign_qdisc_is_left_alone() {
    let _turn = turn();
    let Some(sb) = Sandbox::or_skip() else {
        return;
    };
    let f = lab(&sb);
    let none = sb.file("none.toml", &LAB.replace("rate = \"10mbit\"", ""));
    sb.nsfw_code(&["apply", &none], 0);
    sb.ok("tc qdisc add dev veth-ns1 root handle 1: tbf rate 1mbit burst 5kb latency 10ms");
    let out = sb.nsfw(&["apply", &f]);
    let text = common::show(&out);
    assert_eq!(out.status.code(), Some(4), "partially applied: {text}");
    assert!(
        text.contains("veth-ns1: its root qdisc (tbf 1:) is not nsfw's: left alone"),
        "{text}"
    );
    let tc = sb.ok("ip netns exec ns1 tc qdisc show dev eth0; tc qdisc show dev veth-ns1");
    assert!(
        tc.contains("qdisc tbf 6e73: root") && tc.contains("qdisc tbf 1: root refcnt 3 rate 1Mbit"),
        "{tc}"
    );
    // Taken out of the file, nsfw removes its own and not the other.
    sb.nsfw_code(&["apply", &none], 0);
    let tc = sb.ok("tc qdisc show dev veth-ns1");
    assert!(tc.contains("qdisc tbf 1: root"), "{tc}");
}

/// kill -9 at random instants of an apply with rate limits: the next apply converges and the
/// diff is then clean.
#[test]
fn killed_mid_apply_converges() {
    let _turn = turn();
    let Some(sb) = Sandbox::or_skip() else {
        return;
    };
    let f = lab(&sb);
    for ms in [5u64, 15, 30, 45, 60] {
        let mut child = sb.spawn_nsfw(&["apply", &f]);
        std::thread::sleep(Duration::from_millis(ms));
        if let Some(pid) = common::inner_pid(&child) {
            // At worst it has ended already.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = child.wait();
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        sb.nsfw_code(&["flush", "--name", "lab"], 0);
    }
}

/// `verify` times a transfer through each rate limit: it passes while the tbf holds, and
/// fails naming the rate it measured once the bridge port's tbf is gone.
#[test]
fn verify_times_the_rate() {
    let _turn = turn();
    let Some(sb) = Sandbox::or_skip() else {
        return;
    };
    let f = lab(&sb);
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw(&["verify", &f]);
    let text = common::show(&out);
    assert!(
        text.contains("tcp rate 10mbit") && out.status.success(),
        "{text}"
    );
    sb.ok("tc qdisc del dev veth-ns1 root");
    let out = sb.nsfw(&["verify", &f]);
    let text = common::show(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the link's rate allows 9.56 Mbit/s of payload (±15 %)"),
        "{text}"
    );
}
