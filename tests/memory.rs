//! `nsfw watch`'s memory (issue 21): with watch running beside, apply and diff take the
//! namespaces it vouches for instead of entering them. What is trusted is broken behind
//! nsfw's back here: drift inside untouched namespaces, a namespace replaced under its name,
//! watch killed, a fake server on its socket, apply killed at random instants. Each time the
//! run must see what a full read sees.

mod common;
mod watchmem;

use std::time::{Duration, Instant};

use common::{NSFW, Sandbox, show};
use watchmem::{remembered, settled, size, stop, timed, topology, watch, watched};

#[test]
fn the_apply_beside_watch_adds_a_namespace_and_repairs_drift_it_did_not_read() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size();
    let (_, w) = watched(&sb, "t.toml", n);
    // The file edited (watch follows it at its next check), then applied.
    let b = sb.file("t.toml", &topology(n, true));
    // Behind nsfw's back, in namespaces no run touches: a default route deleted, an address
    // removed, a link set down.
    sb.ok("ip -n m5 route del default
         ip -n m6 addr del 10.110.0.5/22 dev eth0
         ip -n m7 link set eth0 down");
    let (code, out, err) = timed(&sb, &format!("apply {b}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let k = remembered(&err).expect("the apply asked watch");
    assert!(k >= n - 3 - 1, "it took {k} of {n} from the memory:\n{err}");
    for want in [
        "+ namespace extra",
        "route m5: default via 10.111.0.1",
        "address 10.110.0.5/22 on m6:eth0",
        "m7:eth0",
    ] {
        assert!(out.contains(want), "the apply did not say {want:?}:\n{out}");
    }
    let (code, out, err) = timed(&sb, &format!("diff {b}"));
    assert_eq!(code, Some(0), "diff after the repair:\n{out}\n{err}");
    assert!(sb.ok("ip -n m7 link show eth0").contains("state UP"));
    stop(w);
}

#[test]
fn a_namespace_replaced_under_its_name_is_read_again() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size();
    let (a, w) = watched(&sb, "a.toml", n);
    sb.ok("ip netns del m3 && ip netns add m3");
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    let full = sb.sh(&format!("{NSFW} diff {a}"));
    assert_eq!(code, full.status.code(), "{out}\n{err}\n{}", show(&full));
    assert_eq!(out, String::from_utf8_lossy(&full.stdout), "{err}");
    assert!(
        err.contains("m3"),
        "the replaced namespace is not named:\n{err}"
    );
    stop(w);
}

#[test]
fn a_dead_watch_or_a_fake_one_on_its_socket_is_ignored() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(8);
    let (a, w) = watched(&sb, "a.toml", n);
    // Killed: its socket stays behind, nobody answers.
    stop(w);
    sb.ok("ip -n m1 route del default");
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(2), "drift shown:\n{out}\n{err}");
    assert!(out.contains("m1"), "{out}");
    assert!(err.contains("memory: not used"), "{err}");
    // Someone's server on the path: garbage, then silence.
    for answer in ["garbage-not-postcard", ""] {
        let fake = sb.spawn_sh(&format!(
            "rm -f /run/nsfw/watch-mem.sock; exec python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind(\"/run/nsfw/watch-mem.sock\")
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(b\"{answer}\")
    time.sleep(1)
    c.close()
'"
        ));
        let t = Instant::now();
        while sb.sh("test -S /run/nsfw/watch-mem.sock").status.code() != Some(0) {
            assert!(t.elapsed() < Duration::from_secs(5), "the fake never bound");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, out, err) = timed(&sb, &format!("diff {a}"));
        assert_eq!(code, Some(2), "{answer:?}: drift shown:\n{out}\n{err}");
        assert!(out.contains("m1"), "{out}");
        assert!(err.contains("memory: not used"), "{answer:?}: {err}");
        stop(fake);
    }
    // A server that never accepts (a watch stopped with SIGSTOP): once its queue is full, a
    // blocking connect would wait for it for ever, holding the lock.
    let fake = sb.spawn_sh(
        "rm -f /run/nsfw/watch-mem.sock; exec python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind(\"/run/nsfw/watch-mem.sock\")
s.listen(0)
time.sleep(60)
'",
    );
    let t = Instant::now();
    while sb.sh("test -S /run/nsfw/watch-mem.sock").status.code() != Some(0) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the stopped fake never bound"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for k in 0..4 {
        let t = Instant::now();
        let o = sb.sh(&format!("NSFW_WATCH_MEMORY=1 timeout 10 {NSFW} diff {a}"));
        assert_eq!(
            o.status.code(),
            Some(2),
            "diff {k} beside a stopped watch: {o:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "diff {k} waited {:?}",
            t.elapsed()
        );
    }
    stop(fake);
    sb.nsfw_code(&["apply", &a], 0);
    sb.nsfw_code(&["diff", &a], 0);
}

/// A second watch of the same topology is refused (the two would fight over every repair)
/// and leaves the first one's socket alone: the first still answers.
#[test]
fn a_second_watch_of_the_topology_is_refused_and_the_first_keeps_answering() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let (a, w) = watched(&sb, "a.toml", 4);
    let o = sb.sh(&format!("timeout 20 {NSFW} watch {a}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another nsfw watch of mem is running"),
        "{err}"
    );
    let (code, _, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(remembered(&err), Some(4), "the first still answers: {err}");
    stop(w);
}

/// A host link's /proc/sys directory made anew by the kernel (its MTU below IPv6's 1,280 and
/// back): watch lets go of the files it held there and holds the new ones, so that it serves
/// the host's links again after one check, not never.
#[test]
fn the_hosts_links_are_served_again_after_the_kernel_makes_a_links_settings_anew() {
    let Some(sb) = Sandbox::or_skip() else { return };
    // IPv6 on the bridge: watch holds br0's disable_ipv6 open.
    let dual = "name = \"mem\"\n[bridges.br0]\naddress = \"10.110.0.1/24\"\naddress6 = \"fd00:110::1/64\"\n[namespaces.m0]\nbridge = \"br0\"\naddress = \"10.110.0.2/24\"\n[namespaces.m1]\nbridge = \"br0\"\naddress = \"10.110.0.3/24\"\n";
    let a = sb.file("a.toml", dual);
    sb.nsfw_code(&["apply", &a], 0);
    let w = sb.spawn_sh(&format!(
        "NSFW_WATCH_DEBOUNCE_MS=100 NSFW_TIMING=1 exec {NSFW} watch {a}"
    ));
    settled(&sb, &a, 2);
    let served = |err: &str| err.contains("links from watch's memory");
    let (_, _, err) = timed(&sb, &format!("diff {a}"));
    assert!(served(&err), "{err}");
    sb.ok("ip link set br0 mtu 1000");
    let (code, _, err) = timed(&sb, &format!("apply {a}"));
    assert_eq!(code, Some(0), "{err}");
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let (code, out, err) = timed(&sb, &format!("diff {a}"));
        assert_eq!(code, Some(0), "{out}\n{err}");
        if served(&err) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the host's links never served again:\n{err}"
        );
    }
    stop(w);
}

/// apply beside watch, killed at random instants (NSFW_MEMORY_KILLS trials, 4 by default):
/// the next apply converges, and diff finds nothing.
#[test]
fn apply_killed_beside_watch_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size();
    let trials: u64 = std::env::var("NSFW_MEMORY_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let (f, w) = watched(&sb, "t.toml", n);
    let t = Instant::now();
    sb.file("t.toml", &topology(n, true));
    sb.nsfw_code(&["apply", &f], 0);
    let span = (t.elapsed().as_millis() as u64).max(20) * 5 / 4;
    let mut rng = common::Instants::new();
    for trial in 0..trials {
        let seed = rng.next();
        // Even trials remove `extra` (the file says it), odd ones add it back; watch
        // follows the file.
        sb.file("t.toml", &topology(n, trial % 2 == 1));
        let f = &f;
        let at = Duration::from_millis(seed % span);
        let mut child = sb.spawn_sh(&format!("NSFW_WATCH_MEMORY=1 exec {NSFW} apply {f}"));
        std::thread::sleep(at);
        if let Some(pid) = common::inner_pid(&child) {
            // SAFETY: kill(2) on the nsfw our child runs; at worst it has exited.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = child.wait();
        let o = sb.nsfw(&["apply", f]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "trial {trial} ({at:?}):\n{}",
            show(&o)
        );
        let (code, out, err) = timed(&sb, &format!("diff {f}"));
        assert_eq!(code, Some(0), "trial {trial} ({at:?}):\n{out}\n{err}");
    }
    stop(w);
}

/// Settings the kernel never notifies, written in /proc inside namespaces watch vouches for:
/// promote_secondaries on an interface, and ip_forward in a namespace that routes. watch
/// holds their files open and reads them again before it answers: the run reads those
/// namespaces, and repairs them.
#[test]
fn settings_written_in_proc_inside_vouched_namespaces_are_seen() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let f = sb.file(
        "t.toml",
        &common::spread("mem", "m", 2, 110, n, "forward = true\n", false),
    );
    sb.nsfw_code(&["apply", &f], 0);
    let w = watch(&sb, &f);
    settled(&sb, &f, n);
    let before = sb.ok("ip netns exec m2 cat /proc/sys/net/ipv4/conf/eth0/promote_secondaries");
    let flip = if before.trim() == "0" { "1" } else { "0" };
    sb.ok(&format!(
        "ip netns exec m2 sh -c 'echo {flip} > /proc/sys/net/ipv4/conf/eth0/promote_secondaries'
         ip netns exec m0 sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'"
    ));
    let (code, out, err) = timed(&sb, &format!("diff {f}"));
    assert_eq!(code, Some(2), "the drift is shown:\n{out}\n{err}");
    let k = remembered(&err).expect("the diff asked watch");
    assert!(k <= n - 2, "it took {k} of {n} from the memory:\n{err}");
    for want in ["m2", "m0"] {
        assert!(out.contains(want), "diff does not name {want}:\n{out}");
    }
    let (code, out, err) = timed(&sb, &format!("apply {f}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = timed(&sb, &format!("diff {f}"));
    assert_eq!(code, Some(0), "repaired:\n{out}\n{err}");
    assert_eq!(
        sb.ok("ip netns exec m0 cat /proc/sys/net/ipv4/ip_forward")
            .trim(),
        "1"
    );
    stop(w);
}

/// An apply's own changes, then at once a change by hand: watch reads everything queued
/// before it answers the next run (its check may still be waiting out the burst), so the
/// next apply repairs it (unless watch's own check got there first).
#[test]
fn a_change_right_after_an_apply_is_repaired_by_the_next() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = watched(&sb, "t.toml", n);
    for round in 0..3 {
        // Edit: extra comes and goes; right after the apply, m4 and extra lose their routes.
        sb.file("t.toml", &topology(n, round % 2 == 1));
        let (code, out, err) = timed(&sb, &format!("apply {a}"));
        assert_eq!(code, Some(0), "{out}\n{err}");
        sb.ok("ip -n m4 route del default");
        let (code, out, err) = timed(&sb, &format!("apply {a}"));
        assert_eq!(code, Some(0), "{out}\n{err}");
        // Repaired by this apply, or by watch itself (an apply's change to nsfw's table
        // makes it check at once, and it may find the route gone first).
        assert!(
            !sb.ok("ip -n m4 route show default").trim().is_empty(),
            "round {round}: not repaired:\n{out}\n{err}"
        );
    }
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    stop(w);
}

/// The host's links from watch's memory (kept from the kernel's notifications, no dump):
/// veths set down, taken off their bridge, deleted, hairpin set on a port, a bridge's MTU
/// changed, a bridge's promote_secondaries and a veth's addr_gen_mode written in /proc, by
/// hand. Each run sees it as a dump would (debug builds also hold the memory's links to a dump).
#[test]
fn host_links_changed_by_hand_are_seen_through_the_memory() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = watched(&sb, "t.toml", n);
    for (change, want, vouched) in [
        ("ip link set veth-m1 down", "veth-m1", true),
        ("ip link set veth-m2 nomaster", "veth-m2", true),
        ("ip link del veth-m3", "m3", true),
        ("ip link set br1 mtu 1400", "br1", true),
        // Said by the bridge alone (AF_BRIDGE): watch reads the link again.
        ("bridge link set dev veth-m4 hairpin on", "veth-m4", true),
        // Never notified: watch holds the files open, reads them before answering, and
        // does not vouch for the host's links (the run dumps them).
        (
            "echo 0 > /proc/sys/net/ipv4/conf/br0/promote_secondaries",
            "br0.promote_secondaries",
            false,
        ),
        (
            "echo 0 > /proc/sys/net/ipv6/conf/veth-m5/addr_gen_mode",
            "veth-m5",
            false,
        ),
    ] {
        sb.ok(change);
        let mut tries = 0;
        let (code, out, err) = loop {
            // A watch still busy with a check does not answer within 100 ms: asked again.
            let (code, out, err) = timed(&sb, &format!("diff {a}"));
            tries += 1;
            if tries == 5 || !err.contains("no whole answer") {
                break (code, out, err);
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(code, Some(2), "{change}: the drift is shown:\n{out}\n{err}");
        assert!(out.contains(want), "{change}: {want} not named:\n{out}");
        assert_eq!(
            err.contains("memory: the host's"),
            vouched,
            "{change}: the host's links from the memory?\n{err}"
        );
        let (code, out, err) = timed(&sb, &format!("apply {a}"));
        assert_eq!(code, Some(0), "{change}: {out}\n{err}");
        let (code, out, err) = timed(&sb, &format!("diff {a}"));
        assert_eq!(code, Some(0), "{change}: repaired:\n{out}\n{err}");
    }
    stop(w);
}

/// A rate added beside watch: the host end's tbf comes with a qdisc message alone (the kernel
/// says nothing of the link), which watch's host table must hear, or every later run beside
/// it sees the host end without its qdisc: a drift that is not there, and an apply failing
/// with EEXIST (found by a hostile round).
#[test]
fn a_rate_added_beside_watch_is_seen_through_the_memory() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(8);
    let (a, w) = watched(&sb, "t.toml", n);
    let rated = common::spread("mem", "m", 2, 110, n, "rate = \"10mbit\"\n", false);
    sb.file("t.toml", &rated);
    let (code, out, err) = timed(&sb, &format!("apply {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("qdisc"), "the rate was not made:\n{out}");
    for run in ["diff", "apply", "diff"] {
        let (code, out, err) = timed(&sb, &format!("{run} {a}"));
        assert_eq!(
            code,
            Some(0),
            "{run} after the rate was made:\n{out}\n{err}"
        );
        assert!(
            err.contains("memory: the host's"),
            "{run}: not through the memory:\n{err}"
        );
    }
    stop(w);
}

/// A bridge's IPv6 switch, which the file does not set (the plan turns it on only where the
/// bridge takes a port's IPv6 addresses), written in /proc. Every run reads it; watch holds
/// it open as well (else each run opens it, a quarter of a millisecond at 1,000 namespaces),
/// finds it changed and does not vouch for the host's links. Once watch served them without
/// it, and a debug run, which holds what it was served to a dump, panicked on the stale value.
#[test]
fn a_bridges_ipv6_switch_written_in_proc_is_not_vouched_for() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let (a, w) = watched(&sb, "t.toml", size().min(8));
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        err.contains("memory: the host's"),
        "vouched for first:\n{err}"
    );
    sb.ok("echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6");
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "nothing to change:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !err.contains("memory: the host's"),
        "the host's links from the memory after br0's disable_ipv6 was written:\n{err}"
    );
    stop(w);
}

/// A setting written in /proc inside a vouched namespace, which nothing notifies: the next
/// question makes watch read its files, and what it finds changed it checks and repairs
/// as a change it heard, with no run to ask for it.
#[test]
fn watch_repairs_what_its_files_found_changed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(6);
    let f = sb.file("t.toml", &topology(n, false));
    sb.nsfw_code(&["apply", &f], 0);
    let w = sb.spawn_sh(&format!(
        "NSFW_WATCH_DEBOUNCE_MS=100 NSFW_TIMING=1 exec {NSFW} watch --max-repairs 1000 {f}"
    ));
    settled(&sb, &f, n);
    let key = "/proc/sys/net/ipv4/conf/eth0/promote_secondaries";
    let want = sb.ok(&format!("ip netns exec m2 cat {key}"));
    let flip = if want.trim() == "0" { "1" } else { "0" };
    // Three times: the first may be repaired by chance (a fresh bridge's own notifications
    // make watch check), the next are found by the files alone, in a place watch's own
    // repair wrote (kept again, held open anew, by the check that follows it).
    for round in 0..3 {
        sb.ok(&format!("ip netns exec m2 sh -c 'echo {flip} > {key}'"));
        let (code, out, err) = timed(&sb, &format!("diff {f}"));
        assert_eq!(code, Some(2), "{round}: the drift is shown:\n{out}\n{err}");
        let t = Instant::now();
        while sb.ok(&format!("ip netns exec m2 cat {key}")) != want {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{round}: watch never repaired it"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its repair done, watch checks again (its own changes notify it, 100 ms later): a
        // flip made meanwhile is found by that check, not by the next diff. Idle first: two
        // clean diffs that never waited for the lock, a debounce apart.
        let t = Instant::now();
        let mut clean = 0;
        while clean < 2 {
            let (code, _, err) = timed(&sb, &format!("diff {f}"));
            clean = if code == Some(0) && !err.contains("waiting for another nsfw") {
                clean + 1
            } else {
                0
            };
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{round}: watch never settled"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    stop(w);
}

/// A name mounted over another beside watch: the name whose inode changed is read, the other
/// vouched for under the inode it holds now, and the two are seen to be one namespace (the
/// memory carries no identity of its own).
#[test]
fn a_namespace_mounted_over_another_name_is_refused_beside_watch() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(8);
    let (a, w) = watched(&sb, "a.toml", n);
    for (from, over) in [("m2", "m3"), ("m3", "m2")] {
        sb.ok(&format!("mount --bind /run/netns/{from} /run/netns/{over}"));
        for cmd in ["diff", "apply"] {
            let (code, out, err) = timed(&sb, &format!("{cmd} {a}"));
            assert_eq!(code, Some(1), "{cmd}, {from} over {over}:\n{out}\n{err}");
            assert!(
                err.contains("/run/netns/m2 and /run/netns/m3 hold one namespace"),
                "{cmd}, {from} over {over}:\n{err}"
            );
        }
        sb.ok(&format!("umount /run/netns/{over}"));
    }
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    stop(w);
}
