//! The CLI as a system tool: help that documents FILE, defaults and exit statuses, completions
//! and a man page, colour only on a terminal, JSON that parses, flush by name.

mod common;

use std::process::Command;

use common::{LAB, NSFW, Sandbox, show};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(NSFW).args(args).output().expect("run nsfw")
}

#[test]
fn every_subcommand_documents_file_defaults_and_exit_status() {
    let top = String::from_utf8(run(&["--help"]).stdout).expect("utf8");
    for group in ["Build:", "Inspect:", "Run:"] {
        assert!(top.contains(group), "{top}");
    }
    for (cmd, file) in [
        ("apply", true),
        ("diff", true),
        ("flush", true),
        ("show", true),
        ("verify", true),
        ("try", true),
        ("doctor", true),
        ("watch", true),
        ("status", false),
        ("completions", false),
        ("man", false),
    ] {
        let o = run(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd}");
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(h.contains("Exit status:"), "{cmd}: no exit status\n{h}");
        assert!(h.contains("Example"), "{cmd}: no example\n{h}");
        if file {
            assert!(h.contains("[FILE]"), "{cmd}: FILE undocumented\n{h}");
            let default = if cmd == "try" {
                "rulesets/lab.toml"
            } else {
                "/etc/nsfw/nsfw.toml"
            };
            assert!(h.contains(default), "{cmd}: default undocumented\n{h}");
        }
    }
    let status = String::from_utf8(run(&["status", "--help"]).stdout).expect("utf8");
    assert!(
        status.contains("[FILE]") && status.contains("no default"),
        "{status}"
    );
    let doctor = String::from_utf8(run(&["doctor", "--help"]).stdout).expect("utf8");
    assert!(doctor.contains("3 problems or warnings found"), "{doctor}");
    let diff = String::from_utf8(run(&["diff", "--help"]).stdout).expect("utf8");
    assert!(
        diff.contains("0 in sync, 2 changes pending, 1 error"),
        "{diff}"
    );
}

#[test]
fn bash_completes_commands() {
    let script = format!(
        "source <({NSFW} completions bash); COMP_WORDS=(nsfw ap); COMP_CWORD=1; COMP_LINE='nsfw ap'; COMP_POINT=7; _nsfw nsfw ap nsfw; echo \"${{COMPREPLY[@]}}\""
    );
    let o = Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "apply",
        "{}",
        show(&o)
    );
    for sh in ["zsh", "fish"] {
        let o = run(&["completions", sh]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{sh}");
    }
}

#[test]
fn the_man_page_renders_without_warnings() {
    let dir = std::env::temp_dir().join(format!("nsfw-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let page = dir.join("nsfw.1");
    std::fs::write(&page, run(&["man"]).stdout).expect("write");
    let o = Command::new("groff")
        .args(["-ww", "-man", "-Tutf8"])
        .arg(&page)
        .output()
        .expect("groff");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        o.stderr.is_empty(),
        "groff warnings:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let roff = std::fs::read_to_string(&page).expect("read");
    for s in ["NSFW APPLY", "NSFW FLUSH", "EXIT STATUS", "no\\-wait"] {
        assert!(roff.contains(s), "{s} missing from the man page");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn colour_only_on_a_terminal() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let esc = |s: &str| s.contains('\x1b');
    let piped = sb.nsfw(&["diff", &f]);
    assert!(
        !esc(&String::from_utf8_lossy(&piped.stdout)),
        "escape codes in a pipe"
    );
    // `script` gives nsfw a terminal.
    let tty = sb.sh(&format!("script -qec '{NSFW} diff {f}' /dev/null"));
    let out = String::from_utf8_lossy(&tty.stdout);
    assert!(
        out.contains("\x1b[32m  + namespace ns1") || out.contains("\x1b[32m"),
        "no colour on a terminal:\n{out}"
    );
    let no = sb.sh(&format!(
        "NO_COLOR=1 script -qec '{NSFW} diff {f}' /dev/null"
    ));
    assert!(
        !esc(&String::from_utf8_lossy(&no.stdout)),
        "NO_COLOR ignored"
    );
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn json_outputs_parse_and_follow_their_schema() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let d = json(&sb.nsfw_code(&["diff", "--json", &f], 2));
    assert_eq!(d["schema"], 1);
    assert!(d["summary"]["add"].as_u64().expect("add") > 0);
    for c in d["changes"].as_array().expect("changes") {
        for k in ["op", "object", "kind", "text"] {
            assert!(c[k].is_string(), "{k} in {c}");
        }
    }
    let a = json(&sb.nsfw_code(&["apply", "--json", &f], 0));
    assert_eq!(
        (a["command"].as_str(), a["applied"].as_bool()),
        (Some("apply"), Some(true))
    );
    assert_eq!(
        a["changes"].as_array().map(Vec::len),
        d["changes"].as_array().map(Vec::len)
    );
    let v = json(&sb.nsfw_code(&["verify", "--json", &f], 0));
    assert_eq!(v["passed"], v["total"]);
    for c in v["checks"].as_array().expect("checks") {
        for k in ["from", "to", "address", "port", "expected", "got"] {
            assert!(c[k].is_string(), "{k} in {c}");
        }
        assert_eq!(c["ok"], true);
    }
    let shown = json(&sb.nsfw_code(&["show", "--json", &f], 0));
    assert_eq!(
        (shown["schema"].as_u64(), shown["topology"].as_str()),
        (Some(1), Some("lab"))
    );
    let table = &shown["tables"][0];
    assert_eq!(
        (table["family"].as_str(), table["name"].as_str()),
        (Some("inet"), Some("nsfw_lab"))
    );
    let bridges = table["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|s| s["name"] == "bridges")
        .expect("set bridges");
    assert_eq!(bridges["elements"][0]["key"][0], "br0");
    let forward = table["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .find(|c| c["name"] == "forward")
        .expect("chain forward");
    assert_eq!(forward["base"]["hook"], "forward");
    let rule = &forward["rules"][0];
    assert_eq!(rule["text"], "iifname @bridges goto judge");
    assert_eq!(rule["statements"][0]["kind"], "match");
    assert_eq!(rule["statements"][0]["right"]["set"], "bridges");
    assert_eq!(
        (
            rule["statements"][1]["verdict"].as_str(),
            rule["statements"][1]["chain"].as_str()
        ),
        (Some("goto"), Some("judge"))
    );
    let t = json(&sb.nsfw_code(&["try", "--json"], 0));
    assert_eq!(t["passed"], t["total"]);
    assert!(t["total"].as_u64().expect("total") >= 8);
}

#[test]
fn flush_by_name_with_a_broken_file() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let lab = sb.file("lab.toml", LAB);
    let other = sb.file(
        "o.toml",
        "name = \"other\"\n[bridges.br1]\naddress = \"10.20.0.1/24\"\n[namespaces.o1]\nbridge = \"br1\"\n",
    );
    sb.nsfw_code(&["apply", &lab], 0);
    sb.nsfw_code(&["apply", &other], 0);
    std::fs::write(&lab, "this is = not [ a topology").expect("break the file");
    sb.nsfw_code(&["flush", &lab], 1);
    sb.nsfw_code(&["flush", "--name", "lab"], 0);
    assert_eq!(sb.netns(), ["o1"]);
    sb.nsfw_code(&["diff", &other], 0);
    sb.nsfw_code(&["flush", "--name", "Not A Name"], 1);
}

#[test]
fn apply_and_diff_read_standard_input() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    let o = sb.sh(&format!("{NSFW} apply - < {f}"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = sb.sh(&format!("{NSFW} diff - < {f}"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
