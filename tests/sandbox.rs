//! The test sandbox takes every process started in it with it when the test ends, passed or
//! failed: in the background, as a daemon in a session of its own, in a named namespace
//! deleted meanwhile (a namespace lives while a process is in it), in a sandbox of its own
//! (as `nsfw try` makes), or spawned and never waited for.

mod common;

use std::time::{Duration, Instant};

use common::{NSFW, Sandbox, processes_of};

/// Starts long-lived processes every way a test does, each a copy of `sleep` under the
/// sandbox's directory so that its command line names it; returns that directory's name.
fn start_everything(sb: &Sandbox) -> (String, Vec<std::process::Child>) {
    let d = sb.dir().display().to_string();
    sb.ok(&format!(
        "set -e
         cp \"$(command -v sleep)\" {d}/sleeper
         {d}/sleeper 1001 >/dev/null 2>&1 &
         setsid -f {d}/sleeper 1002 >/dev/null 2>&1
         ip netns add gone
         ip netns exec gone {d}/sleeper 1003 >/dev/null 2>&1 &
         {NSFW} sandbox -- {d}/sleeper 1004 >/dev/null 2>&1 &
         sleep 0.2
         ip netns del gone"
    ));
    let spawned = vec![
        sb.spawn_sh(&format!("exec {d}/sleeper 1005")),
        sb.spawn_sh(&format!(
            "ip netns add x; exec ip netns exec x {d}/sleeper 1006"
        )),
    ];
    (d, spawned)
}

/// Which of the six sleepers under `d` run, waiting for them a little (they start in the
/// background).
fn running(d: &str) -> Vec<u32> {
    let t = Instant::now();
    loop {
        let mut up: Vec<u32> = processes_of(d)
            .iter()
            .filter_map(|p| p.split_once(' '))
            .filter_map(|(_, cmd)| cmd.strip_prefix(&format!("{d}/sleeper "))?.parse().ok())
            .collect();
        up.sort();
        if up.len() >= 6 || t.elapsed() > Duration::from_secs(5) {
            return up;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const ALL: [u32; 6] = [1001, 1002, 1003, 1004, 1005, 1006];

#[test]
fn every_process_started_in_a_sandbox_ends_with_it() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let (d, mut spawned) = start_everything(&sb);
    assert_eq!(running(&d), ALL, "{:#?}", processes_of(&d));
    drop(sb);
    assert_eq!(processes_of(&d), Vec::<String>::new());
    // The two the test started itself were killed, not left to finish.
    for c in &mut spawned {
        let status = c.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}

#[test]
fn a_test_that_fails_part_way_leaves_nothing_running_either() {
    if common::skip_without_root() {
        return;
    }
    let seen = std::sync::Mutex::new((String::new(), Vec::new()));
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = Sandbox::new();
        let (d, spawned) = start_everything(&sb);
        assert_eq!(running(&d), ALL);
        *seen.lock().expect("lock") = (d, spawned);
        panic!("a test failing with its servers up");
    }));
    assert!(failed.is_err());
    let (d, mut spawned) = seen.into_inner().expect("lock");
    assert!(!d.is_empty());
    assert_eq!(processes_of(&d), Vec::<String>::new());
    for c in &mut spawned {
        let status = c.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}

/// The sandbox `nsfw try` re-executes itself into, once it runs: (its pid, its network
/// namespace).
fn try_child(nsfw: u32) -> (u32, std::path::PathBuf) {
    let t = Instant::now();
    loop {
        if let Some(&c) = common::children_of(nsfw).first()
            && let Ok(net) = std::fs::read_link(format!("/proc/{c}/ns/net"))
            && Some(&net)
                != std::fs::read_link(format!("/proc/{nsfw}/ns/net"))
                    .ok()
                    .as_ref()
        {
            return (c, net);
        }
        assert!(t.elapsed() < Duration::from_secs(5), "try made no sandbox");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether any live process is still in network namespace `net`.
fn held(net: &std::path::Path) -> Vec<String> {
    let t = Instant::now();
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| std::fs::read_link(e.path().join("ns/net")).ok().as_deref() == Some(net))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() || t.elapsed() > Duration::from_millis(500) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `nsfw try` stopped by SIGTERM passes the stop on to its sandbox, which stops at a safe
/// point and ends, taking everything it made with it; killed outright (SIGKILL), it takes
/// the sandbox with it too (the kernel kills a sandbox whose parent dies).
#[test]
fn a_try_stopped_or_killed_leaves_no_sandbox_behind() {
    let Some(sb) = Sandbox::or_skip() else { return };
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let child = sb.spawn_nsfw(&["try"]);
        let nsfw = common::inner_pid(&child).expect("try started");
        let (inner, net) = try_child(nsfw);
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on the nsfw our child runs (and waits for).
        unsafe {
            libc::kill(nsfw as i32, signal);
        }
        let t = Instant::now();
        let out = child.wait_with_output().expect("wait");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "took {:?}",
            t.elapsed()
        );
        assert!(!out.status.success(), "{}", common::show(&out));
        if signal == libc::SIGTERM {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("interrupted: stopped at a safe point"),
                "{err}"
            );
        }
        assert_eq!(
            held(&net),
            Vec::<String>::new(),
            "sandbox {inner} outlived try"
        );
    }
}

/// A `try` stopped while its sandbox applies never advises `nsfw apply` (that would build the
/// lab on the real host, which `try` promises never to touch): it says the sandbox went with
/// everything it made.
#[test]
fn a_try_stopped_during_its_apply_advises_no_apply() {
    use std::io::{BufRead, BufReader, Read};
    let Some(sb) = Sandbox::or_skip() else { return };
    let mut child = sb.spawn_nsfw(&["try"]);
    let nsfw = common::inner_pid(&child).expect("try started");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    while !seen.contains("applying ") {
        let n = stdout.read_line(&mut seen).expect("read");
        assert!(n > 0, "try ended before applying: {seen}");
    }
    // SAFETY: kill(2) on the nsfw our child runs (and waits for).
    unsafe {
        libc::kill(nsfw as i32, libc::SIGTERM);
    }
    stdout.read_to_string(&mut seen).expect("read");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{seen}{err}");
    assert!(err.contains("interrupted"), "{seen}{err}");
    assert!(
        !err.contains("`nsfw apply") && !seen.contains("`nsfw apply"),
        "{seen}{err}"
    );
    assert!(
        format!("{seen}{err}").contains("nothing was left on the host"),
        "{seen}{err}"
    );
}
