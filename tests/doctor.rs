//! `nsfw doctor` finds what on the host breaks a topology, each with its object and fix; and
//! `verify` names the rule behind an egress that fails.

mod common;

use common::{LAB, Sandbox, show};

fn doctor(sb: &Sandbox, f: &str, code: i32) -> String {
    let o = sb.nsfw(&["doctor", f]);
    assert_eq!(o.status.code(), Some(code), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn doctor_finds_each_problem_and_nothing_on_a_clean_host() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let clean = doctor(&sb, &f, 0);
    assert!(
        clean.contains("nothing on this host stands in the way"),
        "{clean}"
    );
    other_tables_drop(&sb, &f);
    iptables_forward_rejects(&sb, &f);
    legacy_tables(&sb, &f);
    neighbour_table_too_small(&sb);
}

/// (a) Another program's inet table: a forward chain whose policy drops.
fn other_tables_drop(sb: &Sandbox, f: &str) {
    sb.ok("nft add table inet other; nft add chain inet other forward '{ type filter hook forward priority 0; policy drop; }'; nft add rule inet other forward ct state established,related accept");
    let out = doctor(sb, f, 3);
    assert!(
        out.contains("problem: nft chain inet other forward: policy drop drops lab's traffic")
            && out.contains("br0 → the world (new connections)")
            && out.contains("nft insert rule inet other forward iifname \"br0\" accept"),
        "{out}"
    );
    // Replies pass its `ct state established,related accept`: not named.
    assert!(!out.contains("(replies)"), "{out}");
    sb.ok("nft delete table inet other");
    // The same drop behind a named set of the lab's subnet: the set's elements count.
    sb.ok("nft add table inet other; nft add set inet other blocked '{ type ipv4_addr; flags interval; elements = { 10.10.0.0/24 } }'; nft add chain inet other forward '{ type filter hook forward priority 0; }'; nft add rule inet other forward ip saddr @blocked drop");
    let out = doctor(sb, f, 3);
    assert!(
        out.contains("nft chain inet other forward: rule `ip saddr @blocked drop`"),
        "{out}"
    );
    sb.ok("nft delete table inet other");
    // A drop policy in a table marked as another topology's: still somebody's edit.
    let other = sb.file(
        "o.toml",
        "name = \"other\"\n[bridges.br9]\naddress = \"10.90.0.1/24\"\nmasquerade = true\n",
    );
    sb.nsfw_code(&["apply", &other], 0);
    assert!(doctor(sb, f, 0).contains("nothing on this host stands in the way"));
    sb.ok("nft add chain inet nsfw_other gate '{ type filter hook forward priority 10; policy drop; }'");
    let out = doctor(sb, f, 3);
    assert!(
        out.contains("problem: nft chain inet nsfw_other gate: policy drop drops lab's traffic"),
        "{out}"
    );
    sb.ok("nft delete chain inet nsfw_other gate");
    sb.nsfw_code(&["flush", &other], 0);
}

/// (b) iptables' FORWARD ends in REJECT, its policy accept.
fn iptables_forward_rejects(sb: &Sandbox, f: &str) {
    sb.ok("iptables -A FORWARD -j REJECT");
    let out = doctor(sb, f, 3);
    assert!(
        out.contains("problem: nft chain ip filter FORWARD: rule `reject` (handle")
            && out.contains("rejects lab's traffic")
            && out.contains("iptables -I FORWARD -i br0 -j ACCEPT")
            && out.contains("iptables -I FORWARD -o br0 -j ACCEPT")
            && out.contains("iptables -D FORWARD 1"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sb.nsfw_code(&["doctor", "--json", f], 3)).expect("json");
    assert_eq!(
        (json["schema"].as_u64(), json["problems"].as_u64()),
        (Some(1), Some(1))
    );
    for k in ["severity", "object", "what", "fix"] {
        assert!(json["findings"][0][k].is_string(), "{k}: {json}");
    }
    sb.ok("iptables -F FORWARD");
    // Docker's drop policy is a problem only until apply puts nsfw's accepts in.
    sb.ok("iptables -P FORWARD DROP");
    let out = doctor(sb, f, 3);
    assert!(out.contains("lab's accepts are not in FORWARD"), "{out}");
    sb.nsfw_code(&["apply", f], 0);
    doctor(sb, f, 0);
    sb.ok("iptables -P FORWARD ACCEPT");
    sb.nsfw_code(&["apply", f], 0);
}

/// (c) iptables-legacy tables, which nsfw cannot see into.
fn legacy_tables(sb: &Sandbox, f: &str) {
    if sb.sh("iptables-legacy -w -L -n").status.success() {
        let out = doctor(sb, f, 3);
        assert!(
            out.contains("warning: iptables-legacy tables filter")
                && out.contains("iptables-legacy -S"),
            "{out}"
        );
    } else {
        eprintln!("skipped (c): iptables-legacy cannot make a table here");
    }
}

/// (d) More namespaces than the neighbour table holds: a file of 2 entries per namespace
/// over the host's gc_thresh3 (shared by all namespaces, so read, never changed).
fn neighbour_table_too_small(sb: &Sandbox) {
    let ntable = sb.ok("ip ntable show name arp_cache");
    let limit: usize = ntable
        .split_whitespace()
        .skip_while(|w| *w != "thresh3")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("thresh3");
    let n = limit / 2 + 8;
    if n > 1000 {
        eprintln!("skipped (d): gc_thresh3 is {limit}, a file would need {n} namespaces");
        return;
    }
    let mut big = String::from("name = \"big\"\n[bridges.bb]\naddress = \"10.64.0.1/20\"\n");
    for i in 0..n {
        big.push_str(&format!("[namespaces.b{i}]\nbridge = \"bb\"\n"));
    }
    let bf = sb.file("big.toml", &big);
    let out = doctor(sb, &bf, 3);
    assert!(
        out.contains("problem: sysctl net.ipv4.neigh.default.gc_thresh3")
            && out.contains(&format!("below the {} neighbour entries", 2 * n)),
        "{out}"
    );
}

#[test]
fn verify_names_the_egress_that_fails_and_the_rule_that_rejects_it() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    sb.serve(Some("wan"), "tcp", &[8443]);
    let f = sb.file(
        "lab.toml",
        &format!("{LAB}[verify]\ntargets = [\"203.0.113.10:8443\"]\n"),
    );
    sb.nsfw_code(&["apply", &f], 0);
    let ok = sb.nsfw_code(&["verify", &f], 0);
    assert!(ok.contains("target 203.0.113.10"), "{ok}");
    sb.ok("iptables -A FORWARD -j REJECT");
    let o = sb.nsfw(&["verify", &f]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out.contains(
            "why ns1 → target 203.0.113.10 tcp/8443 failed: ip filter FORWARD rule `reject` (handle"
        ),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sb.nsfw_code(&["verify", "--json", &f], 1)).expect("json");
    let target = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["to"] == "target")
        .expect("a target check");
    assert_eq!(target["got"], "blocked");
    assert!(
        target["why"][0]
            .as_str()
            .is_some_and(|w| w.contains("rejects it")),
        "{target}"
    );
}

/// `verify` on a live host pings the default gateway from each namespace of a masquerading
/// bridge (egress and NAT: the gateway has no way back to 10.10.0.0/24), and when an
/// iptables-legacy FORWARD drop blocks it — at bridge-nf-call-iptables 0 and 1 — names
/// iptables-legacy as the cause.
#[test]
fn verify_checks_egress_and_names_iptables_legacy() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&[]);
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    let out = sb.nsfw_code(&["verify", &f], 0);
    for ns in ["ns1", "ns2"] {
        assert!(
            out.lines().any(|l| l.starts_with(ns)
                && l.contains("default gateway (uplink) 198.51.100.2")
                && l.ends_with("ok")),
            "{out}"
        );
    }
    if !sb.sh("iptables-legacy -w -L -n").status.success() {
        eprintln!("skipped: iptables-legacy cannot make a table here");
        return;
    }
    for brnf in ["0", "1"] {
        sb.ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={brnf}; iptables-legacy -w -P FORWARD DROP"
        ));
        // nsfw's own view says all is well; only the packets say otherwise.
        sb.nsfw_code(&["diff", &f], 0);
        let out = sb.nsfw_code(&["verify", &f], 1);
        let why = out
            .lines()
            .find(|l| l.starts_with("why ns1 → default gateway (uplink)"))
            .unwrap_or_else(|| panic!("br_netfilter {brnf}: no why line\n{out}"));
        assert!(
            why.contains("iptables-legacy tables are loaded (filter)")
                && why.contains("iptables-legacy -S FORWARD"),
            "br_netfilter {brnf}: {why}"
        );
        sb.ok("iptables-legacy -w -P FORWARD ACCEPT");
        sb.nsfw_code(&["verify", &f], 0);
    }
}
