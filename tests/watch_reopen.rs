//! `nsfw watch` keeps listening inside namespaces that an `nsfw apply` it did not run made
//! (again): after `nsfw flush F && nsfw apply F` by hand, when it was started before the first
//! apply, and for a namespace added to the file and applied by hand. Each time drift inside
//! those namespaces (a route deleted, the router's own nsfw table deleted) is repaired within
//! seconds — a watch that never opened a socket there hears nothing of it.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{NSFW, Sandbox};

/// The router lab with the router masquerading: the router holds an nsfw table of its own.
fn lab() -> String {
    include_str!("../rulesets/router.toml")
        .replace("forward = true", "forward = true\nmasquerade = \"eth0\"")
}

/// `nsfw watch FILE` inside the sandbox, its output in `log` (debounce: `ms`).
fn watch(sb: &Sandbox, file: &str, log: &str, ms: u64) -> Child {
    sb.spawn_sh(&format!(
        "NSFW_WATCH_DEBOUNCE_MS={ms} NSFW_TIMING=1 exec {NSFW} watch {file} >{log} 2>&1"
    ))
}

fn text(log: &str) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until `log` holds `what` `n` times; panics with it after 10 s.
fn wait_for(log: &str, what: &str, n: usize) {
    let t0 = Instant::now();
    while text(log).matches(what).count() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "watch did not say {what:?} {n} time(s):\n{}",
            text(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `ok` every 50 ms for up to 4 s.
fn within(ok: &dyn Fn() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn stop(mut w: Child) {
    if let Some(pid) = common::inner_pid(&w) {
        // SAFETY: kill(2) on the watch our child runs; at worst it has exited.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let _ = w.wait();
}

/// Long enough for the host's late notifications of an apply (the bridges' ports coming up)
/// to have been heard and checked: a check they start would read, and repair, drift made
/// before it, listening or not.
const SETTLE: Duration = Duration::from_millis(1500);

/// A default route deleted inside ns3 and the router's nsfw table deleted: watch puts both
/// back within seconds.
fn drift_is_repaired(sb: &Sandbox, log: &str) {
    sb.ok("ip -n ns3 route del default
         ip netns exec router nft delete table inet nsfw_router");
    let route = within(&|| sb.ok("ip -n ns3 route show default").contains("default"));
    let table = within(&|| {
        sb.ok("ip netns exec router nft list tables")
            .contains("inet nsfw_router")
    });
    assert!(
        route && table,
        "route back: {route}, router's table back: {table}:\n{}",
        text(log)
    );
}

#[test]
fn watch_repairs_drift_inside_namespaces_remade_by_a_flush_and_apply_by_hand() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", &lab());
    let log = sb.dir().join("watch.log").display().to_string();
    sb.nsfw_code(&["apply", &f], 0);
    let w = watch(&sb, &f, &log, 200);
    wait_for(&log, "listening to nf_tables", 1);
    std::thread::sleep(Duration::from_millis(300));
    let checks = text(&log).matches("checked in").count();
    sb.ok(&format!(
        "{NSFW} flush {f} >/dev/null && {NSFW} apply {f} >/dev/null"
    ));
    // Past the check that follows the apply: what comes next is heard, or never repaired.
    // (Whether watch also saw the topology gone depends on whether its check got the lock
    // between the two runs: waiting for it, watch goes on answering and polls the lock.)
    wait_for(&log, "checked in", checks + 1);
    std::thread::sleep(SETTLE);
    drift_is_repaired(&sb, &log);
    sb.nsfw_code(&["diff", &f], 0);
    stop(w);
}

#[test]
fn watch_started_before_the_first_apply_repairs_drift_inside_namespaces() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", &lab());
    let log = sb.dir().join("watch.log").display().to_string();
    let w = watch(&sb, &f, &log, 200);
    wait_for(&log, "waiting for `nsfw apply", 1);
    sb.nsfw_code(&["apply", &f], 0);
    wait_for(&log, "matches the file again", 1);
    std::thread::sleep(SETTLE);
    drift_is_repaired(&sb, &log);
    sb.nsfw_code(&["diff", &f], 0);
    stop(w);
}

#[test]
fn watch_repairs_drift_inside_a_namespace_added_to_the_file_and_applied_by_hand() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("router.toml", &lab());
    let log = sb.dir().join("watch.log").display().to_string();
    sb.nsfw_code(&["apply", &f], 0);
    // No debounce: watch checks (and reloads the file) as soon as it hears of the new
    // namespace, while the apply that makes it is still running.
    let w = watch(&sb, &f, &log, 0);
    wait_for(&log, "listening to nf_tables", 1);
    std::thread::sleep(Duration::from_millis(300));
    sb.file(
        "router.toml",
        &(lab() + "\n[namespaces.ns4]\nbridge = \"br0\"\naddress = \"10.10.0.4/24\"\n"),
    );
    sb.nsfw_code(&["apply", &f], 0);
    wait_for(&log, "the file changed", 1);
    std::thread::sleep(SETTLE);
    sb.ok("ip -n ns4 route del default");
    let back = within(&|| sb.ok("ip -n ns4 route show default").contains("default"));
    assert!(back, "ns4's default route not put back:\n{}", text(&log));
    sb.nsfw_code(&["diff", &f], 0);
    stop(w);
}
