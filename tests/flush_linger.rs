//! A flush returns without waiting for the kernel to tear the deleted namespaces down (as `ip
//! netns del` does not), and whatever runs right after sees their veths as gone while they
//! linger: `diff` names nothing to remove, `apply` converges (waiting for just the names it
//! makes again), and `watch` does not rebuild what was flushed. 120 namespaces, so the kernel
//! is still freeing veths when the next command reads the host; each step is repeated to catch
//! the race.

mod common;

use std::time::Duration;

use common::{NSFW, Sandbox, show, two_bridges};

const N: usize = 120;

/// Runs `script` (with `$NSFW` and `$F` set) in one shell inside the sandbox, so nothing but
/// the script's own commands stands between them; returns its output.
fn run(sb: &Sandbox, f: &str, script: &str) -> std::process::Output {
    sb.sh(&format!("NSFW={NSFW}; F={f}; {script}"))
}

/// Keeps the kernel's namespace teardown busy: a namespace holding 2,000 veth pairs is made
/// here, and deleted (`drop_names`) right before the topology's namespaces are removed by name as
/// `ip netns del` does; its teardown takes the one worker that frees namespaces for a few
/// hundred ms, and theirs queue behind it. A flush by nsfw cannot be timed so: its check
/// after the run takes the RTNL lock, which the kernel holds while it unregisters the
/// namespaces' devices, so the veths left when it returns are few or none.
fn ballast(sb: &Sandbox) {
    sb.ok("ip netns add ballast && for i in $(seq 2000); do echo link add a$i type veth peer name b$i; done | ip -n ballast -batch -");
}

/// The ballast deleted, then every namespace of the topology by name, in one `ip -batch`.
fn drop_names() -> String {
    let dels: String = (0..N).map(|i| format!("netns del n{i}\n")).collect();
    format!("ip netns del ballast && printf '{dels}' | ip -batch -")
}

/// The host's veths right now, counted by the shell between two commands.
const VETHS: &str = "echo veths=$(ip -o link show type veth | wc -l)";

fn lingered(out: &str) -> usize {
    out.lines()
        .filter_map(|l| l.strip_prefix("veths="))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// No line of a diff removes or repairs a veth (nor says one is in the way).
fn no_veth_removed(round: &str, out: &str) {
    for l in out.lines() {
        assert!(
            !(l.starts_with("- ") || l.starts_with("~ ")) || !l.contains("veth"),
            "{round}: the diff names {l:?}:\n{out}"
        );
        assert!(
            !l.contains("in the way") && !l.contains("peer is not in place"),
            "{round}: the diff names {l:?}:\n{out}"
        );
    }
}

#[test]
fn diff_right_after_a_flush_sees_the_lingering_veths_as_gone() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    let fresh = sb.nsfw_code(&["diff", &f], 2);
    let creations = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("+ "))
            .map(String::from)
            .collect()
    };
    for round in 0..3 {
        sb.nsfw_code(&["apply", &f], 0);
        let o = run(
            &sb,
            &f,
            "$NSFW flush $F >/dev/null && $NSFW diff $F; echo exit=$?",
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        // Exit 2: the host differs from the file (it is all to make again), as documented.
        assert!(out.contains("exit=2"), "round {round}:\n{}", show(&o));
        no_veth_removed(&format!("flush, round {round}"), &out);
        // The same creations as on a host that never had the topology (ip_forward stays on).
        assert_eq!(creations(&fresh), creations(&out), "round {round}");
    }
    // The names removed behind a long teardown: the veths surely linger when diff reads.
    let mut seen = 0;
    for round in 0..2 {
        sb.nsfw_code(&["apply", &f], 0);
        ballast(&sb);
        let o = run(
            &sb,
            &f,
            &format!("{} && {VETHS} && $NSFW diff $F; echo exit=$?", drop_names()),
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        seen = seen.max(lingered(&out));
        assert!(out.contains("exit=2"), "round {round}:\n{}", show(&o));
        no_veth_removed(&format!("ip netns del, round {round}"), &out);
        assert!(out.contains("+ veth veth-n0"), "round {round}:\n{out}");
    }
    assert!(seen > 0, "no veth lingered: the test saw no race");
}

#[test]
fn apply_right_after_a_flush_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    sb.nsfw_code(&["apply", &f], 0);
    let mut seen = 0;
    for round in 0..4 {
        // Even rounds flush; odd ones remove the names behind a long teardown, so that the
        // apply must make veths whose names the old ones still hold.
        let first = if round % 2 == 0 {
            "$NSFW flush $F >/dev/null".to_string()
        } else {
            ballast(&sb);
            drop_names()
        };
        let o = run(
            &sb,
            &f,
            &format!(
                "{first} && {VETHS} && $NSFW apply $F >/dev/null && $NSFW diff $F >/dev/null; echo exit=$?"
            ),
        );
        let out = String::from_utf8_lossy(&o.stdout);
        if round % 2 == 1 {
            seen = seen.max(lingered(&out));
        }
        assert!(out.contains("exit=0"), "round {round}:\n{}", show(&o));
        assert_eq!(sb.netns().len(), N, "round {round}");
        assert!(
            sb.pings("n0", "10.10.0.1"),
            "round {round}: n0 cannot reach its bridge"
        );
    }
    assert!(seen > 0, "no veth lingered: the test saw no race");
}

#[test]
fn watch_does_not_rebuild_a_topology_flushed_while_its_veths_linger() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    for round in 0..3 {
        sb.nsfw_code(&["apply", &f], 0);
        let w = sb.spawn_nsfw(&["watch", &f]);
        // Watch is listening once it has checked the host and found it in sync.
        std::thread::sleep(Duration::from_millis(1500));
        sb.nsfw_code(&["flush", &f], 0);
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(pid) = common::inner_pid(&w) {
            // SAFETY: kill(2) on the nsfw our child runs.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let o = w.wait_with_output().expect("watch");
        // Looked for once watch is gone: while it runs it serves its memory on
        // /run/nsfw/watch-lab.sock, which it removes as it exits; what it rebuilt stays.
        let left = sb.leftovers(&[]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            left.is_empty(),
            "round {round}: watch rebuilt {left:?}\n{text}"
        );
        assert!(
            !text.contains("repaired") && !text.contains("cannot repair"),
            "round {round}: watch repaired a flushed topology:\n{text}"
        );
    }
}
