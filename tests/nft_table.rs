//! nsfw's own table against rules someone else added to it, and against the same ruleset
//! restored by `nft -f` from `nsfw show`: the app's diff over the nft library, in the kernel.

mod common;

use common::{LAB, Sandbox};

#[test]
fn foreign_rules_in_nsfws_table_are_shown_in_nft_syntax() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("lab.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    sb.ok("set -e
           nft add rule inet nsfw_lab forward counter
           nft add chain inet nsfw_lab pre '{ type nat hook prerouting priority dstnat; }'
           nft add rule inet nsfw_lab pre tcp dport 8080 dnat ip to 10.10.0.2:80
           nft add set inet nsfw_lab blocked '{ type ipv4_addr; flags interval; elements = { 192.0.2.0/24 } }'
           nft add rule inet nsfw_lab forward ip saddr @blocked drop
           nft add rule inet nsfw_lab forward log prefix \\\"seen: \\\" accept
           nft add rule inet nsfw_lab forward tcp flags syn tcp option maxseg size set rt mtu
           nft add set inet nsfw_lab tf '{ type tcp_flag; }'
           nft add chain inet nsfw_lab ing '{ type filter hook ingress device lo priority 0; }'");
    let out = sb.nsfw_code(&["diff", &f], 2);
    for want in [
        "- nft rule inet nsfw_lab forward: counter packets 0 bytes 0 (handle",
        "- nft chain inet nsfw_lab pre",
        "- nft rule inet nsfw_lab pre: tcp dport 8080 dnat ip to 10.10.0.2:80 (handle",
        "- nft set inet nsfw_lab blocked",
        "- nft rule inet nsfw_lab forward: ip saddr @blocked drop (handle",
        "- nft rule inet nsfw_lab forward: log prefix \"seen: \" accept (handle",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Objects the IR cannot hold are named and make the table unequal to nsfw's.
    for want in [
        "~ nft table inet nsfw_lab: set tf (key type 0xf: nsfw cannot read it)",
        "~ nft table inet nsfw_lab: chain ing: a base chain of type filter on hook 5",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // A rule nsfw cannot read is still shown by what it is made of, never as raw bytes alone.
    let odd = out
        .lines()
        .find(|l| l.contains("nsfw cannot read this"))
        .unwrap_or_else(|| panic!("the tcp option rule is not shown:\n{out}"));
    assert!(odd.contains("exthdr") || odd.contains("payload"), "{odd}");
    sb.nsfw_code(&["apply", &f], 0);
    sb.nsfw_code(&["diff", &f], 0);
}

#[test]
fn every_shipped_ruleset_restored_by_nft_from_show_is_in_sync() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rulesets");
    let mut n = 0;
    for ent in std::fs::read_dir(&dir).expect("rulesets") {
        let path = ent.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let Some(sb) = Sandbox::or_skip() else { return };
        let f = path.display().to_string();
        sb.nsfw_code(&["apply", &f], 0);
        // The topology's table only: its port security's bridge table stays as apply made it
        // (nft before 1.0.8 cannot parse `icmpv6 taddr`; tests/port_security.rs covers it).
        let all = sb.nsfw_code(&["show", &f], 0);
        let inet = all.split("\ntable bridge ").next().expect("the inet table");
        let shown = sb.file("shown.nft", inet);
        let name = std::fs::read_to_string(&shown)
            .expect("shown")
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .expect("table line");
        sb.ok(&format!("nft delete table inet {name} && nft -f {shown}"));
        let out = sb.nsfw_code(&["diff", &f], 0);
        assert!(out.contains("in sync"), "{f}: {out}");
    }
    assert!(n >= 3, "rulesets missing");
}
