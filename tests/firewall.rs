//! The nftables half: what `nsfw show` prints is what the kernel holds, NAT and the stateful
//! forward filter work with real packets (br_netfilter on and off, Docker's FORWARD drop next
//! door), a rejected batch changes nothing, flush takes only what is nsfw's, and the product
//! never spawns ip/iptables/nft/sysctl. `nft`, `iptables` and `ping` are the witnesses.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{LAB, NSFW, Sandbox, show};

/// `nft list` text without handles, comments about the program, blank lines and indentation.
fn normalise(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| {
            let l = l.split(" # ").next().unwrap_or(l);
            l.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn show_is_what_the_kernel_holds_for_every_shipped_ruleset() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets");
    let mut n = 0;
    for ent in std::fs::read_dir(&dir).unwrap() {
        let path = ent.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let Some(sb) = Sandbox::or_skip() else { return };
        let f = path.display().to_string();
        let shown = sb.nsfw_code(&["show", &f], 0);
        sb.nsfw_code(&["apply", &f], 0);
        let name = shown
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(2))
            .expect("table line")
            .to_string();
        // Both tables: the topology's, and its port security's. An nft older than 1.0.8
        // lists `icmpv6 taddr` by its offset.
        let listed = sb
            .ok(&format!(
                "nft list table inet {name}; nft list table bridge {name}"
            ))
            .replace("@th,64,128", "icmpv6 taddr");
        assert_eq!(
            normalise(&listed),
            normalise(&shown),
            "{f}: nft list differs from nsfw show"
        );
        assert!(
            sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"),
            "{f}: second apply not idempotent"
        );
    }
    assert!(n >= 1, "no rulesets found");
}

/// The lab's file in a sandbox with an upstream (None: kernel tests cannot run here).
fn lab() -> Option<(Sandbox, String)> {
    let sb = Sandbox::or_skip()?;
    sb.upstream(&["10.10.0.0/24"]);
    let f = sb.file("lab.toml", LAB);
    Some((sb, f))
}

/// The lab's traffic, checked with real packets: each namespace reaches the internet and is
/// seen there as the uplink's address; replies come back; nothing gets in unasked; the two
/// namespaces reach each other.
fn assert_lab_traffic(sb: &Sandbox) {
    let private_before = sb.seen_from("private");
    let uplink_before = sb.seen_from("uplink");
    for ns in ["ns1", "ns2"] {
        assert!(
            sb.pings(ns, "203.0.113.10"),
            "{ns} cannot reach the internet (or no reply came back)"
        );
    }
    assert!(
        sb.seen_from("uplink") >= uplink_before + 2,
        "the internet did not see the uplink's address"
    );
    assert_eq!(
        sb.seen_from("private"),
        private_before,
        "un-NATed packets reached the internet"
    );
    for ns_addr in ["10.10.0.2", "10.10.0.3"] {
        assert!(
            !sb.pings("wan", ns_addr),
            "the internet reached {ns_addr} unasked"
        );
    }
    assert!(
        sb.pings("ns1", "10.10.0.3") && sb.pings("ns2", "10.10.0.2"),
        "ns1 and ns2 cannot reach each other"
    );
}

#[test]
fn nat_and_stateful_forwarding_with_br_netfilter_on_and_off() {
    for brnf in ["1", "0"] {
        let Some((sb, f)) = lab() else { return };
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}"
        ));
        sb.nsfw_code(&["apply", &f], 0);
        assert_lab_traffic(&sb);
        let setting = sb.ok("cat /proc/sys/net/bridge/bridge-nf-call-iptables");
        assert_eq!(setting.trim(), brnf, "auto changed br_netfilter");
        // Without nsfw's table the namespaces are open to the internet: the rules are what
        // blocks it (the check above can fail).
        sb.ok("nft delete table inet nsfw_lab");
        assert!(
            sb.pings("wan", "10.10.0.2"),
            "with nsfw's table gone, wan should reach ns1"
        );
        sb.nsfw_code(&["apply", &f], 0);
        assert!(!sb.pings("wan", "10.10.0.2"));
    }
}

#[test]
fn br_netfilter_off_and_on_set_the_sysctl() {
    let Some(sb) = Sandbox::or_skip() else { return };
    for (mode, want) in [("off", "0"), ("on", "1"), ("off", "0")] {
        let f = sb.file(
            "b.toml",
            &format!("{LAB}\n[host]\nbr_netfilter = \"{mode}\"\n"),
        );
        sb.nsfw_code(&["apply", &f], 0);
        assert_eq!(
            sb.ok("cat /proc/sys/net/bridge/bridge-nf-call-iptables")
                .trim(),
            want,
            "mode {mode}"
        );
        assert!(
            sb.pings("ns1", "10.10.0.3"),
            "mode {mode}: ns1 cannot reach ns2"
        );
        assert!(sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"));
    }
}

/// `br_netfilter = "on"` on a host without the module is refused before anything changes, and
/// said once. The machine's module may well be loaded: the sandbox's own mount namespace hides
/// its settings under an empty tmpfs, which is all nsfw sees of a missing module.
#[test]
fn br_netfilter_on_without_the_module_is_refused_once() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.ok("mount -t tmpfs none /proc/sys/net/bridge");
    let f = sb.file("b.toml", &format!("{LAB}\n[host]\nbr_netfilter = \"on\"\n"));
    for cmd in ["diff", "apply"] {
        let o = sb.nsfw(&[cmd, &f]);
        assert_eq!(o.status.code(), Some(1), "{cmd}\n{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.matches("host.br_netfilter = \"on\": the br_netfilter module is not loaded")
                .count(),
            1,
            "{cmd}: the conflict once\n{}",
            show(&o)
        );
    }
    assert!(sb.netns().is_empty(), "apply changed nothing");
}

#[test]
fn a_rejected_batch_leaves_the_ruleset_exactly_as_it_was() {
    let Some((sb, f)) = lab() else { return };
    // Another program's ruleset, and an iptables-nft filter table that program owns: the
    // kernel refuses changes to an owned table from anyone else, so nsfw's batch (its own table
    // plus an accept in DOCKER-USER) is rejected as a whole.
    sb.ok("nft add table inet other; nft add chain inet other c '{ type filter hook input priority 0; }'; nft add rule inet other c tcp dport 22 accept");
    let mut holder = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", sb.pid()))
        .args(["nft", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nft -i");
    {
        let stdin = holder.stdin.as_mut().expect("stdin");
        writeln!(stdin, "add table ip filter {{ flags owner; }}").unwrap();
        writeln!(
            stdin,
            "add chain ip filter FORWARD {{ type filter hook forward priority 0; policy drop; }}"
        )
        .unwrap();
        writeln!(stdin, "add chain ip filter DOCKER-USER").unwrap();
        stdin.flush().unwrap();
    }
    let mut tries = 0;
    while !sb.ok("nft list tables").contains("ip filter") {
        tries += 1;
        assert!(tries < 50, "the owned table did not appear");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = sb.ok("nft list ruleset");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rejected") && err.contains("DOCKER-USER") && err.contains("not permitted"),
        "{err}"
    );
    assert_eq!(
        before,
        sb.ok("nft list ruleset"),
        "a rejected batch changed the ruleset"
    );
    assert!(!sb.ok("nft list tables").contains("nsfw_lab"));
    let _ = holder.kill();
    let _ = holder.wait();
    // Once the owner is gone, so is its table, and the next apply converges.
    sb.nsfw_code(&["apply", &f], 0);
    assert!(sb.ok("nft list tables").contains("nsfw_lab"));
}

#[test]
fn docker_forward_drop_gets_scoped_accepts_in_docker_user() {
    let Some((sb, f)) = lab() else { return };
    sb.ok("iptables -P FORWARD DROP; iptables -N DOCKER-USER; iptables -A DOCKER-USER -s 192.0.2.0/24 -j DROP; iptables -A DOCKER-USER -j RETURN; iptables -I FORWARD -j DOCKER-USER");
    sb.nsfw_code(&["apply", &f], 0);
    assert_lab_traffic(&sb);
    let rules = sb.ok("iptables -S DOCKER-USER");
    assert!(
        rules.contains("-A DOCKER-USER -i br0 -m comment --comment \"nsfw:lab\" -j ACCEPT"),
        "{rules}"
    );
    assert!(
        rules.contains("-A DOCKER-USER -o br0 -m comment --comment \"nsfw:lab\" -j ACCEPT"),
        "{rules}"
    );
    let first_two: Vec<&str> = rules.lines().skip(1).take(2).collect();
    assert!(
        first_two.iter().all(|l| l.contains("nsfw:lab")),
        "nsfw's accepts are not at the top:\n{rules}"
    );
    assert!(
        !sb.ok("iptables -S FORWARD").contains("nsfw"),
        "accepts went to FORWARD although DOCKER-USER exists"
    );
    assert!(sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"));

    sb.nsfw_code(&["flush", &f], 0);
    let rules = sb.ok("iptables -S DOCKER-USER");
    assert!(!rules.contains("nsfw"), "{rules}");
    assert!(
        rules.contains("-A DOCKER-USER -s 192.0.2.0/24 -j DROP")
            && rules.contains("-A DOCKER-USER -j RETURN"),
        "{rules}"
    );
    assert!(sb.ok("iptables -S FORWARD").contains("-P FORWARD DROP"));
}

#[test]
fn forward_drop_without_docker_user_gets_accepts_at_the_top_of_forward() {
    let Some((sb, f)) = lab() else { return };
    sb.ok("iptables -P FORWARD DROP; iptables -A FORWARD -s 192.0.2.0/24 -j DROP");
    sb.nsfw_code(&["apply", &f], 0);
    assert_lab_traffic(&sb);
    let rules = sb.ok("iptables -S FORWARD");
    let lines: Vec<&str> = rules.lines().collect();
    assert!(
        lines[1].contains("nsfw:lab") && lines[2].contains("nsfw:lab"),
        "{rules}"
    );
    assert!(lines[3].contains("192.0.2.0/24"), "{rules}");
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(
        sb.ok("iptables -S FORWARD"),
        "-P FORWARD DROP\n-A FORWARD -s 192.0.2.0/24 -j DROP\n"
    );
}

#[test]
fn iptables_legacy_rules_draw_a_warning() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let o = sb.nsfw(&["apply", &f]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("legacy"),
        "{}",
        show(&o)
    );
    sb.ok("iptables-legacy -P FORWARD DROP");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: iptables-legacy") && err.contains("filter"),
        "{err}"
    );
}

#[test]
fn flush_removes_nsfw_tables_and_rules_and_nothing_else() {
    let Some((sb, f)) = lab() else { return };
    let other = sb.file("o.toml", "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\nmasquerade = true\n[namespaces.o1]\nbridge = \"br1\"\n");
    sb.ok("nft add table inet mine; nft add chain inet mine c; nft add table inet nsfw_fake; iptables -P FORWARD DROP; iptables -N DOCKER-USER; iptables -A DOCKER-USER -j RETURN; iptables -I FORWARD -j DOCKER-USER");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["apply", &other], 0);
    sb.nsfw_code(&["flush", &f], 0);
    let tables = sb.ok("nft list tables");
    assert!(!tables.contains("nsfw_lab"), "{tables}");
    for keep in [
        "inet mine",
        "inet nsfw_other",
        "inet nsfw_fake",
        "ip filter",
    ] {
        assert!(tables.contains(keep), "flush removed {keep}:\n{tables}");
    }
    let du = sb.ok("iptables -S DOCKER-USER");
    assert!(
        !du.contains("nsfw:lab") && du.contains("nsfw:other") && du.contains("-j RETURN"),
        "{du}"
    );
    sb.nsfw_code(&["flush", "--all"], 0);
    let tables = sb.ok("nft list tables");
    assert!(
        !tables.contains("nsfw_other")
            && tables.contains("inet nsfw_fake")
            && tables.contains("inet mine"),
        "{tables}"
    );
    let du = sb.ok("iptables -S DOCKER-USER");
    assert_eq!(du, "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n");
}

#[test]
fn a_foreign_table_with_nsfws_name_is_a_conflict() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.ok("nft add table inet nsfw_lab; nft add chain inet nsfw_lab keep");
    let o = sb.nsfw(&["apply", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nsfw_lab exists and nsfw does not own it")
    );
    assert!(sb.ok("nft list table inet nsfw_lab").contains("chain keep"));
    assert!(sb.netns().is_empty());
}

#[test]
fn the_product_spawns_no_ip_iptables_nft_or_sysctl() {
    let Some((sb, f)) = lab() else { return };
    let fake = sb.dir().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let tripped = sb.dir().join("tripped");
    for cmd in [
        "ip",
        "iptables",
        "iptables-nft",
        "iptables-legacy",
        "nft",
        "sysctl",
        "modprobe",
    ] {
        let p = fake.join(cmd);
        std::fs::write(&p, format!("#!/bin/sh\necho \"nsfw spawned {cmd} $*\" >> {}\necho 'FORBIDDEN: {cmd}' >&2\nexit 99\n", tripped.display())).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }
    sb.ok("iptables -P FORWARD DROP; iptables -N DOCKER-USER; iptables -I FORWARD -j DOCKER-USER");
    let path = format!("PATH={}", fake.display());
    for (args, code) in [
        (vec!["diff", &f], 2),
        (vec!["apply", &f], 0),
        (vec!["diff", &f], 0),
        (vec!["verify", &f], 0),
        (vec!["flush", &f], 0),
    ] {
        let o = sb.sh(&format!("env {path} {NSFW} {}", args.join(" ")));
        assert_eq!(o.status.code(), Some(code), "nsfw {args:?}\n{}", show(&o));
    }
    assert!(
        !tripped.exists(),
        "{}",
        std::fs::read_to_string(&tripped).unwrap_or_default()
    );
    assert!(sb.netns() == ["wan"], "flush left namespaces behind");
}
