//! Indexes trusted rather than read: the executor starts from the host's link indexes of the
//! run's one observation (it no longer dumps the host's links as it goes), and the recheck
//! asks again by name only for the host links the plan could have changed. State broken
//! behind nsfw's back between the observation and the run fails its own step, and the next
//! apply converges.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{Sandbox, show};

/// Stops `nsfw ARGS` between its plan and its first change: its standard output is a pipe
/// already full, and the line it prints before carrying the plan out ("applying ...") waits
/// for room. Runs `meanwhile` then, lets it go on, and returns its output.
fn between_plan_and_run(sb: &Sandbox, args: &[&str], meanwhile: &dyn Fn()) -> std::process::Output {
    use std::io::Write;
    let (mut r, mut w) = std::io::pipe().expect("pipe");
    let size = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).expect("pipe size");
    w.write_all(&vec![b'#'; usize::try_from(size).expect("size")])
        .expect("fill the pipe");
    let child = sb.spawn_nsfw_to(args, w.into());
    let pid = common::inner_pid(&child).expect("nsfw ended before it printed anything");
    let t = Instant::now();
    // `pipe_write`, or `anon_pipe_write` since 6.14.
    while !std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .unwrap_or_default()
        .ends_with("pipe_write")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "nsfw never wrote its first line"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    meanwhile();
    let drain = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out);
        out
    });
    let mut o = child.wait_with_output().expect("wait for nsfw");
    o.stdout = drain.join().expect("drain");
    o
}

/// The executor trusts the host's link indexes of the run's one observation (it dumps the
/// host's links no more): a link deleted behind nsfw's back after that observation fails its
/// own step, named, and the next apply, which observes again, converges.
#[test]
fn a_host_link_deleted_between_plan_and_run_fails_its_step_and_the_next_apply_converges() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let a = "name = \"stale\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\n\
        [namespaces.n0]\nbridge = \"br0\"\naddress = \"10.10.0.10\"\n\
        [namespaces.n1]\nbridge = \"br0\"\naddress = \"10.10.0.11\"\n";
    let f = sb.file("a.toml", a);
    sb.nsfw_code(&["apply", &f], 0);
    // The bridge's MTU changed: the host ends are set by the host build.
    let b = a.replace("10.10.0.1/24\"\n", "10.10.0.1/24\"\nmtu = 1400\n");
    let g = sb.file("b.toml", &b);
    let o = between_plan_and_run(&sb, &["apply", &g], &|| {
        sb.ok("ip link del veth-n0");
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        err.contains("veth-n0"),
        "the failed step names its link\n{}",
        show(&o)
    );
    assert!(!err.contains("panicked"), "{}", show(&o));
    sb.nsfw_code(&["apply", &g], 0);
    sb.nsfw_code(&["diff", &g], 0);
    assert!(sb.pings("n0", "10.10.0.11"));
    // A namespace added on a bridge deleted behind nsfw's back: the new pair's step fails
    // (the bridge's index, from the observation, is stale), and the next apply converges.
    let c = format!("{b}[namespaces.n2]\nbridge = \"br0\"\naddress = \"10.10.0.12\"\n");
    let h = sb.file("c.toml", &c);
    let o = between_plan_and_run(&sb, &["apply", &h], &|| {
        sb.ok("ip link del br0");
    });
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        show(&o)
    );
    sb.nsfw_code(&["apply", &h], 0);
    sb.nsfw_code(&["diff", &h], 0);
    assert!(sb.pings("n2", "10.10.0.10"));
}
