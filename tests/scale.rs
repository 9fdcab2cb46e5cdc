//! At scale (issue 21): with 1,000 namespaces applied, the apply that adds one more still
//! finds and repairs drift anywhere (each kind of drift broken behind nsfw's back, then one
//! apply of the file with one namespace more); a new namespace at an address another one held
//! in an earlier run is reachable at once (the announcement that replaced visiting every
//! namespace of the segment), even when the run that made its address was killed before
//! announcing it; and the one-namespace add and remove converge when killed at any instant.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Sandbox, show};

/// `n` namespaces on 4 bridges (a /22 each), `n0` publishing tcp 8080; with `extra`, one
/// more namespace, `extra`, on br0.
fn four_bridges(n: usize, extra: bool) -> String {
    common::spread(
        "big",
        "n",
        4,
        100,
        n,
        "publish = [\"8080:80/tcp\"]\n",
        extra,
    )
}

/// How many namespaces the scale tests apply: 1,000, or NSFW_SCALE_N.
fn size() -> usize {
    std::env::var("NSFW_SCALE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn the_apply_that_adds_a_namespace_repairs_drift_anywhere() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size();
    let a = sb.file("a.toml", &four_bridges(n, false));
    let b = sb.file("b.toml", &four_bridges(n, true));
    sb.nsfw_code(&["apply", &a], 0);
    // Behind nsfw's back, each in a namespace (or a part of the table) nothing else touches:
    // a default route deleted, an address removed, a link set down, a publish map's element
    // deleted, a rule deleted from nsfw's table.
    let judge = "nft -a list chain inet nsfw_big judge | awk '/ goto drop_closed # handle / {print $NF; exit}'";
    let handle = sb.ok(judge);
    assert!(!handle.trim().is_empty(), "no rule to delete in judge");
    sb.ok(&format!(
        "ip -n n501 route del default
         ip -n n502 addr del 10.102.0.127/22 dev eth0
         ip -n n503 link set eth0 down
         nft delete element inet nsfw_big publish4 '{{ tcp . 8080 }}'
         nft delete rule inet nsfw_big judge handle {}",
        handle.trim()
    ));
    let o = sb.nsfw(&["apply", &b]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "+ namespace extra",
        "route n501: default via 10.101.0.1",
        "address 10.102.0.127/22 on n502:eth0",
        "n503:eth0",
        "publish4",
        "judge",
    ] {
        assert!(out.contains(want), "the apply did not say {want:?}:\n{out}");
    }
    sb.nsfw_code(&["diff", &b], 0);
    assert!(
        sb.ok("ip -n n501 route show default")
            .contains("via 10.101.0.1")
    );
    assert!(
        sb.ok("ip -n n502 -4 addr show dev eth0")
            .contains("10.102.0.127/22")
    );
    assert!(sb.ok("ip -n n503 link show eth0").contains("state UP"));
    assert!(sb.pings("extra", "10.100.0.1"));
}

#[test]
fn a_new_namespace_at_an_address_held_before_is_reachable_at_once() {
    let Some(sb) = Sandbox::or_skip() else { return };
    // `old` holds 10.30.0.5 and `peer` talks to it, so peer's neighbour entry names old's MAC;
    // then old goes, and a namespace of another name (another MAC) takes its address.
    let file = |who: &str| {
        format!(
            "name = \"reuse\"\n[bridges.br0]\naddress = \"10.30.0.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"10.30.0.2/24\"\n[namespaces.{who}]\nbridge = \"br0\"\naddress = \"10.30.0.5/24\"\n"
        )
    };
    let old = sb.file("old.toml", &file("old"));
    let gone = sb.file(
        "gone.toml",
        "name = \"reuse\"\n[bridges.br0]\naddress = \"10.30.0.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"10.30.0.2/24\"\n",
    );
    let new = sb.file("new.toml", &file("new"));
    sb.nsfw_code(&["apply", &old], 0);
    assert!(sb.pings("peer", "10.30.0.5"));
    // The host (the bridge) learns old's MAC too.
    sb.ok("ping -c1 -W1 10.30.0.5");
    sb.nsfw_code(&["apply", &gone], 0);
    let o = sb.nsfw(&["apply", &new]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // Not a visit of peer, nor the host's entries forgotten: the new interface's own
    // gratuitous ARP, which peer and the bridge both hear.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("neighbours on peer"), "{out}");
    assert!(out.contains("announce 10.30.0.5 on new:eth0"), "{out}");
    let lladdr = |ns: &str| {
        let neigh = sb.ok(&format!("ip {ns} neigh show 10.30.0.5"));
        neigh
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    };
    let mac = sb.ok("ip -n new -br link show eth0");
    for ns in ["-n peer", ""] {
        // Learnt from the announcement alone, before any packet: the new MAC.
        let got = lladdr(ns);
        assert!(
            got.as_ref().is_some_and(|m| mac.contains(m.as_str())),
            "{ns}: entry {got:?}, new's link {mac}"
        );
    }
    // One echo, one second: a stale entry would send it to old's MAC for seconds more.
    assert!(
        sb.sh("ip netns exec peer ping -c1 -W1 10.30.0.5")
            .status
            .success(),
        "peer cannot reach the new holder of 10.30.0.5 at once: {}",
        sb.ok("ip -n peer neigh")
    );
}

/// Turns STP on for br0 (by hand: nsfw leaves the setting alone) with a forward delay of
/// `centis` hundredths of a second, and waits (≤ 15 s) until the ports there now forward
/// again: a port that then arrives listens and learns for twice the delay.
///
/// The ports are first waited for (≤ 5 s) to forward with STP still off: the bridge hears of
/// a port's carrier from the kernel's link watch, up to a second after apply has returned,
/// and a port it first hears of with STP on listens and learns too (CI once saw a port still
/// learning 15 s after STP went on at a 15 s delay).
fn stp_on(sb: &Sandbox, centis: u32) {
    sb.ok(&format!(
        "for i in $(seq 50); do bridge link | grep -qv 'state forwarding' || break; sleep 0.1; done
         bridge link | grep -qv 'state forwarding' && {{ bridge link; exit 1; }}
         ip link set br0 type bridge stp_state 1 forward_delay {centis}
         for i in $(seq 150); do bridge link | grep -qv 'state forwarding' || exit 0; sleep 0.1; done
         bridge link; exit 1"
    ));
}

/// The MAC `ip [-n NS] neigh` names for `addr` (`ns`: "-n NAME" or "" for the host).
fn lladdr(sb: &Sandbox, ns: &str, addr: &str) -> Option<String> {
    let neigh = sb.ok(&format!("ip {ns} neigh show {addr}"));
    neigh
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

#[test]
fn an_address_reused_behind_a_port_that_does_not_forward_yet_is_announced_by_the_bridge() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let file = |who: &str| {
        format!(
            "name = \"stp\"\n[bridges.br0]\naddress = \"10.31.0.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"10.31.0.2/24\"\n[namespaces.{who}]\nbridge = \"br0\"\naddress = \"10.31.0.5/24\"\n"
        )
    };
    let old = sb.file("old.toml", &file("old"));
    let gone = sb.file(
        "gone.toml",
        "name = \"stp\"\n[bridges.br0]\naddress = \"10.31.0.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"10.31.0.2/24\"\n",
    );
    let new = sb.file("new.toml", &file("new"));
    sb.nsfw_code(&["apply", &old], 0);
    assert!(sb.pings("peer", "10.31.0.5"));
    sb.ok("ping -c1 -W1 10.31.0.5");
    let was = sb.ok("ip -n old -br link show eth0");
    sb.nsfw_code(&["apply", &gone], 0);
    // STP with the kernel's shortest forward delay (2 s): new's port listens, then learns,
    // for 4 s after it arrives, dropping the announcement from inside and its retries.
    stp_on(&sb, 200);
    let o = sb.nsfw(&["apply", &new]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let state = sb.ok("bridge link show dev veth-new");
    assert!(!state.contains("state forwarding"), "{state}");
    let mac = sb.ok("ip -n new -br link show eth0");
    // peer heard the bridge's gratuitous ARP: the new MAC, right after apply.
    let got = lladdr(&sb, "-n peer", "10.31.0.5");
    assert!(
        got.as_ref().is_some_and(|m| mac.contains(m.as_str())),
        "peer: entry {got:?}, new's link {mac}"
    );
    // The host's own entry (old's MAC) is forgotten, or already the new one.
    let host = lladdr(&sb, "", "10.31.0.5");
    assert!(
        host.as_ref().is_none_or(|m| !was.contains(m.as_str())),
        "host: entry {host:?}, old's link {was}"
    );
}

/// The seconds a run's NSFW_TIMING line for `phase` gives (0 when there is none).
fn phase_secs(err: &str, phase: &str) -> f64 {
    err.lines()
        .filter_map(|l| duration_secs(l.split_once(&format!(" × {phase}: "))?.1.trim()))
        .sum()
}

/// A Duration's Debug form ("1.5s", "200.1ms", "30µs", "12ns") in seconds.
fn duration_secs(d: &str) -> Option<f64> {
    for (unit, scale) in [("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9), ("s", 1.0)] {
        if let Some(n) = d.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|v| v * scale);
        }
    }
    None
}

#[test]
fn ports_that_do_not_forward_yet_share_one_wait() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let file = |k: usize| {
        let mut f = "name = \"stpk\"\n[bridges.br0]\naddress = \"10.32.0.1/24\"\n".to_string();
        for i in 1..=k {
            f += &format!(
                "[namespaces.n{i}]\nbridge = \"br0\"\naddress = \"10.32.0.{}/24\"\n",
                i + 1
            );
        }
        f
    };
    let a = sb.file("a.toml", &file(1));
    let b = sb.file("b.toml", &file(21));
    sb.nsfw_code(&["apply", &a], 0);
    stp_on(&sb, 1500);
    let o = sb.sh(&format!("NSFW_TIMING=1 {} apply {b}", common::NSFW));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // 20 ports listening: one 200 ms wait for all of them (it was 200 ms each, 4 s), then
    // the bridge's announcements over one socket.
    assert!(
        err.contains("20 × wait for bridge ports to forward")
            && err.contains("20 × announce on bridge (port not forwarding)"),
        "{err}"
    );
    let spent = phase_secs(&err, "wait for bridge ports to forward")
        + phase_secs(&err, "announce on bridge (port not forwarding)")
        + phase_secs(&err, "announce in namespace");
    assert!(spent < 1.0, "announcing took {spent} s:\n{err}");
    sb.nsfw_code(&["diff", &b], 0);
}

/// Starts `nsfw ARGS` and kills it (SIGKILL) after `after`; returns what it printed.
fn kill_after(sb: &Sandbox, args: &[&str], after: Duration) -> String {
    let mut child = sb.spawn_nsfw(args);
    std::thread::sleep(after);
    if let Some(pid) = common::inner_pid(&child) {
        // SAFETY: kill(2) on the nsfw our child runs (and waits for); at worst it has exited.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// With 1,000 applied, the apply that adds one namespace and the one that removes it, each
/// killed at a random instant (NSFW_SCALE_KILLS trials, 4 by default; `just scale-kills`
/// runs 40): the next apply converges, and diff finds nothing.
#[test]
fn adding_and_removing_one_of_a_thousand_converges_when_killed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size();
    let trials: u64 = std::env::var("NSFW_SCALE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let a = sb.file("a.toml", &four_bridges(n, false));
    let b = sb.file("b.toml", &four_bridges(n, true));
    sb.nsfw_code(&["apply", &a], 0);
    let t = Instant::now();
    sb.nsfw_code(&["apply", &b], 0);
    let span = (t.elapsed().as_millis() as u64).max(20) * 5 / 4;
    let mut rng = common::Instants::new();
    for trial in 0..trials {
        let seed = rng.next();
        // Odd trials remove `extra` (b is applied), even ones add it back.
        let f = if trial % 2 == 0 { &a } else { &b };
        let at = Duration::from_millis(seed % span);
        let err = kill_after(&sb, &["apply", f], at);
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
}

/// A run killed after making an address another namespace held (another MAC) but before
/// announcing it: the record notes the announcement before the address is made, so the next
/// apply makes it and the segment's neighbours learn the new MAC at once. The kill is
/// simulated exactly: the finished run's own announcement undone (its neighbour entry in
/// `new`, whose probes are the announcement, deleted; peer's and the host's entries back on
/// the old MAC) and the record as the killed run left it.
#[test]
fn an_announcement_a_killed_run_never_made_is_made_by_the_next_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let file = |who: &str| {
        format!(
            "name = \"killed\"\n[bridges.br0]\naddress = \"198.51.100.1/24\"\n[namespaces.peer]\nbridge = \"br0\"\naddress = \"198.51.100.2/24\"\n[namespaces.{who}]\nbridge = \"br0\"\naddress = \"198.51.100.5/24\"\n"
        )
    };
    let (old, new) = (
        sb.file("old.toml", &file("old")),
        sb.file("new.toml", &file("new")),
    );
    sb.nsfw_code(&["apply", &old], 0);
    assert!(sb.pings("peer", "198.51.100.5"));
    let was = lladdr(&sb, "-n peer", "198.51.100.5").expect("peer knows old's MAC");
    sb.nsfw_code(&["apply", &new], 0);
    let pending = r#"{"version":1,"pending":{"killed":{"announce":[{"ns":"new","ifname":"eth0","net":"198.51.100.5/24"}]}}}"#;
    sb.ok(&format!(
        "ip -n new neigh del 198.51.100.5 dev eth0
         ip -n peer neigh replace 198.51.100.5 lladdr {was} dev eth0 nud stale
         ip neigh replace 198.51.100.5 lladdr {was} dev br0 nud stale
         test ! -e /run/nsfw/record && echo '{pending}' > /run/nsfw/record"
    ));
    let out = sb.nsfw_code(&["diff", &new], 2);
    assert!(out.contains("~ announce 198.51.100.5 on new:eth0"), "{out}");
    sb.nsfw_code(&["apply", &new], 0);
    let mac = sb.ok("ip -n new -br link show eth0");
    for ns in ["-n peer", ""] {
        let got = lladdr(&sb, ns, "198.51.100.5");
        assert!(
            got.as_ref().is_some_and(|m| mac.contains(m.as_str())),
            "{ns}: entry {got:?}, new's link {mac}"
        );
    }
    // Made, it is no longer pending; one for an address nobody holds is dropped.
    sb.ok("test ! -e /run/nsfw/record");
    sb.ok(&format!(
        "echo '{}' > /run/nsfw/record",
        pending.replace("198.51.100.5/24", "198.51.100.99/24")
    ));
    let out = sb.nsfw_code(&["apply", &new], 0);
    assert!(out.contains("nothing to do"), "{out}");
    sb.ok("test ! -e /run/nsfw/record");
}
