//! The guide's lines read, and what no key of a file says left unread.

use super::*;

#[test]
fn an_unread_dnat_into_the_lab_concerns_it() {
    let s: Vec<IpNetwork> = vec!["10.10.0.0/24".parse().unwrap()];
    let t = r#"meta l4proto tcp [nsfw cannot read this (range ==): payload dreg=1 base=2 offset=2 len=2; range sreg=1 op=0 from=0x03e8 to=0x07d0; target name="DNAT" rev=2 info=0x030000000a0a00020000000000000000000000000a0a00020000000000000000000000000bb80fa00000000000000000]"#;
    assert!(unread_nat_into(t, &s));
    let other: Vec<IpNetwork> = vec!["10.20.0.0/24".parse().unwrap()];
    assert!(!unread_nat_into(t, &other));
}

#[test]
fn the_guides_lines() {
    assert_eq!(
        classify(
            "POSTROUTING",
            r#"oifname != "br0" ip saddr 10.10.0.0/24 masquerade"#
        ),
        Some(Meaning::Masquerade {
            subnet: "10.10.0.0/24".parse().unwrap(),
            uplink: None,
            not_out: Some("br0".into()),
            snat: None
        })
    );
    assert_eq!(
        classify("FORWARD", "ct state related,established accept"),
        Some(Meaning::Stateful)
    );
    assert_eq!(
        classify("FORWARD", r#"iifname "br0" oifname "eth0" accept"#),
        Some(Meaning::Egress { from: "br0".into() })
    );
    assert_eq!(
        classify("FORWARD", r#"oifname "br0" accept"#),
        Some(Meaning::Inbound { to: "br0".into() })
    );
    // Narrower than any publish (one interface, one source): not translated.
    for narrow in [
        r#"iifname "eth0" tcp dport 8080 dnat to 10.10.0.2:80"#,
        r#"ip saddr 203.0.113.2 tcp dport 8080 dnat to 10.10.0.2:80"#,
        r#"iifname != "br0" tcp dport 8080 dnat to 10.10.0.2:80"#,
    ] {
        assert_eq!(classify("PREROUTING", narrow), None, "{narrow}");
    }
    assert_eq!(
        classify(
            "PREROUTING",
            r#"ip daddr 198.51.100.1 tcp dport 8080 dnat to 10.10.0.2:80"#
        ),
        Some(Meaning::Publish {
            proto: "tcp".into(),
            host_addr: Some("198.51.100.1".parse().unwrap()),
            port: 8080,
            to: "10.10.0.2".parse().unwrap(),
            to_port: 80
        })
    );
    assert_eq!(
        classify("PREROUTING", r#"tcp dport 8080 dnat to 10.10.0.2:80"#),
        Some(Meaning::Publish {
            proto: "tcp".into(),
            host_addr: None,
            port: 8080,
            to: "10.10.0.2".parse().unwrap(),
            to_port: 80
        })
    );
    assert_eq!(
        classify("FORWARD", "ip saddr 10.10.0.2 ip daddr 10.10.0.3 drop"),
        Some(Meaning::Drop {
            from: "10.10.0.2".into(),
            to: "10.10.0.3".into()
        })
    );
}

#[test]
fn what_it_does_not_know_it_does_not_guess() {
    assert_eq!(
        classify("PREROUTING", r#"iifname "br0" meta mark set 0x1"#),
        None
    );
    assert_eq!(classify("FORWARD", "tcp dport 22 accept"), None);
    assert_eq!(
        classify("FORWARD", r#"iifname "br0" log prefix "x" accept"#),
        None
    );
    assert_eq!(classify("INPUT", r#"iifname "br0" accept"#), None);
    assert_eq!(classify("POSTROUTING", "xt target MASQUERADE"), None);
}

#[test]
fn iptables_nft_targets_read() {
    let m = r#"ip saddr 10.10.0.0/24 [nsfw cannot read this (xtables target MASQUERADE): target name="MASQUERADE" rev=0 info=0x010000000000000000000000000000000000000000000000]"#;
    assert_eq!(xt_as_nft(m), "ip saddr 10.10.0.0/24 masquerade");
    let d = r#"tcp dport 8080 [nsfw cannot read this (xtables target DNAT): target name="DNAT" rev=0 info=0x01000000030000000a0a00020a0a000200500050]"#;
    assert_eq!(xt_as_nft(d), "tcp dport 8080 dnat to 10.10.0.2:80");
    let odd = r#"[nsfw cannot read this (xtables target MASQUERADE): target name="MASQUERADE" rev=0 info=0x01000000100000000000000000000000]"#;
    assert_eq!(xt_as_nft(odd), odd, "--random is not a plain masquerade");
}

#[test]
fn rules_that_concern_the_lab() {
    let b = ["br0".to_string()];
    let s = ["10.10.0.0/24".parse().unwrap()];
    assert!(concerns(r#"iifname "br0" accept"#, &b, &s));
    assert!(concerns("ip saddr 10.10.0.0/24 masquerade", &b, &s));
    assert!(concerns("tcp dport 80 dnat to 10.10.0.2:80", &b, &s));
    assert!(!concerns(r#"iifname "docker0" accept"#, &b, &s));
}

/// Negations, wildcards and prefixes: never widened, narrowed or inverted into a key.
#[test]
fn what_no_key_says_is_not_translated() {
    for (chain, t) in [
        // H4: `! -d 10.0.0.0/8` (or any destination) narrows the masquerade.
        (
            "POSTROUTING",
            "ip saddr 10.10.0.0/24 ip daddr != 10.0.0.0/8 masquerade",
        ),
        (
            "POSTROUTING",
            "ip saddr 10.10.0.0/24 ip daddr 10.0.0.0/8 masquerade",
        ),
        ("POSTROUTING", "ip saddr != 10.10.0.0/24 masquerade"),
        // H3: a wildcard names no one uplink.
        (
            "POSTROUTING",
            r#"oifname "upl*" ip saddr 10.10.0.0/24 masquerade"#,
        ),
        (
            "POSTROUTING",
            r#"oifname "upl+" ip saddr 10.10.0.0/24 masquerade"#,
        ),
        ("FORWARD", r#"iifname "br*" accept"#),
        // Negated interfaces and addresses of accepts, drops and DNATs.
        ("FORWARD", r#"iifname != "br0" accept"#),
        ("FORWARD", r#"iifname "br0" oifname != "uplink" accept"#),
        ("FORWARD", "ip saddr != 10.10.0.0/24 accept"),
        (
            "FORWARD",
            r#"oifname != "br0" ct state established,related accept"#,
        ),
        (
            "FORWARD",
            r#"oifname "br0" ct state established,related accept"#,
        ),
        ("FORWARD", "ip saddr 10.10.0.2 ip daddr != 10.10.0.3 drop"),
        (
            "PREROUTING",
            "ip daddr != 198.51.100.1 tcp dport 8080 dnat to 10.10.0.2:80",
        ),
        // H7: a prefix would be narrowed to its first address.
        ("FORWARD", "ip saddr 10.10.0.2 ip daddr 10.10.0.4/30 drop"),
        ("FORWARD", "ip saddr 10.10.0.0/30 ip daddr 10.10.0.4 drop"),
    ] {
        assert_eq!(classify(chain, t), None, "{t}");
    }
    // H5: `! -o uplink` is carried, for the file to be compared with; the guide's
    // `! -o br0` too.
    assert_eq!(
        classify(
            "POSTROUTING",
            r#"oifname != "uplink" ip saddr 10.10.0.0/24 masquerade"#
        ),
        Some(Meaning::Masquerade {
            subnet: "10.10.0.0/24".parse().unwrap(),
            uplink: None,
            not_out: Some("uplink".into()),
            snat: None
        })
    );
}

fn dnat(chain: &str, text: &str) -> Found {
    Found {
        at: At {
            family: nft::Family::Ip,
            table: "nat".into(),
            chain: chain.into(),
            handle: 1,
            legacy: None,
        },
        text: text.into(),
        meaning: classify(chain, text),
    }
}

/// H6: an OUTPUT DNAT alone is the host's own connections, not a `publish`; beside the
/// same PREROUTING DNAT (the guide's pair) it is.
#[test]
fn an_output_dnat_alone_is_no_publish() {
    let t = "ip daddr 198.51.100.1 tcp dport 8080 dnat to 10.10.0.2:80";
    let mut alone = vec![dnat("OUTPUT", t)];
    assert!(alone[0].meaning.is_some());
    pair_output_dnat(&mut alone);
    assert_eq!(alone[0].meaning, None);
    let mut pair = vec![dnat("PREROUTING", t), dnat("OUTPUT", t)];
    pair_output_dnat(&mut pair);
    assert!(pair[1].meaning.is_some());
    let other = "ip daddr 198.51.100.1 tcp dport 8080 dnat to 10.10.0.2:22";
    let mut differ = vec![dnat("PREROUTING", t), dnat("OUTPUT", other)];
    pair_output_dnat(&mut differ);
    assert_eq!(differ[1].meaning, None);
}

/// M2: IPv6 words are addresses (not split on `:`); `10.10.0.2:80` still is one.
#[test]
fn ipv6_addresses_concern_the_lab() {
    let b = ["br0".to_string()];
    let s: Vec<IpNetwork> = vec![
        "fd00:10::/64".parse().unwrap(),
        "10.10.0.0/24".parse().unwrap(),
    ];
    assert!(concerns(
        "ip6 saddr fd00:10::/64 ip6 daddr != fd00:10::/64 accept",
        &b,
        &s
    ));
    assert!(concerns("ip6 daddr fd00:10::2 accept", &b, &s));
    assert!(concerns("dnat to 10.10.0.2:80", &b, &s));
    assert!(!concerns("ip6 saddr fd00:20::/64 accept", &b, &s));
}
