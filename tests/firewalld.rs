//! firewalld hosts: Debian's firewalld (nftables backend) runs in the sandbox on a private
//! system bus (a dbus-daemon listening on a tmpfs over /run/dbus, its permanent configuration
//! a copy of /etc/firewalld in the sandbox's directory). The lab works through firewalld's
//! chains (NAT out, ns1 ↔ ns2 with br_netfilter on and off, a published port from the world
//! and from the host, nothing in unasked), comes back after `firewall-cmd --reload` and a
//! firewalld started late (with `watch`; without it, `diff` shows the drift and `apply`
//! repairs it), and `flush` leaves firewalld's configuration as it found it. `firewall-cmd`
//! is only the tests' witness: nsfw talks to firewalld over D-Bus.

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, show};

/// The lab (tests/common's LAB) with ns1's port 80 published on the host's 8080.
const LAB_PUBLISHED: &str = "name = \"lab\"\n[bridges.br0]\naddress = \"10.10.0.1/24\"\nmasquerade = true\n[namespaces.ns1]\nbridge = \"br0\"\naddress = \"10.10.0.2/24\"\npublish = [\"8080:80/tcp\"]\n[namespaces.ns2]\nbridge = \"br0\"\naddress = \"10.10.0.3/24\"\n";

fn installed() -> bool {
    let ok = [
        "/usr/sbin/firewalld",
        "/usr/bin/firewall-cmd",
        "/usr/bin/dbus-daemon",
    ]
    .iter()
    .all(|p| std::path::Path::new(p).exists());
    if !ok {
        eprintln!(
            "skipped: firewalld, firewall-cmd or dbus-daemon is not installed (scripts/install-deps installs them)"
        );
    }
    ok
}

/// Starts a private system bus in the sandbox, and firewalld on it unless `later`.
fn bus(sb: &Sandbox) {
    let d = sb.dir().display().to_string();
    sb.file(
        "bus.conf",
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
    );
    sb.ok(&format!(
        "set -e
         mkdir -p /run/dbus && mount -t tmpfs tmpfs /run/dbus
         cp -a /etc/firewalld {d}/etc-firewalld
         dbus-daemon --config-file={d}/bus.conf --fork"
    ));
}

/// Starts firewalld on the sandbox's bus and waits until it answers.
fn start_firewalld(sb: &Sandbox) {
    let d = sb.dir().display().to_string();
    sb.ok(&format!(
        "firewalld --nofork --nopid --system-config {d}/etc-firewalld --log-target file --log-file {d}/firewalld.log >/dev/null 2>&1 &
         for i in $(seq 100); do firewall-cmd --state >/dev/null 2>&1 && exit 0; sleep 0.1; done; cat {d}/firewalld.log; exit 1"
    ));
}

fn stop_firewalld(sb: &Sandbox) {
    // Stopped, it removes its table (CleanupOnExit); its process may stay a zombie of the
    // sandbox's init, so the table is what says it is gone.
    sb.ok("pkill -x firewalld; for i in $(seq 100); do nft list table inet firewalld >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1");
}

/// The lab with a published port, firewalld running before it: a sandbox with an upstream.
fn setup(firewalld_first: bool) -> Option<(Sandbox, String)> {
    if !installed() {
        return None;
    }
    let sb = Sandbox::or_skip()?;
    sb.upstream(&["10.10.0.0/24"]);
    sb.ok("ip -n wan route add 10.10.0.0/24 via 198.51.100.1 2>/dev/null || true");
    bus(&sb);
    if firewalld_first {
        start_firewalld(&sb);
    }
    let f = sb.file("lab.toml", LAB_PUBLISHED);
    Some((sb, f))
}

/// Both configurations of firewalld as its own tool lists them.
fn configuration(sb: &Sandbox) -> String {
    sb.ok("firewall-cmd --list-all-zones; echo ----; firewall-cmd --permanent --list-all-zones; firewall-cmd --get-active-zones")
}

/// The checks of the lab through firewalld's chains; "" when all pass, else what failed.
fn failures(sb: &Sandbox) -> String {
    let mut bad = Vec::new();
    for ns in ["ns1", "ns2"] {
        if !sb.pings(ns, "203.0.113.10") {
            bad.push(format!("{ns} → the world"));
        }
    }
    for brnf in ["1", "0"] {
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}"
        ));
        if !(sb.pings("ns1", "10.10.0.3") && sb.pings("ns2", "10.10.0.2")) {
            bad.push(format!("ns1 ↔ ns2 with bridge-nf-call-iptables={brnf}"));
        }
    }
    if sb.ask(Some("wan"), "tcp", "198.51.100.1", 8080).is_none() {
        bad.push("published port from the world".into());
    }
    if sb.ask(None, "tcp", "198.51.100.1", 8080).is_none() {
        bad.push("published port from the host".into());
    }
    if sb.pings("wan", "10.10.0.2") {
        bad.push("the world reached ns1 unasked".into());
    }
    bad.join(", ")
}

fn zone_of(sb: &Sandbox, iface: &str) -> String {
    // firewall-cmd says "no zone" on stderr, exiting 2.
    sb.sh(&format!(
        "firewall-cmd --get-zone-of-interface={iface} 2>&1"
    ))
    .stdout
    .iter()
    .map(|&b| b as char)
    .collect::<String>()
    .trim()
    .to_string()
}

#[test]
fn the_lab_works_through_firewalld_and_flush_leaves_its_configuration_as_it_was() {
    let Some((sb, f)) = setup(true) else { return };
    let before = configuration(&sb);
    // What nsfw fixes: without the zone, firewalld rejects the lab's forwarded traffic.
    // doctor says so, with the firewalld way as the fix.
    let found = sb.nsfw_code(&["doctor", &f], 3);
    assert!(
        found.contains("nft chain inet firewalld filter_FWD_public")
            && found.contains("firewall-cmd --zone=trusted --add-interface=br0")
            && !found.contains("nft insert"),
        "{found}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    let clean = sb.nsfw(&["doctor", &f]);
    assert!(
        !String::from_utf8_lossy(&clean.stdout).contains("firewalld"),
        "{}",
        show(&clean)
    );
    sb.serve(Some("ns1"), "tcp", &[80]);
    assert_eq!(zone_of(&sb, "br0"), "trusted");
    assert_eq!(failures(&sb), "");
    assert!(sb.nsfw_code(&["apply", &f], 0).contains("nothing to do"));

    // A reload drops runtime bindings: diff says so, apply repairs it.
    sb.ok("firewall-cmd --reload");
    assert_eq!(zone_of(&sb, "br0"), "no zone");
    assert!(
        !failures(&sb).is_empty(),
        "firewalld after a reload should reject the lab"
    );
    let drift = sb.nsfw_code(&["diff", &f], 2);
    assert!(
        drift.contains("firewalld zone trusted") && drift.contains("+ interface br0"),
        "{drift}"
    );
    let json = sb.nsfw_code(&["diff", "--json", &f], 2);
    assert!(
        json.contains(r#""kind":"firewalld-interface""#) && json.contains(r#""interface":"br0""#),
        "{json}"
    );
    sb.nsfw_code(&["apply", &f], 0);
    assert_eq!(failures(&sb), "");

    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(configuration(&sb), before, "flush left firewalld changed");
    assert!(sb.leftovers(&["wan", "uplink"]).is_empty());
}

#[test]
fn watch_puts_the_interfaces_back_after_a_reload_and_a_late_firewalld() {
    let Some((sb, f)) = setup(false) else { return };
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "tcp", &[80]);
    let watch = sb.spawn_nsfw(&["watch", &f]);
    std::thread::sleep(Duration::from_millis(500));
    let back_within = |what: &str| {
        let t0 = Instant::now();
        while zone_of(&sb, "br0") != "trusted" {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "{what}: br0 not back in the zone after 2 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t0.elapsed()
    };
    start_firewalld(&sb);
    let late = back_within("firewalld started after apply");
    assert_eq!(failures(&sb), "");
    sb.ok("firewall-cmd --reload");
    let reload = back_within("firewall-cmd --reload");
    assert_eq!(failures(&sb), "");
    eprintln!("back in the zone: {late:?} after firewalld started, {reload:?} after a reload");
    if let Some(pid) = common::inner_pid(&watch) {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    let out = watch.wait_with_output().expect("watch");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("br0"),
        "{}",
        show(&out)
    );
    // Stopped firewalld takes its runtime with it; flush then needs no bus at all.
    stop_firewalld(&sb);
    sb.nsfw_code(&["flush", &f], 0);
    assert!(sb.leftovers(&["wan", "uplink"]).is_empty());
}

#[test]
fn an_interface_in_someone_elses_zone_is_left_there() {
    let Some((sb, f)) = setup(true) else { return };
    // firewalld binds names: the bridge need not exist yet.
    sb.ok("firewall-cmd --zone=internal --add-interface=br0");
    let o = sb.nsfw(&["apply", &f]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("zone `internal`"),
        "{}",
        show(&o)
    );
    assert_eq!(zone_of(&sb, "br0"), "internal");
    sb.nsfw_code(&["flush", &f], 0);
    assert_eq!(
        zone_of(&sb, "br0"),
        "internal",
        "flush took away a binding not nsfw's"
    );
}

/// Killed at any instant, apply and flush converge: a flush after leaves firewalld as it was.
#[test]
fn killed_runs_leave_no_binding_behind() {
    let Some((sb, f)) = setup(true) else { return };
    let before = configuration(&sb);
    for (i, ms) in [5u64, 20, 40, 60, 90, 130, 200].iter().enumerate() {
        let which = if i % 2 == 0 { "apply" } else { "flush" };
        if which == "flush" {
            sb.nsfw_code(&["apply", &f], 0);
        }
        let mut c = sb.spawn_nsfw(&[which, &f]);
        std::thread::sleep(Duration::from_millis(*ms));
        if let Some(pid) = common::inner_pid(&c) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        let _ = c.wait();
        sb.nsfw_code(&["flush", &f], 0);
        assert_eq!(
            configuration(&sb),
            before,
            "{which} killed after {ms} ms, then flush"
        );
    }
}

/// nsfw talks to firewalld over D-Bus only: it spawns nothing, and without firewalld it does
/// not even connect to the bus.
#[test]
fn nothing_is_spawned_and_without_firewalld_the_bus_is_left_alone() {
    let Some((sb, f)) = setup(false) else { return };
    let nsfw = common::NSFW;
    let trace = |args: &str| {
        sb.ok(&format!(
            "strace -f -qq -e trace=execve,connect -o {d}/trace {nsfw} {args} >/dev/null; cat {d}/trace",
            d = sb.dir().display()
        ))
    };
    let t = trace(&format!("apply {f}"));
    assert_eq!(t.matches("execve(").count(), 1, "spawned something:\n{t}");
    assert!(!t.contains("dbus"), "touched D-Bus without firewalld:\n{t}");
    start_firewalld(&sb);
    let t = trace(&format!("apply {f}")) + &trace(&format!("flush {f}"));
    assert_eq!(t.matches("execve(").count(), 2, "spawned something:\n{t}");
    assert!(t.contains("/run/dbus/system_bus_socket"), "{t}");
}
