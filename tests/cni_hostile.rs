//! CNI mode against a hostile host and runtime (issue 26): ADDs and DELs killed at random
//! instants, configurations the kernel or the host would refuse, `CNI_NETNS` naming the
//! plugin's own namespace or a FIFO, and drift CHECK must see. After each, the host's links,
//! addresses, routes, sysctls and ruleset are compared with what they were before.

mod common;

use std::time::{Duration, Instant};

use common::{NSFW, Sandbox, show};
use serde_json::Value;

/// A network nsfw hands addresses of 10.88.0.0/22 out of itself, with `extra` keys.
fn conf(extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.1.0","name":"lab","type":"nsfw","subnet":"10.88.0.0/22","runtimeConfig":{{"portMappings":[{{"hostPort":8080,"containerPort":80}}]}}{extra}}}"#
    )
}

/// The host as a CNI plugin can change it: links, addresses, routes of every table, the
/// sysctls nsfw touches, the ruleset, and nsfw's files but the lock (once the uplink's IPv6
/// duplicate address detection is over: it changes addresses and routes on its own).
fn host_state(sb: &Sandbox) -> String {
    sb.ok(
        "for i in $(seq 50); do ip addr | grep -q tentative || break; sleep 0.1; done
           set -e
           ip -d link show | grep -v 'link/'; ip addr show; ip route show table all
           ip -6 route show table all
           cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/all/forwarding
           nft list ruleset
           find /run/nsfw -mindepth 1 ! -path /run/nsfw/lock",
    )
}

/// One plugin run in the sandbox: exit status and the JSON on stdout.
fn cni(sb: &Sandbox, cmd: &str, cid: &str, netns: &str, conf: &str) -> (i32, Value, String) {
    let f = sb.file(&format!("conf-{cmd}-{cid}.json"), conf);
    let o = sb.sh(&format!(
        "CNI_COMMAND={cmd} CNI_CONTAINERID={cid} CNI_NETNS={netns} CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni {NSFW} < {f}"
    ));
    let out = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap_or_default();
    (o.status.code().unwrap_or(-1), out, show(&o))
}

/// How many kills: `NSFW_CNI_KILLS` (`just cni-kills` runs 200), else 20 — CI's share of the
/// suite's time; the kills at every step are `killed_at_every_step_...`'s.
fn kills() -> usize {
    std::env::var("NSFW_CNI_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// kill -9 of ADDs and DELs at random instants, 20 at a time, each on a network of its own
/// (so that every killed ADD is its network's first, making the bridge, and every killed DEL
/// its last, removing it); after each kill an ADD of another container on that network must
/// succeed (and its DEL); then a DEL of every container killed leaves the host exactly as
/// before.
#[test]
fn killed_adds_and_dels_never_strand_the_host() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    let before = host_state(&sb);
    let template = r#"{"cniVersion":"1.1.0","name":"NET","type":"nsfw","subnet":"SUBNET","runtimeConfig":{"portMappings":[{"hostPort":PORT,"containerPort":80}]}}"#;
    let c = sb.file("conf.json", template);
    let workers = 20;
    let per = kills().div_ceil(workers);
    let run = |cmd: &str| {
        format!(
            "CNI_COMMAND={cmd} CNI_CONTAINERID=$cid CNI_NETNS=/run/netns/$cid CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni {NSFW} < $cid.json > /dev/null 2>$cid.err"
        )
    };
    let (add, del) = (run("ADD"), run("DEL"));
    let d = sb.dir().display().to_string();
    let outs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                let (sb, d, c, add, del) = (&sb, &d, &c, &add, &del);
                s.spawn(move || {
                    let script = format!(
                        "cd {d}
                         conf() {{ sed \"s/NET/k{w}x$i/; s|SUBNET|10.{w}.$i.0/24|; s/PORT/$1/\" {c} > $cid.json; }}
                         for i in $(seq {per}); do
                           cid=w{w}k$i; ip netns add $cid; echo $cid >> killed; conf $((10000 + {w} * 100 + i))
                           if (( RANDOM % 2 )); then
                             {add} & p=$!
                           else
                             {add} || echo \"FAIL: ADD $cid: $(cat $cid.err)\"
                             {del} & p=$!
                           fi
                           sleep 0.0$(printf %02d $((RANDOM % 30)))
                           kill -9 $p 2>/dev/null; wait $p 2>/dev/null
                           cid=w{w}n$i; ip netns add $cid; conf $((20000 + {w} * 100 + i))
                           {add} || echo \"FAIL: next ADD $cid: $(cat $cid.err)\"
                           {del} || echo \"FAIL: DEL $cid: $(cat $cid.err)\"
                           ip netns del $cid
                         done"
                    );
                    let o = sb.sh(&script);
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let fails: Vec<&str> = outs
        .iter()
        .flat_map(|o| o.lines())
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(fails.is_empty(), "{fails:#?}");
    let killed = std::fs::read_to_string(sb.dir().join("killed")).expect("killed");
    assert_eq!(killed.lines().count(), per * workers);
    for cid in killed.lines() {
        let conf = std::fs::read_to_string(sb.dir().join(format!("{cid}.json"))).expect("conf");
        let (code, _, text) = cni(&sb, "DEL", cid, &format!("/run/netns/{cid}"), &conf);
        assert_eq!(code, 0, "{text}");
        sb.ok(&format!("ip netns del {cid}"));
    }
    assert_eq!(host_state(&sb), before);
    // And a network works again from nothing.
    sb.ok("ip netns add last");
    let (code, _, text) = cni(&sb, "ADD", "last", "/run/netns/last", &conf(""));
    assert_eq!(code, 0, "{text}");
    assert!(sb.pings("last", "203.0.113.10"));
    let (code, _, text) = cni(&sb, "DEL", "last", "/run/netns/last", &conf(""));
    assert_eq!(code, 0, "{text}");
    sb.ok("ip netns del last");
    assert_eq!(host_state(&sb), before);
}

/// kill -9 at every step of an ADD and of a DEL, deterministically: strace kills the plugin
/// at its Nth netlink request (`sendto`: rtnetlink and the nftables batch), Nth `write` (the
/// sysctls, the record) and Nth `rename` (the record put in place), for every N until a run
/// finishes. After each: STATUS says ready, an ADD of another container on that network succeeds, DELs of both
/// succeed, and the host is exactly as before. (Random kills rarely land in the short windows
/// between making a link and marking it; these land in each.)
#[test]
fn killed_at_every_step_an_add_or_del_leaves_nothing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    if sb.sh("command -v strace").status.code() != Some(0) {
        eprintln!("skipped: strace missing (scripts/install-deps)");
        return;
    }
    sb.upstream(&[]);
    let before = host_state(&sb);
    // The victim publishes a port, the next container none (the port is the victim's until
    // its DEL).
    let victim = sb.file("victim.json", &conf(""));
    let next = sb.file(
        "next.json",
        &conf("").replace(r#""hostPort":8080"#, r#""hostPort":8081"#),
    );
    let run = |cmd: &str, cid: &str, inject: &str| {
        let c = if cid == "victim" { &victim } else { &next };
        let strace = if inject.is_empty() {
            String::new()
        } else {
            format!("strace -f -o /dev/null -e inject={inject}:signal=KILL ")
        };
        sb.sh(&format!(
            "CNI_COMMAND={cmd} CNI_CONTAINERID={cid} CNI_NETNS=/run/netns/{cid} CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni {strace}{NSFW} < {c}"
        ))
    };
    sb.ok("ip netns add victim; ip netns add next");
    let mut kills = 0;
    for cmd in ["ADD", "DEL"] {
        for call in ["sendto", "write", "rename"] {
            for n in 1.. {
                if cmd == "DEL" {
                    let o = run("ADD", "victim", "");
                    assert!(o.status.success(), "{}", show(&o));
                }
                let o = run(cmd, "victim", &format!("{call}:when={n}"));
                let killed = o.status.code() == Some(137)
                    || o.status.code().is_none()
                    || String::from_utf8_lossy(&o.stderr).contains("+++ killed by SIGKILL");
                let at = format!("{cmd} killed at {call} #{n}");
                let o = run("STATUS", "victim", "");
                assert!(o.status.success(), "{at}: STATUS\n{}", show(&o));
                let o = run("ADD", "next", "");
                assert!(o.status.success(), "{at}: the next ADD\n{}", show(&o));
                for cid in ["victim", "next"] {
                    let o = run("DEL", cid, "");
                    assert!(o.status.success(), "{at}: DEL {cid}\n{}", show(&o));
                }
                assert_eq!(host_state(&sb), before, "{at}");
                if !killed {
                    break;
                }
                kills += 1;
                assert!(n < 200, "{cmd} never finished under strace");
            }
        }
    }
    eprintln!("{kills} kills, each at another step");
    assert!(kills > 20, "only {kills} kills landed");
}

/// Each configuration the kernel or the host would refuse is refused before anything changes:
/// the host and the container's namespace are as they were.
#[test]
fn refused_configurations_change_nothing() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    sb.ok("ip netns add c1; ip link add foreign0 type veth peer name foreign1");
    let before = (
        host_state(&sb),
        sb.ok("ip -n c1 -d link show; ip -n c1 route"),
    );
    let plain = |subnet: &str, extra: &str| {
        format!(r#"{{"cniVersion":"1.1.0","name":"lab","type":"nsfw","subnet":"{subnet}"{extra}}}"#)
    };
    let cases = [
        (plain("0.0.0.0/0", ""), 7, "whole IPv4"),
        (plain("0.0.0.0/24", ""), 7, "0.0.0.0/8"),
        (plain("127.0.0.0/24", ""), 7, "127.0.0.0/8"),
        (plain("169.254.3.0/24", ""), 7, "169.254.0.0/16"),
        (plain("224.0.0.0/24", ""), 7, "224.0.0.0/4"),
        (plain("255.255.255.0/24", ""), 7, "240.0.0.0/4"),
        (
            plain("198.51.100.0/24", ""),
            7,
            "198.51.100.0/24 dev uplink",
        ),
        (
            plain("198.51.100.128/25", ""),
            7,
            "198.51.100.0/24 dev uplink",
        ),
        (
            plain("10.88.0.0/24", r#","gateway":"10.88.0.255""#),
            7,
            "broadcast",
        ),
        (
            plain("10.88.0.0/24", r#","gateway":"10.88.0.0""#),
            7,
            "network address",
        ),
        (
            plain("10.88.0.0/24", r#","gateway":"10.99.0.1""#),
            7,
            "not in subnet",
        ),
        (plain("10.88.0.0/24", r#","mtu":67"#), 7, "68-65535"),
        (
            format!(
                r#"{{"cniVersion":"1.0.0","name":"lab","type":"nsfw","ipam":{{"type":"host-local","dataDir":"{}/ipam","ranges":[[{{"subnet":"10.89.0.0/24"}}]],"routes":[{{"dst":"10.1.0.0/16","gw":"192.0.2.1"}}]}}}}"#,
                sb.dir().display()
            ),
            7,
            "not in subnet",
        ),
        (
            plain("10.88.0.0/24", r#","bridge":"foreign0""#),
            100,
            "not network lab's bridge",
        ),
    ];
    for (c, want, says) in &cases {
        let (code, out, text) = cni(&sb, "ADD", "c1", "/run/netns/c1", c);
        assert_eq!(
            (code, out["code"].as_i64()),
            (1, Some(*want)),
            "{c}\n{text}"
        );
        let msg = format!("{}", out["msg"]);
        assert!(msg.contains(says), "{c}: {msg}");
        let after = (
            host_state(&sb),
            sb.ok("ip -n c1 -d link show; ip -n c1 route"),
        );
        assert_eq!(after, before, "{c}");
    }
    // An IPv4 network below IPv6's minimum MTU works (the kernel gives such links no IPv6,
    // and nsfw asks nothing of IPv6 there), and DEL leaves nothing.
    let small = plain("10.88.0.0/24", r#","mtu":576"#);
    let (code, _, text) = cni(&sb, "ADD", "c1", "/run/netns/c1", &small);
    assert_eq!(code, 0, "{text}");
    assert!(sb.ok("ip -n c1 link show eth0").contains("mtu 576"));
    assert!(sb.pings("c1", "10.88.0.1"));
    let (code, _, text) = cni(&sb, "DEL", "c1", "/run/netns/c1", &small);
    assert_eq!(code, 0, "{text}");
    assert_eq!(host_state(&sb), before.0);
}

/// An ADD that fails half-way — here for want of file descriptors (EMFILE) at whatever step
/// the limit cuts it — undoes everything it did, forwarding included; one that gets through
/// is DELeted. Either way the host is as before.
#[test]
fn an_add_failing_half_way_undoes_everything() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    sb.ok("echo 0 > /proc/sys/net/ipv4/ip_forward; ip netns add c1");
    let before = host_state(&sb);
    let c = sb.file("conf.json", &conf(""));
    let mut failed = 0;
    for n in 4..=24 {
        let o = sb.sh(&format!(
            "ulimit -n {n}; CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/c1 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni {NSFW} < {c}"
        ));
        if o.status.success() {
            let (code, _, text) = cni(&sb, "DEL", "c1", "/run/netns/c1", &conf(""));
            assert_eq!(code, 0, "{text}");
        } else {
            failed += 1;
        }
        assert_eq!(host_state(&sb), before, "ulimit -n {n}: {}", show(&o));
        assert_eq!(
            sb.ok("ip -n c1 -o link show | wc -l").trim(),
            "1",
            "ulimit -n {n}"
        );
    }
    assert!(failed > 0, "no limit made the ADD fail");
}

/// The kernel refusing any one request of an ADD (strace makes the Nth netlink `sendto` fail
/// with EPERM, or the Nth `write`, a sysctl or the record, with EIO): the ADD fails, and what
/// it did before is undone — the bridge, the pair, the table, `ip_forward` — so the host is
/// as before.
#[test]
fn an_add_the_kernel_refuses_half_way_undoes_everything() {
    let Some(sb) = Sandbox::or_skip() else { return };
    if sb.sh("command -v strace").status.code() != Some(0) {
        eprintln!("skipped: strace missing (scripts/install-deps)");
        return;
    }
    sb.upstream(&[]);
    sb.ok("echo 0 > /proc/sys/net/ipv4/ip_forward; ip netns add c1");
    let before = host_state(&sb);
    let c = sb.file("conf.json", &conf(""));
    let mut failed = 0;
    for (call, error, most) in [("sendto", "EPERM", 20), ("write", "EIO", 10)] {
        for n in 1..=most {
            let o = sb.sh(&format!(
                "CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/c1 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni strace -f -o /dev/null -e inject={call}:error={error}:when={n} {NSFW} < {c}"
            ));
            if o.status.success() {
                let (code, _, text) = cni(&sb, "DEL", "c1", "/run/netns/c1", &conf(""));
                assert_eq!(code, 0, "{text}");
            } else {
                failed += 1;
            }
            let at = format!("{call} #{n} failing with {error}: {}", show(&o));
            assert_eq!(host_state(&sb), before, "{at}");
            assert_eq!(sb.ok("ip -n c1 -o link show | wc -l").trim(), "1", "{at}");
        }
    }
    assert!(failed > 10, "only {failed} ADDs failed");
}

/// `CNI_NETNS` naming the plugin's own namespace (the host's, by any path), a FIFO, a
/// symbolic link, another type of namespace or a plain file: an error at once, nothing changed.
#[test]
fn cni_netns_must_be_another_network_namespace() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    let d = sb.dir().display().to_string();
    sb.ok(&format!(
        "set -e; ip netns add c1
         touch /run/netns/host /run/netns/uts
         mount --bind /proc/1/ns/net /run/netns/host; mount --bind /proc/1/ns/uts /run/netns/uts
         mkfifo {d}/fifo; ln -s /run/netns/c1 {d}/link; echo x > {d}/plain"
    ));
    let before = host_state(&sb);
    let c = conf("");
    for (netns, says) in [
        ("/proc/self/ns/net", "plugin's own"),
        ("/proc/1/ns/net", "plugin's own"),
        ("/run/netns/host", "plugin's own"),
        (&format!("{d}/fifo") as &str, "not a namespace file"),
        (&format!("{d}/link"), "symbolic link"),
        ("/run/netns/uts", "not a network namespace"),
        ("/proc/self/ns/mnt", "symbolic link"),
        (&format!("{d}/plain"), "not a namespace file"),
    ] {
        let t = Instant::now();
        let (code, out, text) = cni(&sb, "ADD", "c1", netns, &c);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{netns}: {:?}",
            t.elapsed()
        );
        assert_eq!(
            (code, out["code"].as_i64()),
            (1, Some(4)),
            "{netns}\n{text}"
        );
        assert!(
            format!("{}", out["msg"]).contains(says),
            "{netns}: {}",
            out["msg"]
        );
        assert_eq!(host_state(&sb), before, "{netns}");
    }
    // CHECK opens it the same way.
    let checked = conf(r#","prevResult":{"cniVersion":"1.1.0","interfaces":[],"ips":[]}"#);
    let (code, out, _) = cni(&sb, "CHECK", "c1", &format!("{d}/fifo"), &checked);
    assert_eq!((code, out["code"].as_i64()), (1, Some(4)));
}

/// CHECK sees a bridge set down and forwarding turned off.
#[test]
fn check_sees_the_bridge_down_and_forwarding_off() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("ip netns add c1");
    let c = conf("");
    let (code, out, text) = cni(&sb, "ADD", "c1", "/run/netns/c1", &c);
    assert_eq!(code, 0, "{text}");
    let mut v: Value = serde_json::from_str(&c).expect("conf");
    v["prevResult"] = out;
    let checked = v.to_string();
    let (code, _, text) = cni(&sb, "CHECK", "c1", "/run/netns/c1", &checked);
    assert_eq!(code, 0, "{text}");
    sb.ok("ip link set nsfw-lab down; echo 0 > /proc/sys/net/ipv4/ip_forward");
    let (code, out, text) = cni(&sb, "CHECK", "c1", "/run/netns/c1", &checked);
    assert_eq!((code, out["code"].as_i64()), (1, Some(101)), "{text}");
    let details = format!("{}", out["details"]);
    assert!(details.contains("bridge nsfw-lab is down"), "{details}");
    assert!(details.contains("forwarding is off"), "{details}");
}
