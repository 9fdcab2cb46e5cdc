//! A kernel that refuses threads (EAGAIN: `pids.max` or RLIMIT_NPROC reached). nsfw reads
//! side by side only to be faster: each thread creation of an apply and of a flush is refused
//! in turn (strace's fault injection on clone3), and every run either succeeds or fails with
//! a clear error — never a panic —, the next apply converges, and a flush that cannot read
//! the namespaces changes nothing.

mod common;

use common::{NSFW, Sandbox, show};

const TOPOLOGY: &str = r#"name = "thr"
[bridges.br0]
address = "10.77.0.1/24"
[namespaces.a]
bridge = "br0"
address = "10.77.0.2/24"
[namespaces.b]
bridge = "br0"
address = "10.77.0.3/24"
"#;

/// Runs `nsfw ARGS` under strace with the `k`-th clone3 refused (0: none); its exit code
/// and stderr, and how many clone3 calls it made.
fn refused(sb: &Sandbox, args: &str, k: usize) -> (Option<i32>, String, usize) {
    let dir = sb.dir().display();
    let inject = match k {
        0 => String::new(),
        k => format!("-e inject=clone3:error=EAGAIN:when={k}"),
    };
    let o = sb.sh(&format!(
        "strace -f -qq -o {dir}/st -e trace=clone3 {inject} {NSFW} {args} >/dev/null 2>{dir}/err; \
         rc=$?; grep -c 'clone3(' {dir}/st; cat {dir}/err >&2; exit $rc"
    ));
    let calls = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        calls,
    )
}

#[test]
fn each_refused_thread_fails_a_run_cleanly_and_the_next_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    if !sb.sh("command -v strace").status.success() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let f = sb.file("thr.toml", TOPOLOGY);
    let (rc, err, calls) = refused(&sb, &format!("apply {f}"), 0);
    assert_eq!(rc, Some(0), "{err}");
    assert!(
        calls >= 3,
        "apply made {calls} threads: the test would prove nothing"
    );
    sb.nsfw_code(&["flush", &f], 0);
    for k in 1..=calls {
        let (rc, err, _) = refused(&sb, &format!("apply {f}"), k);
        assert!(
            matches!(rc, Some(0 | 1)),
            "apply, thread {k} refused: rc {rc:?}\n{err}"
        );
        assert!(
            !err.contains("panicked"),
            "apply, thread {k} refused:\n{err}"
        );
        if rc == Some(1) {
            assert!(err.contains("cannot start a thread"), "thread {k}:\n{err}");
        }
        sb.nsfw_code(&["apply", &f], 0);
        sb.nsfw_code(&["diff", &f], 0);
        sb.nsfw_code(&["flush", &f], 0);
    }
    sb.nsfw_code(&["apply", &f], 0);
    let (_, _, calls) = refused(&sb, &format!("flush {f}"), 0);
    for k in 1..=calls {
        sb.nsfw_code(&["apply", &f], 0);
        let before = sb.ok("ip -br link; ls /run/netns");
        let (rc, err, _) = refused(&sb, &format!("flush {f}"), k);
        assert!(
            !err.contains("panicked"),
            "flush, thread {k} refused:\n{err}"
        );
        match rc {
            Some(0) => assert_eq!(sb.ok("ls /run/netns"), "", "flush said done:\n{err}"),
            Some(1) => {
                // Nothing read, nothing changed: the namespaces and links are all there.
                assert!(err.contains("cannot start a thread"), "thread {k}:\n{err}");
                let o = sb.nsfw(&["diff", &f]);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "a failed flush changed the host\n{}",
                    show(&o)
                );
                assert_eq!(sb.ok("ip -br link; ls /run/netns"), before);
            }
            other => panic!("flush, thread {k} refused: rc {other:?}\n{err}"),
        }
    }
}
