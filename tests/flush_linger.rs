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

/// Keeps the kernel's namespace teardown busy: a namespace holding 2,000 veth pairs, deleted
/// right before the flush (`BALLAST`), takes the one worker that frees namespaces for a few
/// hundred ms, and the flushed namespaces queue behind it. Without it, this machine frees 120
/// namespaces before the next process has started, and nothing would be tested.
fn ballast(sb: &Sandbox) {
    sb.ok("ip netns add ballast && for i in $(seq 2000); do echo link add a$i type veth peer name b$i; done | ip -n ballast -batch -");
}

const BALLAST: &str = "ip netns del ballast";

/// The host's veths right now, counted by the shell between two commands.
const VETHS: &str = "echo veths=$(ip -o link show type veth | wc -l)";

fn lingered(out: &str) -> usize {
    out.lines()
        .filter_map(|l| l.strip_prefix("veths="))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[test]
fn diff_right_after_a_flush_sees_the_lingering_veths_as_gone() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    let fresh = sb.nsfw_code(&["diff", &f], 2);
    let mut seen = 0;
    for round in 0..3 {
        sb.nsfw_code(&["apply", &f], 0);
        ballast(&sb);
        let o = run(
            &sb,
            &f,
            &format!(
                "{BALLAST} && $NSFW flush $F >/dev/null && {VETHS} && $NSFW diff $F; echo exit=$?"
            ),
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        seen = seen.max(lingered(&out));
        // Exit 2: the host differs from the file (it is all to make again), as documented.
        assert!(out.contains("exit=2"), "round {round}:\n{}", show(&o));
        for l in out.lines() {
            assert!(
                !l.starts_with("- ") && !l.starts_with("~ veth") && !l.contains("in the way"),
                "round {round}: the diff after a flush names {l:?}:\n{out}"
            );
        }
        // The same creations as on a host that never had the topology (ip_forward stays on).
        let creations = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with("+ "))
                .map(String::from)
                .collect()
        };
        assert_eq!(creations(&fresh), creations(&out), "round {round}");
    }
    // The race was run: veths were still there when diff read the host.
    assert!(
        seen > 0,
        "no veth lingered after the flush: the test saw no race"
    );
}

#[test]
fn apply_right_after_a_flush_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    sb.nsfw_code(&["apply", &f], 0);
    let mut seen = 0;
    for round in 0..3 {
        ballast(&sb);
        let o = run(
            &sb,
            &f,
            &format!(
                "{BALLAST} && $NSFW flush $F >/dev/null && {VETHS} && $NSFW apply $F >/dev/null && $NSFW diff $F >/dev/null; echo exit=$?"
            ),
        );
        let out = String::from_utf8_lossy(&o.stdout);
        seen = seen.max(lingered(&out));
        assert!(out.contains("exit=0"), "round {round}:\n{}", show(&o));
        assert_eq!(sb.netns().len(), N, "round {round}");
        assert!(
            sb.pings("n0", "10.10.0.1"),
            "round {round}: n0 cannot reach its bridge"
        );
    }
    assert!(
        seen > 0,
        "no veth lingered after the flush: the test saw no race"
    );
}

#[test]
fn watch_does_not_rebuild_a_topology_flushed_while_its_veths_linger() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", &two_bridges("lab", N, 0));
    let mut seen = 0;
    for round in 0..3 {
        sb.nsfw_code(&["apply", &f], 0);
        let w = sb.spawn_nsfw(&["watch", &f]);
        // Watch is listening once it has checked the host and found it in sync.
        std::thread::sleep(Duration::from_millis(1500));
        ballast(&sb);
        let o = run(
            &sb,
            &f,
            &format!("{BALLAST} && $NSFW flush $F >/dev/null && {VETHS}"),
        );
        assert!(o.status.success(), "{}", show(&o));
        seen = seen.max(lingered(&String::from_utf8_lossy(&o.stdout)));
        std::thread::sleep(Duration::from_millis(1500));
        let left = sb.leftovers(&[]);
        if let Some(pid) = common::inner_pid(&w) {
            // SAFETY: kill(2) on the nsfw our child runs.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let o = w.wait_with_output().expect("watch");
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
    assert!(
        seen > 0,
        "no veth lingered after the flush: the test saw no race"
    );
}
