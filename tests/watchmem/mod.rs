//! What the tests of `nsfw watch`'s memory share (tests/memory.rs, tests/memory_edits.rs):
//! the topology, watch started beside, runs timed with what they took from the memory.
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{self, NSFW, Sandbox};

/// `n` namespaces on 2 bridges; with `extra`, one more.
pub fn topology(n: usize, extra: bool) -> String {
    common::spread("mem", "m", 2, 110, n, "", extra)
}

/// How many namespaces: 40, or NSFW_MEMORY_N.
pub fn size() -> usize {
    std::env::var("NSFW_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

/// `nsfw watch FILE` inside the sandbox, waiting a long while after a burst (so that the runs
/// of the test, not watch, repair what it breaks).
pub fn watch(sb: &Sandbox, file: &str) -> Child {
    sb.spawn_sh(&format!(
        "NSFW_WATCH_DEBOUNCE_MS=600000 NSFW_TIMING=1 exec {NSFW} watch {file}"
    ))
}

/// How many namespaces a run took from the memory (its NSFW_TIMING line), if it did.
pub fn remembered(stderr: &str) -> Option<usize> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("memory: "))
        .find_map(|l| l.split(' ').next().and_then(|n| n.parse().ok()))
}

/// `nsfw ARGS` with NSFW_TIMING: its exit code, stdout and stderr.
pub fn timed(sb: &Sandbox, args: &str) -> (Option<i32>, String, String) {
    let o = sb.sh(&format!("NSFW_WATCH_MEMORY=1 NSFW_TIMING=1 {NSFW} {args}"));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits until watch vouches for at least `n` namespaces (its first check done).
pub fn settled(sb: &Sandbox, file: &str, n: usize) {
    let t = Instant::now();
    loop {
        let (_, _, err) = timed(sb, &format!("diff {file}"));
        if remembered(&err).is_some_and(|k| k >= n) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "watch never vouched for {n} namespaces:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` namespaces applied from file `name` and watched, watch's first check done: the
/// file's path and watch.
pub fn watched(sb: &Sandbox, name: &str, n: usize) -> (String, Child) {
    let a = sb.file(name, &topology(n, false));
    sb.nsfw_code(&["apply", &a], 0);
    let w = watch(sb, &a);
    settled(sb, &a, n);
    (a, w)
}

/// `nsfw watch FILE` checking `debounce` ms after a change (at once after one to nsfw's
/// table), saying what it does in FILE.log.
pub fn logged_watch(sb: &Sandbox, file: &str, debounce: u64) -> Child {
    sb.spawn_sh(&format!(
        "NSFW_WATCH_DEBOUNCE_MS={debounce} NSFW_TIMING=1 exec {NSFW} watch {file} >{file}.log 2>&1"
    ))
}

pub fn stop(mut w: Child) {
    if let Some(pid) = common::inner_pid(&w) {
        // SAFETY: kill(2) on the watch our child runs; at worst it has exited.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let _ = w.wait();
}

/// `n` namespaces (one more with `extra`) applied from t.toml and watched by
/// [`logged_watch`], its first check done: the file's path and watch.
pub fn applied_and_watched(sb: &Sandbox, n: usize, extra: bool, debounce: u64) -> (String, Child) {
    let a = sb.file("t.toml", &topology(n, extra));
    sb.nsfw_code(&["apply", &a], 0);
    let w = logged_watch(sb, &a, debounce);
    settled(sb, &a, n + usize::from(extra));
    (a, w)
}

/// What watch has said in FILE.log, once it says `what` (or after 5 s).
pub fn until_said(file: &str, what: &str) -> String {
    let t = Instant::now();
    loop {
        let said = std::fs::read_to_string(format!("{file}.log")).unwrap_or_default();
        if said.contains(what) || t.elapsed() > Duration::from_secs(5) {
            return said;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
