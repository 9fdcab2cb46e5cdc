//! `nsfw why`: the file's answer (verdict, deciding entry and its line) and the kernel's, from
//! one traced packet, for the flows of a lab with a policy; a foreign drop named with its fix;
//! nothing left behind, also after kill -9 mid-trace.

mod common;

use common::{Sandbox, inner_pid, show};
use serde_json::Value;

const LAB: &str = r#"name = "whylab"

[host]
protect = true
routes = [{ to = "10.30.0.0/24", via = "10.10.0.254" }]

[bridges.br0]
address = "10.10.0.1/24"
address6 = "2001:db8:10::1/64"
masquerade = true
masquerade6 = true

[bridges.br1]
address = "10.20.0.1/24"
isolate = true
egress = "deny"
masquerade = true

[bridges.br2]

[namespaces.web]
bridge = "br0"
address = "10.10.0.2/24"
address6 = "2001:db8:10::2/64"
publish = ["8080:80/tcp"]

[namespaces.db]
bridge = "br0"
address = "10.10.0.3/24"
address6 = "2001:db8:10::3/64"

[namespaces.a]
bridge = "br1"
address = "10.20.0.2/24"

[namespaces.b]
bridge = "br1"
address = "10.20.0.3/24"

[namespaces.r]
forward = true
masquerade = "eth0"
routes = [{ to = "0.0.0.0/0", via = "10.10.0.1" }]

[namespaces.r.interfaces.eth0]
bridge = "br0"
address = "10.10.0.254/24"

[namespaces.r.interfaces.eth1]
bridge = "br2"
address = "10.30.0.1/24"

[namespaces.c]
bridge = "br2"
address = "10.30.0.2/24"
gateway = "10.30.0.1"

[[allow]]
from = "a"
to = "web"
ports = ["tcp/80", "udp/5353"]

[[deny]]
from = "web"
to = "db"
ports = ["tcp/5432"]

[[allow]]
from = "web"
to = "host"
ports = ["tcp/22"]

[[allow]]
from = "a"
to = "world"
ports = ["tcp/443"]

[[allow]]
from = "world"
to = "db"
ports = ["tcp/5432"]
"#;

/// The 1-based line of the `nth` (0-based) line equal to `header` in LAB.
fn line_of(header: &str, nth: usize) -> usize {
    LAB.lines()
        .enumerate()
        .filter(|(_, l)| *l == header)
        .nth(nth)
        .map(|(i, _)| i + 1)
        .expect("header in LAB")
}

fn why(sb: &Sandbox, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut a = vec!["why", "--json"];
    a.extend(args);
    let o = sb.nsfw(&a);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, show(&o))
}

/// (from, to, l4, extra flag, allowed, the deciding entry's tag)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
);

const FLOWS: &[Case] = &[
    ("a", "web", "tcp/80", "", true, Some("allow#1")),
    ("a", "web", "tcp/81", "", false, None),
    ("a", "web", "udp/5353", "", true, Some("allow#1")),
    ("a", "web", "udp/5354", "", false, None),
    ("a", "b", "icmp", "", false, Some("isolate:br1")),
    ("web", "db", "tcp/5432", "", false, Some("deny#1")),
    ("web", "db", "tcp/80", "", true, None),
    ("web", "host", "tcp/22", "", true, Some("allow#2")),
    ("web", "host", "tcp/23", "", false, Some("protect")),
    ("db", "host", "icmp", "", true, None),
    ("a", "world", "tcp/443", "", true, Some("allow#3")),
    ("a", "world", "tcp/80", "", false, Some("egress:br1")),
    ("web", "world", "icmp", "", true, None),
    ("world", "host", "tcp/8080", "", true, Some("publish:web#1")),
    ("db", "host", "tcp/8080", "", true, Some("publish:web#1")),
    (
        "host",
        "127.0.0.1",
        "tcp/8080",
        "",
        true,
        Some("publish:web#1"),
    ),
    ("world", "web", "tcp/80", "", false, None),
    ("world", "db", "tcp/5432", "", true, Some("allow#4")),
    ("c", "web", "tcp/80", "", true, None),
    ("c", "world", "icmp", "", true, None),
    ("web", "c", "tcp/80", "", false, Some("ns:r")),
    // Through the masquerading router into the protected host: traced after r's NAT.
    ("c", "10.10.0.1", "tcp/22", "", false, Some("protect")),
    // `host` behind the router is the host r reaches, not the world.
    ("c", "host", "tcp/22", "", false, Some("protect")),
    ("web", "db", "icmp", "-6", true, None),
    ("web", "db", "tcp/5432", "-6", false, Some("deny#1")),
    ("web", "world", "tcp/443", "-6", true, None),
    ("world", "web", "tcp/80", "-6", false, None),
];

#[test]
fn why_gives_the_deciding_entry_and_the_packets_real_fate() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = FLOWS
            .chunks(FLOWS.len().div_ceil(4))
            .map(|chunk| {
                let (sb, f) = (&sb, &f);
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (from, to, l4, flag, allowed, tag) in chunk {
                        let mut args = vec!["--sandbox", "-f", f.as_str(), from, to, l4];
                        if !flag.is_empty() {
                            args.push(flag);
                        }
                        let (code, v, out) = why(sb, &args);
                        let k = &v["kernel"];
                        let what = format!("{from} → {to} {l4} {flag}");
                        if v["file"]["allowed"] != *allowed {
                            bad.push(format!("{what}: the file's verdict\n{out}"));
                        }
                        if v["file"]["entry"].as_str() != *tag {
                            bad.push(format!("{what}: the deciding entry\n{out}"));
                        }
                        if tag.is_some()
                            && !v["file"]["decided_by"]
                                .as_str()
                                .unwrap_or("")
                                .contains("lab.toml:")
                        {
                            bad.push(format!("{what}: no line of the file\n{out}"));
                        }
                        // The trace's verdict is the packet's real fate (the sandbox's
                        // listeners answer what gets through), and the file's.
                        if k["passed"] != k["answered"] || k["passed"] != *allowed {
                            bad.push(format!("{what}: trace, fate and file differ\n{out}"));
                        }
                        // A blocked flow the trace saw is dropped where the trace saw it.
                        if !allowed && k["traced"] == true && k["trace_dropped"] != true {
                            bad.push(format!("{what}: the trace lost the drop\n{out}"));
                        }
                        if code != Some(0) {
                            bad.push(format!("{what}: exit {code:?}\n{out}"));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(FLOWS.len() >= 20);
}

#[test]
fn why_names_the_line_and_the_nsfw_rules_the_packet_met() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let (_, v, out) = why(&sb, &["--sandbox", "-f", &f, "web", "db", "tcp/5432"]);
    let want = format!("[[deny]] #1 at {f}:{}", line_of("[[deny]]", 0) + 1);
    assert_eq!(v["file"]["decided_by"], want.as_str(), "{out}");
    let steps = v["kernel"]["steps"].as_array().expect("steps");
    let last = steps.last().expect("a step");
    assert_eq!(last["verdict"], "drop", "{out}");
    assert_eq!(last["nsfw"], true, "{out}");
    assert_eq!(last["entry"], want.as_str(), "{out}");
    // From a namespace, 127.0.0.1 is its own loopback: not asked as the host's.
    let (code, _, out) = why(
        &sb,
        &["--sandbox", "-f", &f, "web", "127.0.0.1", "tcp/8080"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("web's own loopback"), "{out}");
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) on the nsfw our child runs (and waits for); at worst it has exited.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Asserts the two states are the same, showing only the lines that differ.
fn same(a: &str, b: &str, what: &str) {
    if a != b {
        let la: Vec<&str> = a.lines().collect();
        let lb: Vec<&str> = b.lines().collect();
        let gone: Vec<&&str> = la.iter().filter(|l| !lb.contains(l)).collect();
        let new: Vec<&&str> = lb.iter().filter(|l| !la.contains(l)).collect();
        panic!("{what}: before only {gone:#?}, after only {new:#?}");
    }
}

/// The ruleset and the sysctls of the sandbox's host, as witnesses print them.
fn state(sb: &Sandbox) -> String {
    sb.ok("nft -s list ruleset; sysctl net.ipv4.conf net.ipv6.conf net.ipv4.ip_forward 2>/dev/null | sort; for n in $(ls /run/netns); do echo \"== $n\"; ip netns exec $n nft -s list ruleset; done")
}

#[test]
fn a_foreign_drop_is_named_with_its_fix_and_nothing_is_left_behind() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24", "10.20.0.0/24"]);
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let before = state(&sb);
    let (code, v, out) = why(&sb, &["-f", &f, "a", "web", "tcp/80"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(v["agree"], true, "{out}");
    same(&before, &state(&sb), "why left something behind");

    // Docker's way: iptables-nft's FORWARD policy drop, without nsfw's accepts.
    sb.ok("iptables -P FORWARD DROP");
    let before = state(&sb);
    let (code, v, out) = why(&sb, &["-f", &f, "a", "web", "tcp/80"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["file"]["allowed"], true, "{out}");
    assert_eq!(v["kernel"]["passed"], false, "{out}");
    assert_eq!(v["kernel"]["answered"], false, "{out}");
    let said = v["disagreement"].to_string();
    assert!(
        said.contains("table ip filter chain FORWARD policy drop"),
        "{out}"
    );
    assert!(said.contains("iptables -I FORWARD"), "the fix: {out}");
    same(&before, &state(&sb), "why left something behind");
    sb.ok("iptables -P FORWARD ACCEPT");

    // An nft table of someone else's with a drop policy on forward.
    sb.ok("nft add table inet other; nft add chain inet other fw '{ type filter hook forward priority 0; policy drop; }'");
    let (code, v, out) = why(&sb, &["-f", &f, "a", "web", "tcp/80"]);
    assert_eq!(code, Some(1), "{out}");
    let said = v["disagreement"].to_string();
    assert!(
        said.contains("table inet other chain fw policy drop"),
        "{out}"
    );
    assert!(
        said.contains("nft insert rule inet other fw") || said.contains("policy accept"),
        "the fix: {out}"
    );
    sb.ok("nft delete table inet other");

    // Drops the trace cannot see are still a disagreement, said first, with their cause:
    // a chain before the trace chains (priority -500), and iptables-legacy.
    sb.ok("nft add table inet early; nft add chain inet early out '{ type filter hook output priority -500; }'; nft add rule inet early out tcp dport 80 drop");
    let (code, v, out) = why(&sb, &["-f", &f, "host", "web", "tcp/80"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(v["agree"], false, "{out}");
    assert_eq!(v["kernel"]["passed"], false, "{out}");
    let said = v["disagreement"].to_string();
    assert!(said.contains("no answer"), "{out}");
    assert!(said.contains("table inet early chain out"), "{out}");
    assert!(
        said.contains("nft insert rule inet early out oifname \\\"br0\\\" accept"),
        "{out}"
    );
    sb.ok("nft delete table inet early; iptables-legacy -P FORWARD DROP");
    let (code, v, out) = why(&sb, &["-f", &f, "a", "web", "tcp/80"]);
    assert_eq!(code, Some(1), "{out}");
    let said = v["disagreement"].to_string();
    assert!(
        said.contains("iptables-legacy -t filter: FORWARD policy DROP"),
        "{out}"
    );
    assert!(
        said.contains("iptables-legacy -t filter -I FORWARD -i br1 -j ACCEPT"),
        "{out}"
    );
    sb.ok("iptables-legacy -P FORWARD ACCEPT");

    // Someone else traces everything, and drops other packets of the same pair: only the
    // probe's own events are its answer.
    sb.ok("nft add table inet spy; nft add chain inet spy pre '{ type filter hook prerouting priority -500; }'; nft add rule inet spy pre meta nftrace set 1; nft add chain inet spy fw '{ type filter hook forward priority 10; }'; nft add rule inet spy fw tcp dport 9999 drop");
    sb.ok("(for i in $(seq 150); do ip netns exec web timeout 0.2 bash -c 'echo > /dev/tcp/10.10.0.3/9999' & sleep 0.01; done) >/dev/null 2>&1 &");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, v, out) = why(&sb, &["-f", &f, "web", "db", "tcp/80"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(v["agree"], true, "{out}");
    assert!(!out.contains("9999"), "another packet's events: {out}");
    assert!(out.contains("spy"), "the probe's pass through spy: {out}");
}

#[test]
fn kill_9_mid_trace_is_undone_by_the_next_apply() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24", "10.20.0.0/24"]);
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let before = state(&sb);
    // A blocked flow: the probe waits for an answer that does not come.
    let child = sb.spawn_nsfw(&["why", "-f", &f, "a", "web", "tcp/81"]);
    let pid = inner_pid(&child).expect("why runs");
    let t = std::time::Instant::now();
    while !sb.ok("nft list ruleset").contains("why-trace-in") {
        assert!(t.elapsed().as_secs() < 5, "the trace was never armed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    kill9(pid);
    let _ = child.wait_with_output();
    assert_ne!(state(&sb), before, "the trace chains are left");
    sb.nsfw_code(&["apply", &f], 0);
    same(&before, &state(&sb), "apply took the trace chains away");
    // And a `why` after a killed one leaves nothing either.
    let child = sb.spawn_nsfw(&["why", "-f", &f, "a", "web", "tcp/81"]);
    let pid = inner_pid(&child).expect("why runs");
    while !sb.ok("nft list ruleset").contains("why-trace-in") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    kill9(pid);
    let _ = child.wait_with_output();
    let (_, _, out) = why(&sb, &["-f", &f, "a", "web", "tcp/81"]);
    assert_eq!(
        state(&sb),
        before,
        "a second why cleared the first's chains\n{out}"
    );
}
