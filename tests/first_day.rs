//! The rough edges a first-day user hits (issue 22): progress on a terminal, per-topology
//! systemd units, read-only commands without root, JSON for every outcome, `try -q`, `-v`
//! without Debug values, an interrupted flush, completions, the man page, a staged install.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;

use common::{LAB, NSFW, Sandbox, show};

/// `n` namespaces over four bridges (a bridge takes at most 1023 ports).
fn many(name: &str, n: usize) -> String {
    let mut s = format!("name = \"{name}\"\n");
    for b in 0..4 {
        s.push_str(&format!(
            "[bridges.br{b}]\naddress = \"10.9{b}.0.1/20\"\nmasquerade = true\n"
        ));
    }
    for i in 0..n {
        s.push_str(&format!("[namespaces.n{i}]\nbridge = \"br{}\"\n", i % 4));
    }
    s
}

/// Progress frames (`\r<label>: N/M\x1b[K`) in a terminal's output: (label, n, m, the byte
/// after the frame).
fn frames(out: &str) -> Vec<(String, usize, usize, Option<char>)> {
    let mut v = Vec::new();
    for (i, _) in out.match_indices('\r') {
        let rest = &out[i + 1..];
        let Some(end) = rest.find("\x1b[K") else {
            continue;
        };
        let body = &rest[..end];
        if body.contains('\n') {
            // A line's own `\r\n` (the terminal's), not a frame.
            continue;
        }
        let Some((label, count)) = body.rsplit_once(": ") else {
            continue;
        };
        let Some((n, m)) = count.split_once('/') else {
            continue;
        };
        if let (Ok(n), Ok(m)) = (n.parse(), m.parse()) {
            let after = rest[end + 3..].chars().next();
            v.push((label.to_string(), n, m, after));
        }
    }
    v
}

/// What a terminal shows once the progress line is gone: frames and clears removed.
fn without_frames(out: &str) -> String {
    let mut s = String::new();
    for part in out.split('\r') {
        let part = match part.find("\x1b[K") {
            Some(end) if !part[..end].contains('\n') => &part[end + 3..],
            _ => part,
        };
        s.push_str(part);
    }
    // Colour (`\x1b[32m`...`\x1b[0m`) off.
    let mut plain = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\x1b[") {
        plain.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('m') {
            Some(j) if after[..j].bytes().all(|b| b.is_ascii_digit() || b == b';') => {
                rest = &after[j + 1..];
            }
            _ => {
                plain.push_str("\x1b[");
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    plain
}

/// Some stage took over a second and showed progress (which stages do depends on the
/// machine: each of `some` may); each stage's last frame shows its total; a frame is only ever
/// followed by another frame or by the line's clearing, never by other output on that line.
fn assert_progress(out: &str, some: &[&str]) {
    let fs = frames(out);
    assert!(
        fs.iter().any(|f| some.contains(&f.0.as_str())),
        "no progress line for any of {some:?}"
    );
    let mut labels: Vec<&str> = fs.iter().map(|f| f.0.as_str()).collect();
    labels.dedup();
    for label in labels {
        let last = fs.iter().rfind(|f| f.0 == label).expect("frame");
        assert_eq!(last.1, last.2, "{label} ends at {}/{}", last.1, last.2);
    }
    for f in &fs {
        assert_eq!(f.3, Some('\r'), "text glued to the progress line {f:?}");
    }
}

#[test]
fn progress_on_a_terminal_counts_to_its_total_and_summary_fits_a_screen() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("big.toml", &many("big", 2000));
    let o = sb.sh(&format!("script -qec '{NSFW} apply {f}' /dev/null"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", show(&o));
    assert_progress(&out, &["creating namespaces", "configuring namespaces"]);
    let plain = without_frames(&out);
    assert!(
        plain.lines().any(|l| l.starts_with("  + namespace n1999")),
        "plan lines missing"
    );
    // Compact: one line per kind of change, the progress line still counting.
    let o = sb.sh(&format!(
        "script -qec '{NSFW} flush --summary {f}' /dev/null"
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", show(&o));
    // The flush of 2000 no longer waits for the kernel to free the veths, so on a quiet
    // machine no stage may last the second progress needs: what frames there are must be
    // well formed; none is also right.
    if frames(&out).iter().any(|f| f.0 == "removing") {
        assert_progress(&out, &["removing"]);
    }
    let plain = without_frames(&out);
    let lines: Vec<&str> = plain.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() < 20, "{} lines:\n{plain}", lines.len());
    assert!(
        lines.iter().any(|l| l.trim() == "- namespace × 2000"),
        "{plain}"
    );
    assert!(sb.netns().is_empty());
}

#[test]
fn systemd_units_of_two_topologies_live_side_by_side() {
    let dir = std::env::temp_dir().join(format!("nsfw-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let lab = dir.join("lab.toml");
    std::fs::write(&lab, LAB).expect("write");
    let other = dir.join("other.toml");
    std::fs::write(
        &other,
        "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.o1]\nbridge = \"br1\"\n",
    )
    .expect("write");
    let units = dir.join("units");
    std::fs::create_dir_all(&units).expect("dir");
    for f in [&lab, &other] {
        let o = Command::new(NSFW)
            .arg("systemd")
            .arg(f)
            .arg("--dir")
            .arg(&units)
            .output()
            .expect("nsfw systemd");
        assert!(o.status.success(), "{}", show(&o));
    }
    let mut names: Vec<String> = std::fs::read_dir(&units)
        .expect("units")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "nsfw-lab-reapply.service",
            "nsfw-lab-watch.service",
            "nsfw-lab.service",
            "nsfw-other-reapply.service",
            "nsfw-other-watch.service",
            "nsfw-other.service",
        ]
    );
    let watch = std::fs::read_to_string(units.join("nsfw-other-watch.service")).expect("read");
    assert!(watch.contains("Requisite=nsfw-other.service"), "{watch}");
    for n in &names {
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join(n))
            .current_dir(&units)
            .output()
            .expect("systemd-analyze");
        assert!(o.status.success(), "{n}: {}", show(&o));
    }
    // `-`: the topology on standard input; the units apply /etc/nsfw/NAME.toml.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("{NSFW} systemd - < {}", other.display()))
        .output()
        .expect("sh");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", show(&o));
    assert!(out.contains("# nsfw-other.service"), "{out}");
    assert!(out.contains("apply /etc/nsfw/other.toml"), "{out}");
    assert!(
        out.contains("ExecStop=") && out.contains("flush --name other"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_only_commands_need_capabilities_not_root() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", "-q", &f], 0);
    sb.ok(&format!(
        "chmod 755 {} && chmod 644 {f}",
        sb.dir().display()
    ));
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let o = sb.sh(&format!("{nobody} {NSFW} diff {f}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        err.contains("CAP_NET_ADMIN") && !err.contains("changes network namespaces"),
        "{err}"
    );
    let caps = "--inh-caps=+net_admin,+sys_admin --ambient-caps=+net_admin,+sys_admin";
    for cmd in ["diff", "status"] {
        let o = sb.sh(&format!("{nobody} {caps} {NSFW} {cmd} {f}"));
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", show(&o));
    }
    let o = sb.sh(&format!("{nobody} {caps} {NSFW} list"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("lab namespace ns1"),
        "{}",
        show(&o)
    );
    // Commands that change the host still say they need root.
    let o = sb.sh(&format!("{nobody} {NSFW} apply {f}"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs root"),
        "{}",
        show(&o)
    );
}

fn one_json(out: &[u8]) -> serde_json::Value {
    let s = String::from_utf8_lossy(out);
    let mut it = serde_json::Deserializer::from_str(&s).into_iter::<serde_json::Value>();
    let v = it
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout: {s:?}"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {s}"));
    assert!(it.next().is_none(), "more than one object: {s}");
    v
}

#[test]
fn every_json_command_prints_one_object_also_when_it_fails() {
    let dir = std::env::temp_dir().join(format!("nsfw-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\n[bridges.br0]\naddress = \"nope\"\n").expect("write");
    for cmd in [
        "apply", "diff", "flush", "show", "try", "verify", "status", "doctor",
    ] {
        let o = Command::new(NSFW)
            .args([cmd, "--json"])
            .arg(&bad)
            .output()
            .expect("nsfw");
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", show(&o));
        let v = one_json(&o.stdout);
        assert_eq!(
            (v["command"].as_str(), v["ok"].as_bool()),
            (Some(cmd), Some(false)),
            "{cmd}: {v}"
        );
        assert!(
            v["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("bridges.br0.address")),
            "{cmd}: {v}"
        );
    }
    let o = Command::new(NSFW)
        .args(["diff", "--json", "--no-such-flag"])
        .output()
        .expect("nsfw");
    assert_eq!(one_json(&o.stdout)["ok"], false);
    let _ = std::fs::remove_dir_all(&dir);

    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    // A bridge that is not nsfw's: apply refuses, and says so in its object.
    sb.ok("ip link add br0 type bridge");
    let o = sb.nsfw(&["apply", "--json", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let v = one_json(&o.stdout);
    assert_eq!(v["applied"], false, "{v}");
    assert!(!v["conflicts"].as_array().expect("conflicts").is_empty());
    sb.ok("ip link del br0");
    sb.nsfw_code(&["apply", "-q", &f], 0);
    let v = one_json(&sb.nsfw(&["apply", "--dry-run", "--json", &f]).stdout);
    assert_eq!(
        (v["dry_run"].as_bool(), v["in_sync"].as_bool()),
        (Some(true), Some(true))
    );
    let o = sb.nsfw(&["flush", "--json", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v = one_json(&o.stdout);
    assert_eq!(
        (v["command"].as_str(), v["applied"].as_bool()),
        (Some("flush"), Some(true))
    );
    assert!(
        v["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "{v}"
    );
}

#[test]
fn quiet_is_quiet_and_verbose_shows_no_debug_values() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let o = sb.nsfw(&["-q", "try"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", show(&o));
    let f = sb.file("lab.toml", LAB);
    let o = sb.nsfw(&["-v", "apply", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nftables generation"), "{err}");
    assert!(!err.contains("Some(") && !err.contains("None"), "{err}");
}

#[test]
fn an_interrupted_flush_says_flush_finishes_it() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("big.toml", &many("big", 300));
    sb.nsfw_code(&["apply", "-q", &f], 0);
    let mut child = sb.spawn_nsfw(&["flush", &f]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while out.read_line(&mut line).expect("read") > 0 && !line.contains("flushing:") {
        line.clear();
    }
    // Mid-run: the plan is made and its 300 namespaces are being removed. The signal goes to
    // nsfw itself, inside the sandbox's PID namespace (the child is the nsenter that forked it).
    let pid = common::inner_pid(&child).expect("flush runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal nsfw");
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(0) {
        // The signal came after the last safe point: nothing to say, all was done.
        assert!(sb.netns().is_empty());
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted: stopped at a safe point")
            && err.contains("`nsfw flush --name big` finishes the work"),
        "{err}"
    );
    sb.nsfw_code(&["flush", "--name", "big"], 0);
    assert!(sb.netns().is_empty());
}

#[test]
fn completions_offer_namespaces_after_exec_and_files_at_once() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", "-q", &f], 0);
    let complete = |words: &str| -> String {
        let script = format!(
            "cd {}; source <({NSFW} completions bash); COMP_WORDS=({words} ''); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _nsfw nsfw '' x 2>/dev/null; echo \"${{COMPREPLY[@]}}\"",
            sb.dir().display()
        );
        let o = sb.sh(&script);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(complete("nsfw exec"), "ns1 ns2");
    assert!(
        complete("nsfw apply").split(' ').any(|w| w == "lab.toml"),
        "{}",
        complete("nsfw apply")
    );
    let top = complete("nsfw");
    assert!(top.contains("apply") && !top.contains("sandbox"), "{top}");
    for sh in ["bash", "zsh", "fish"] {
        let o = Command::new(NSFW)
            .args(["completions", sh])
            .output()
            .expect("nsfw");
        let s = String::from_utf8_lossy(&o.stdout);
        for hidden in ["man sandbox", "'sandbox:", "-a \"sandbox\""] {
            assert!(!s.contains(hidden), "{sh} offers sandbox ({hidden})");
        }
        assert!(s.contains("/run/netns"), "{sh}: no namespace completion");
    }
}

#[test]
fn the_man_page_documents_files_environment_and_defaults() {
    let o = Command::new(NSFW).arg("man").output().expect("nsfw man");
    let page = String::from_utf8_lossy(&o.stdout);
    for s in [
        ".SH \"FILES\"",
        "/run/nsfw/lock",
        "/run/nsfw/record",
        "/etc/nsfw/",
        ".SH \"ENVIRONMENT\"",
        "NO_COLOR",
        "NSFW_TIMING",
        "CNI_COMMAND",
        ".SH \"SEE ALSO\"",
        ".SH \"THE TOPOLOGY FILE\"",
        ".SH \"CNI MODE\"",
        "\\fB\\-\\-max\\-repairs\\fR \\fIN\\fR",
        "[default: 10]",
        "\\fB\\-\\-pause\\fR \\fISECONDS\\fR",
        "[default: 2]",
        "\\fB\\-\\-name\\fR \\fINAME\\fR",
    ] {
        assert!(page.contains(s), "{s} missing from the man page");
    }
    // One page documents every command: no page of its own is referred to.
    assert!(!page.contains("nsfw\\-apply(1)") && !page.contains("nsfw-apply(1)"));
}

#[test]
fn a_staged_install_stays_inside_destdir_and_prefix() {
    let dir = std::env::temp_dir().join(format!("nsfw-stage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install"))
        .arg(format!("DESTDIR={}", dir.display()))
        .arg("prefix=/opt/nsfw-test")
        .env("NSFW", NSFW)
        .output()
        .expect("scripts/install");
    assert!(o.status.success(), "{}", show(&o));
    let root = dir.join("opt/nsfw-test");
    for f in [
        "sbin/nsfw",
        "lib/cni/nsfw",
        "lib/systemd/system/nsfw@.service",
        "share/man/man1/nsfw.1.gz",
        "share/bash-completion/completions/nsfw",
        "share/doc/nsfw/docs/topology.md",
        "share/doc/nsfw/rulesets/lab.toml",
    ] {
        assert!(root.join(f).exists(), "{f} not installed");
    }
    // Nothing but opt/ under DESTDIR, and the units run the nsfw of the prefix.
    let top: Vec<String> = std::fs::read_dir(&dir)
        .expect("stage")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["opt"]);
    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/nsfw@.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/opt/nsfw-test/sbin/nsfw apply"),
        "{unit}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
