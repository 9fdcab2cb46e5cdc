//! Impaired links: netem root qdiscs set, read back and removed by `plumbing::qdisc` over
//! rtnetlink, with `tc`, `ip` and `ping` as the witnesses.
//!
//! How the library reaches the kernel without touching the host: every kernel test makes a
//! `Sandbox` (a fresh network and mount namespace held by a process), then runs the library on
//! a short-lived thread that `setns(CLONE_NEWNET)`s into the sandbox's namespace. setns changes
//! the calling thread only, so the test's other threads stay where they were; the thread
//! checks that it is in the sandbox's namespace (same inode) before it opens a socket, and
//! dies after. The witnesses run inside the sandbox through `nsenter`, as in the other tests.
//! The unit tests of the parsers and of the encoding need no kernel: they are in `netem` and
//! `plumbing::qdisc`.
//!
//! Kernels without sch_netem (CONFIG_NET_SCH_NETEM unset, as on the project's own machines,
//! whose kernel has no modules) answer "Specified qdisc kind is unknown": the tests that need
//! netem then check that error and say on stderr that they skipped the rest, unless
//! NSFW_REQUIRE_NETEM is set, when they fail. The tests of other roots run everywhere. The
//! whole file passed with NSFW_REQUIRE_NETEM=1 on Debian's 6.1 kernel (which has netem) booted
//! under qemu over the host's files.

mod common;

use std::os::unix::fs::MetadataExt;

use common::Sandbox;
use netlink_packet_route::RouteNetlinkMessage;
use nix::sched::{CloneFlags, setns};
use nsfw::plumbing::Conn;
use nsfw::plumbing::qdisc::{self, Netem, Root};

/// Runs `f` with a netlink connection inside the sandbox's network namespace.
fn in_sandbox<T: Send>(sb: &Sandbox, f: impl FnOnce(&mut Conn) -> T + Send) -> T {
    let path = format!("/proc/{}/ns/net", sb.pid());
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path).expect("open the sandbox's namespace");
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("enter the sandbox's namespace");
            let here = std::fs::metadata("/proc/thread-self/ns/net").expect("own namespace");
            let there = std::fs::metadata(&path).expect("sandbox namespace");
            assert_eq!(
                here.ino(),
                there.ino(),
                "not in the sandbox: refusing to go on"
            );
            let mut c = Conn::open("sandbox").expect("netlink socket");
            f(&mut c)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A veth pair a ⇄ b, both up, in the sandbox.
fn veth(sb: &Sandbox) -> u32 {
    sb.ok(
        "ip link add name a type veth peer name b && ip link set dev a up && ip link set dev b up",
    );
    sb.ifindex(None, "a") as u32
}

/// Whether the sandbox's kernel has netem, found by setting one on interface `index` (and
/// removing it). Without it the error must say so, and name the interface.
fn has_netem(sb: &Sandbox, index: u32) -> bool {
    let n = Netem {
        latency_us: Some(1000),
        ..Netem::default()
    };
    let set = in_sandbox(sb, |c| c.run_all(&[qdisc::set_netem("a", index, &n)]));
    let Err(e) = set else {
        in_sandbox(sb, |c| del(c, index));
        return true;
    };
    let text = format!("{e:#}");
    assert!(
        text.contains("cannot set latency 1ms on a") && text.contains("qdisc kind is unknown"),
        "{text}"
    );
    assert!(
        std::env::var_os("NSFW_REQUIRE_NETEM").is_none(),
        "NSFW_REQUIRE_NETEM is set, and this kernel has no netem: {text}"
    );
    eprintln!("skipped: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): {text}");
    false
}

/// A sandbox with veth a ⇄ b, and a's index, when the kernel has netem.
fn netem_sandbox() -> Option<(Sandbox, u32)> {
    let sb = Sandbox::or_skip()?;
    let a = veth(&sb);
    has_netem(&sb, a).then_some((sb, a))
}

/// Every root of the namespace, from one dump.
fn all_roots(c: &mut Conn) -> Vec<(u32, Root)> {
    c.dump(qdisc::dump_req(), "qdiscs")
        .expect("qdisc dump")
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(tc) => qdisc::parse_root(tc),
            _ => None,
        })
        .collect()
}

/// What `parse` says of interface `index`'s root.
fn read(c: &mut Conn, index: u32) -> Option<Netem> {
    let all = c.dump(qdisc::dump_req(), "qdiscs").expect("qdisc dump");
    let mut found = all.iter().filter_map(|m| match m {
        RouteNetlinkMessage::NewQueueDiscipline(tc) => qdisc::parse(tc),
        _ => None,
    });
    found
        .find(|(i, _)| *i == index)
        .expect("the interface has a root qdisc")
        .1
}

fn set(c: &mut Conn, index: u32, n: &Netem) {
    c.run_all(&[qdisc::set_netem("a", index, n)])
        .expect("set netem");
}

fn del(c: &mut Conn, index: u32) {
    c.run_all(&[qdisc::del_root("a", index)])
        .expect("remove netem");
}

fn tc_root(sb: &Sandbox) -> String {
    sb.ok("tc qdisc show dev a root")
}

fn ms(v: u32) -> Option<u32> {
    Some(v * 1000)
}

#[test]
fn latency_is_set_and_read_back() {
    let Some((sb, a)) = netem_sandbox() else {
        return;
    };
    let n = Netem {
        latency_us: ms(20),
        ..Netem::default()
    };
    in_sandbox(&sb, |c| set(c, a, &n));
    let tc = tc_root(&sb);
    assert!(
        tc.contains("qdisc netem") && tc.contains("delay 20ms"),
        "{tc}"
    );
    assert!(!tc.contains("loss") && !tc.contains("rate"), "{tc}");
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(n));
}

#[test]
fn latency_jitter_loss_and_rate_together() {
    let Some((sb, a)) = netem_sandbox() else {
        return;
    };
    let n = Netem {
        latency_us: ms(20),
        jitter_us: ms(5),
        loss_ppm: Some(10_000),
        rate_bps: Some(10_000_000),
    };
    in_sandbox(&sb, |c| set(c, a, &n));
    let tc = tc_root(&sb);
    for want in ["qdisc netem", "delay 20ms  5ms", "loss 1%", "rate 10Mbit"] {
        assert!(tc.contains(want), "no {want:?} in {tc}");
    }
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(n));
}

/// Values that are not whole psched ticks (64 ns), loss that is not a whole percent, and a
/// rate past the u32 of TCA_NETEM_RATE come back exactly as sent.
#[test]
fn odd_values_come_back_exactly() {
    let Some((sb, a)) = netem_sandbox() else {
        return;
    };
    for n in [
        Netem {
            latency_us: Some(12_345),
            jitter_us: Some(1_001),
            loss_ppm: Some(1),
            rate_bps: Some(8),
        },
        Netem {
            latency_us: Some(4_000_000_001),
            jitter_us: Some(qdisc::MAX_JITTER_US),
            loss_ppm: Some(1_000_000),
            rate_bps: Some(40_000_000_000),
        },
        Netem {
            loss_ppm: Some(123_457),
            ..Netem::default()
        },
        Netem {
            rate_bps: Some(8 * (1 << 32)),
            ..Netem::default()
        },
    ] {
        assert_eq!(n.validate(), Ok(()));
        in_sandbox(&sb, |c| set(c, a, &n));
        assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(n), "{n}");
    }
}

#[test]
fn a_new_impairment_replaces_the_old_one_whole() {
    let Some((sb, a)) = netem_sandbox() else {
        return;
    };
    let first = Netem {
        latency_us: ms(20),
        rate_bps: Some(1_000_000),
        ..Netem::default()
    };
    let second = Netem {
        latency_us: ms(50),
        loss_ppm: Some(20_000),
        ..Netem::default()
    };
    in_sandbox(&sb, |c| set(c, a, &first));
    in_sandbox(&sb, |c| set(c, a, &second));
    let tc = tc_root(&sb);
    assert!(tc.contains("delay 50ms") && tc.contains("loss 2%"), "{tc}");
    assert!(!tc.contains("rate"), "the old rate stayed: {tc}");
    assert_eq!(tc.lines().count(), 1, "{tc}");
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(second));

    // A netem made by tc with more than the file can say reads as not nsfw's, and is replaced
    // whole: nothing of it survives.
    sb.ok(
        "tc qdisc replace dev a root netem limit 50 delay 10ms 2ms 25% loss 1% duplicate 5% \
         corrupt 1% reorder 10% gap 3 rate 1mbit 20 ecn slot 1ms 2ms",
    );
    let roots = in_sandbox(&sb, all_roots);
    let (_, root) = roots.iter().find(|(i, _)| *i == a).expect("a's root");
    match root {
        Root::Other(why) => {
            for w in [
                "limit 50",
                "gap",
                "duplicate",
                "correlation",
                "reorder",
                "corrupt",
                "ecn",
                "slots",
                "rate overheads",
            ] {
                assert!(why.contains(w), "no {w:?} in {why}");
            }
        }
        r => panic!("tc's netem read as {r:?}"),
    }
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), None);
    let third = Netem {
        latency_us: ms(30),
        ..Netem::default()
    };
    in_sandbox(&sb, |c| set(c, a, &third));
    let tc = tc_root(&sb);
    assert!(tc.contains("limit 1000 delay 30ms"), "{tc}");
    for w in [
        "loss",
        "duplicate",
        "corrupt",
        "reorder",
        "gap",
        "rate",
        "ecn",
        "slot",
        "  ",
    ] {
        assert!(!tc.trim_end().contains(w), "{w:?} survived: {tc}");
    }
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(third));

    // Another kind of root is replaced too.
    sb.ok("tc qdisc replace dev a root pfifo");
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), None);
    in_sandbox(&sb, |c| set(c, a, &first));
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(first));
}

#[test]
fn removing_puts_the_default_back() {
    let Some((sb, a)) = netem_sandbox() else {
        return;
    };
    let n = Netem {
        latency_us: ms(20),
        loss_ppm: Some(5_000),
        ..Netem::default()
    };
    in_sandbox(&sb, |c| set(c, a, &n));
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), Some(n));
    in_sandbox(&sb, |c| del(c, a));
    let tc = tc_root(&sb);
    assert!(tc.starts_with("qdisc noqueue 0: root"), "{tc}");
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), None);
    let roots = in_sandbox(&sb, all_roots);
    assert!(
        roots.contains(&(a, Root::Other("noqueue".to_string()))),
        "{roots:?}"
    );
    // Again: already gone.
    in_sandbox(&sb, |c| del(c, a));
    // Set again, and removed again.
    in_sandbox(&sb, |c| {
        set(c, a, &n);
        assert_eq!(read(c, a), Some(n));
        del(c, a);
        assert_eq!(read(c, a), None);
    });
}

/// Runs on any kernel: the default root and roots of other kinds are not nsfw's impairment,
/// and removing an impairment leaves them be.
#[test]
fn other_roots_are_not_nsfws() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let a = veth(&sb);
    let roots = in_sandbox(&sb, all_roots);
    assert!(
        roots.contains(&(a, Root::Other("noqueue".to_string()))),
        "{roots:?}"
    );
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), None);
    // Nothing to remove: the default root is no error, and stays.
    in_sandbox(&sb, |c| del(c, a));
    assert!(
        tc_root(&sb).starts_with("qdisc noqueue 0: root"),
        "{}",
        tc_root(&sb)
    );

    sb.ok("tc qdisc replace dev a root pfifo limit 100");
    let roots = in_sandbox(&sb, all_roots);
    assert!(
        roots.contains(&(a, Root::Other("pfifo".to_string()))),
        "{roots:?}"
    );
    assert_eq!(in_sandbox(&sb, |c| read(c, a)), None);
    in_sandbox(&sb, |c| del(c, a));
    assert!(tc_root(&sb).contains("qdisc pfifo"), "{}", tc_root(&sb));
}

#[test]
fn a_missing_interface_is_an_error_naming_it() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let n = Netem {
        latency_us: ms(1),
        ..Netem::default()
    };
    let err = in_sandbox(&sb, |c| c.run_all(&[qdisc::set_netem("ghost", 4242, &n)]))
        .expect_err("no interface 4242");
    let text = format!("{err:#}");
    assert!(
        text.contains("ghost") && text.contains("latency 1ms"),
        "{text}"
    );
}

/// (min, max) round-trip time in ms of `count` pings from the sandbox to the peer.
fn rtt(sb: &Sandbox, count: u32) -> (f64, f64) {
    let out = sb.ok(&format!("ping -n -q -c {count} -i 0.2 -W 2 10.99.0.2"));
    let line = out
        .lines()
        .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
        .unwrap_or_else(|| panic!("no rtt line in {out}"));
    let nums: Vec<f64> = line
        .split('=')
        .nth(1)
        .expect("rtt values")
        .trim()
        .trim_end_matches(" ms")
        .split('/')
        .map(|v| v.parse().expect("rtt number"))
        .collect();
    (nums[0], nums[2])
}

#[test]
fn ping_feels_the_latency_and_then_no_more() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("set -e
           ip netns add peer
           ip link add name a type veth peer name b netns peer
           ip addr add 10.99.0.1/24 dev a
           ip link set dev a up
           ip -n peer link set lo up
           ip -n peer addr add 10.99.0.2/24 dev b
           ip -n peer link set dev b up");
    let a = sb.ifindex(None, "a") as u32;
    if !has_netem(&sb, a) {
        return;
    }
    // The shortest round trip: every packet waits in netem; none does without it (the first
    // one also waits for ARP, and an emulated machine has slow moments).
    let (min, _) = rtt(&sb, 3);
    assert!(min < 5.0, "{min} ms before any impairment");
    let n = Netem {
        latency_us: ms(50),
        ..Netem::default()
    };
    in_sandbox(&sb, |c| set(c, a, &n));
    let (min, _) = rtt(&sb, 5);
    assert!(min >= 50.0, "{min} ms with 50ms of latency");
    assert!(min < 100.0, "{min} ms: only one way is impaired");
    in_sandbox(&sb, |c| del(c, a));
    let (min, _) = rtt(&sb, 5);
    assert!(min < 5.0, "{min} ms after the impairment went");
}
