//! `nsfw watch`'s memory (issue 21) as the file and the lock change under it: an edit keeps
//! what watch knows of the namespaces it asks the same of; watch answers while its own check
//! waits for the lock; apply and diff take the lock and ask watch before the file is parsed.
//! Each time, what a run takes from the memory must be what a full read sees.

mod common;
mod watchmem;

use common::{NSFW, Sandbox, show};
use watchmem::{applied_and_watched, remembered, settled, size, stop, timed, topology, until_said};

/// The file edited beside watch (a namespace more, m0 a router): watch keeps what it knows of
/// the others, reads m0 again with its new setting held open; drift there and in one kept is seen.
#[test]
fn an_edit_keeps_the_memory_of_namespaces_it_asks_the_same_of() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = applied_and_watched(&sb, n, false, 600_000);
    let routed = common::spread("mem", "m", 2, 110, n, "forward = true\n", true);
    sb.file("t.toml", &routed);
    let (code, out, err) = timed(&sb, &format!("apply {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    settled(&sb, &a, n + 1);
    let said = std::fs::read_to_string(format!("{a}.log")).unwrap_or_default();
    let kept = said
        .lines()
        .find_map(|l| l.split("the memory keeps ").nth(1)?.split(' ').next());
    assert!(
        kept.and_then(|k| k.parse().ok())
            .is_some_and(|k: usize| k >= n - 1),
        "{said}"
    );
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "clean after the edit:\n{out}\n{err}");
    sb.ok("ip netns exec m0 sysctl -qw net.ipv4.ip_forward=0; ip -n m7 route del default");
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(2), "the drift is shown:\n{out}\n{err}");
    assert!(remembered(&err).is_some_and(|k| k >= n - 2), "{err}");
    for want in ["m0", "route m7"] {
        assert!(out.contains(want), "diff does not name {want}:\n{out}");
    }
    stop(w);
}

/// watch answers while its check waits for the lock (an apply asks under it). The test holds
/// the lock, changes m5 and asks as an apply does: the answer comes, without m5.
#[test]
fn watch_answers_while_it_waits_for_the_lock() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = applied_and_watched(&sb, n, false, 20);
    let o = sb.sh(
        "exec 9</run/nsfw/lock && flock -x 9 && ip -n m5 link set eth0 down && sleep 1
        exec python3 -c '
import socket
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(\"/run/nsfw/watch-mem.sock\")
b = b\"\"
try:
    while c := s.recv(65536): b += c
except socket.timeout: pass
open(1, \"wb\").write(b)'",
    );
    // A place begins with its name, as postcard writes a string: its length, then it.
    let has = |name: &str| {
        o.stdout
            .windows(3)
            .any(|w| w == [&[2u8][..], name.as_bytes()].concat())
    };
    assert!(has("m6"), "no answer, or m6 not in it:\n{}", show(&o));
    assert!(!has("m5"), "m5 was heard changing, yet vouched for");
    // Once the lock is free, the change is repaired (by the apply, or by watch first).
    let (code, out, err) = timed(&sb, &format!("apply {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(sb.ok("ip -n m5 link show eth0").contains("state UP"));
    let (code, out, err) = timed(&sb, &format!("diff {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    stop(w);
}

/// apply and diff beside watch take the lock and ask watch before the file is parsed
/// (`commands::early`), and say nothing else differently: a file that does not parse is
/// refused as it is without watch, the lock let go; a lock someone holds makes the run wait
/// (or, with --no-wait, fail) as before, without asking early.
#[test]
fn the_lock_and_the_question_come_before_the_file_is_parsed() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = applied_and_watched(&sb, n, false, 600_000);
    const EARLY: &str = "watch asked before the file was parsed";
    sb.ok("ip -n m3 route del default");
    for (args, want) in [("diff", 2), ("apply", 0), ("diff", 0)] {
        let (code, out, err) = timed(&sb, &format!("{args} {a}"));
        assert_eq!(code, Some(want), "{args}:\n{out}\n{err}");
        assert!(err.contains(EARLY), "{args} did not ask early:\n{err}");
        assert!(remembered(&err).is_some_and(|k| k >= n - 1), "{err}");
    }
    let bad = sb.file(
        "bad.toml",
        &format!("{}[namespaces.m1]\nbogus = 1\n", topology(n, false)),
    );
    let plain = sb.sh(&format!("{NSFW} apply {bad}"));
    let (code, out, err) = timed(&sb, &format!("apply {bad}"));
    assert_eq!(code, plain.status.code(), "{out}\n{err}\n{}", show(&plain));
    // What NSFW_TIMING adds aside (the early question's thread may have its answer, and say
    // so, before the parse fails), the same errors.
    let said = |e: &str| {
        e.lines()
            .filter(|l| !l.starts_with("memory: ") && !l.starts_with("timing: "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(said(&err), said(&String::from_utf8_lossy(&plain.stderr)));
    // The lock was let go: a run that will not wait gets it.
    let (code, out, err) = timed(&sb, &format!("apply --no-wait {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    // Held by another: no early ask, and --no-wait fails as it always did.
    let o = sb.sh(&format!(
        "flock -x /run/nsfw/lock sleep 2 & sleep 0.3
         NSFW_WATCH_MEMORY=1 NSFW_TIMING=1 {NSFW} apply --no-wait {a}; echo code=$?; wait"
    ));
    let text = show(&o);
    assert!(
        text.contains("code=1") && text.contains("another nsfw"),
        "{text}"
    );
    assert!(!text.contains(EARLY), "{text}");
    stop(w);
}

/// A difference watch found, made right by someone else while its repair waited for the
/// lock: watch says there was nothing left to repair, not "repaired" with an empty plan.
#[test]
fn a_repair_someone_else_made_first_is_not_said_as_watchs() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = applied_and_watched(&sb, n, false, 20);
    sb.ok(
        "flock -s /run/nsfw/lock sh -c 'ip -n m3 route del default; sleep 1
           ip -n m3 route add default via 10.111.0.1 dev eth0; sleep 0.3'",
    );
    let said = until_said(&a, "→");
    assert!(said.contains("nothing left to repair"), "{said}");
    assert!(!said.contains("repaired in"), "{said}");
    stop(w);
}

/// The file written beside watch is followed at once, not at watch's next check: the socket
/// watch holds in a namespace the file no longer names (which keeps that namespace alive) is
/// closed before the apply deletes it. Following is not applying: the namespace stays until
/// a check or an apply.
#[test]
fn a_written_file_is_followed_at_once_and_not_applied() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = size().min(12);
    let (a, w) = applied_and_watched(&sb, n, true, 600_000);
    sb.file("t.toml", &topology(n, false));
    let said = until_said(&a, "the memory keeps");
    assert!(
        said.contains("forgets 1"),
        "the edit was not followed:\n{said}"
    );
    assert!(sb.ok("ip netns list").contains("extra"), "{said}");
    let (code, out, err) = timed(&sb, &format!("apply {a}"));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("- namespace extra"), "{out}");
    stop(w);
}
