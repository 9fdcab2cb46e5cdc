//! Running for real: systemd units, `nsfw exec`, and (with the watcher, doctor and status)
//! keeping a topology whole next to other firewalls.

mod common;

use common::{LAB, Sandbox, show};

#[test]
fn exec_runs_in_the_namespace_with_its_resolv_conf() {
    let sb = Sandbox::new();
    let f = sb.file(
        "lab.toml",
        &format!("{LAB}\n[namespaces.ns3]\nbridge = \"br0\"\ndns = [\"192.0.2.53\"]\n"),
    );
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw_code(&["exec", "ns3", "--", "cat", "/etc/resolv.conf"], 0);
    assert!(out.contains("nameserver 192.0.2.53"), "{out}");
    let out = sb.nsfw_code(
        &[
            "exec",
            "ns1",
            "--",
            "sh",
            "-c",
            "ls /sys/class/net; ip -o -4 addr show dev eth0",
        ],
        0,
    );
    assert!(
        out.contains("eth0") && out.contains("10.10.0.2/24") && !out.contains("br0"),
        "{out}"
    );
    sb.nsfw_code(&["exec", "ns1", "--", "sh", "-c", "exit 7"], 7);
    sb.nsfw_code(&["exec", "ns1", "--", "/no/such/program"], 127);
    sb.nsfw_code(&["exec", "nope", "--", "true"], 1);
    // The host's own resolv.conf is untouched.
    assert!(!sb.ok("cat /etc/resolv.conf").contains("192.0.2.53"));
}

#[test]
fn the_systemd_units_verify_and_their_commands_converge_and_flush() {
    let sb = Sandbox::new();
    let f = sb.file("lab.toml", LAB);
    let dir = sb.dir().join("units");
    std::fs::create_dir_all(&dir).expect("dir");
    let d = dir.display().to_string();
    sb.nsfw_code(&["systemd", &f, "--dir", &d], 0);
    let o = sb.sh(&format!("systemd-analyze verify {d}/*.service"));
    assert!(o.status.success() && o.stderr.is_empty(), "{}", show(&o));
    let printed = sb.nsfw_code(&["systemd", &f], 0);
    assert!(
        printed.contains("# nsfw.service")
            && printed.contains("ReloadPropagatedFrom=nftables.service"),
        "{printed}"
    );
    // The unit's own command lines, by hand: start converges, reload after the ruleset was
    // flushed (what a reload of nftables.service does) repairs, stop flushes.
    let unit = std::fs::read_to_string(dir.join("nsfw.service")).expect("unit");
    let line = |k: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}"))
            .to_string()
    };
    assert!(line("ExecStart").starts_with('/') && line("ExecStart").contains(&f));
    sb.ok(&line("ExecStart"));
    sb.nsfw_code(&["diff", &f], 0);
    sb.ok("nft flush ruleset");
    sb.nsfw_code(&["diff", &f], 2);
    sb.ok(&line("ExecReload"));
    sb.nsfw_code(&["diff", &f], 0);
    sb.ok(&line("ExecStop"));
    assert!(sb.leftovers(&[]).is_empty(), "{:?}", sb.leftovers(&[]));
    let reapply = std::fs::read_to_string(dir.join("nsfw-reapply.service")).expect("unit");
    assert!(reapply.contains("WantedBy=nftables.service"), "{reapply}");
}
