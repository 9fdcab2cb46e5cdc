//! x_tables blobs built here byte by byte as the kernel returns them: read, rendered, and
//! rebuilt without some rules.

use super::Family;
use super::blob::{self, ACCEPT, DROP, RETURN};
use super::text;

/// An xt match or target: size, name, revision, data padded to 8.
fn xt(name: &str, rev: u8, data: &[u8]) -> Vec<u8> {
    let size = (32 + data.len()).next_multiple_of(8);
    let mut v = vec![0u8; size];
    v[..2].copy_from_slice(&(size as u16).to_ne_bytes());
    v[2..2 + name.len()].copy_from_slice(name.as_bytes());
    v[31] = rev;
    v[32..32 + data.len()].copy_from_slice(data);
    v
}

fn verdict(v: i32) -> Vec<u8> {
    xt("", 0, &v.to_ne_bytes())
}

/// An ipt_entry: `-s src/smask -i iif -o oif -p proto`, its matches and its target.
fn entry(
    src: ([u8; 4], [u8; 4]),
    iif: &str,
    oif: &str,
    inv: u8,
    proto: u16,
    matches: &[Vec<u8>],
    target: Vec<u8>,
) -> Vec<u8> {
    let mut h = vec![0u8; 112];
    h[0..4].copy_from_slice(&src.0);
    h[8..12].copy_from_slice(&src.1);
    for (at, name) in [(16, iif), (32, oif)] {
        h[at..at + name.len()].copy_from_slice(name.as_bytes());
        if !name.is_empty() {
            h[at + 32..at + 32 + name.len() + 1].fill(0xff);
        }
    }
    h[80..82].copy_from_slice(&proto.to_ne_bytes());
    h[83] = inv;
    let m: Vec<u8> = matches.concat();
    let target_offset = 112 + m.len();
    let next = target_offset + target.len();
    h[88..90].copy_from_slice(&(target_offset as u16).to_ne_bytes());
    h[90..92].copy_from_slice(&(next as u16).to_ne_bytes());
    // Counters the kernel filled in: not part of what a rule is.
    h[96..104].copy_from_slice(&7u64.to_ne_bytes());
    [h, m, target].concat()
}

fn error(name: &str) -> Vec<u8> {
    let mut d = [0u8; 30];
    d[..name.len()].copy_from_slice(name.as_bytes());
    entry(([0; 4], [0; 4]), "", "", 0, 0, &[], xt("ERROR", 0, &d))
}

/// filter: INPUT (policy), FORWARD (the conntrack accept, `-i br0 -o eth0 -j ACCEPT`,
/// `-i br0 -j MINE`, policy drop), OUTPUT (policy), chain MINE (`-s 10.10.0.5 -j DROP`,
/// RETURN), the end. Returns the blob, hook_entry and underflow.
fn filter() -> (Vec<u8>, [u32; 5], [u32; 5]) {
    let mut ct = vec![0u8; 160];
    ct[146..148].copy_from_slice(&1u16.to_ne_bytes());
    ct[150..152].copy_from_slice(&6u16.to_ne_bytes());
    let mut blob = Vec::new();
    let mut hook = [u32::MAX; 5];
    let mut under = [u32::MAX; 5];
    let any = ([0; 4], [0; 4]);
    hook[1] = blob.len() as u32;
    under[1] = blob.len() as u32;
    blob.extend(entry(any, "", "", 0, 0, &[], verdict(ACCEPT)));
    hook[2] = blob.len() as u32;
    blob.extend(entry(
        any,
        "",
        "",
        0,
        0,
        &[xt("conntrack", 3, &ct)],
        verdict(ACCEPT),
    ));
    blob.extend(entry(any, "br0", "eth0", 0, 0, &[], verdict(ACCEPT)));
    let jump_at = blob.len();
    blob.extend(entry(any, "br0", "", 0, 0, &[], verdict(0)));
    under[2] = blob.len() as u32;
    blob.extend(entry(any, "", "", 0, 0, &[], verdict(DROP)));
    hook[3] = blob.len() as u32;
    under[3] = blob.len() as u32;
    blob.extend(entry(any, "", "", 0, 0, &[], verdict(ACCEPT)));
    blob.extend(error("MINE"));
    let mine = blob.len() as i32;
    blob.extend(entry(
        ([10, 10, 0, 5], [255; 4]),
        "",
        "",
        0,
        0,
        &[],
        verdict(DROP),
    ));
    blob.extend(entry(any, "", "", 0, 0, &[], verdict(RETURN)));
    blob.extend(error("ERROR"));
    // The jump's offset, now that MINE's place is known.
    let es = blob::entries(Family::V4, &blob).unwrap();
    let j = es.iter().find(|e| e.offset == jump_at).unwrap().target.at;
    blob[j..j + 4].copy_from_slice(&mine.to_ne_bytes());
    (blob, hook, under)
}

fn rendered(blob: &[u8], hook: &[u32; 5], under: &[u32; 5]) -> Vec<(String, String)> {
    let es = blob::entries(Family::V4, blob).unwrap();
    let places = blob::places(&es, hook, under, 0b1110);
    let chain_at = |o: usize| {
        es.iter()
            .zip(&places)
            .find(|(e, _)| e.offset + e.len == o && e.error_name().is_some())
            .map(|(_, p)| p.chain.clone())
    };
    es.iter()
        .zip(&places)
        .filter(|(_, p)| p.rule)
        .map(|(e, p)| (p.chain.clone(), text::render(Family::V4, e, &chain_at)))
        .collect()
}

#[test]
fn a_table_reads_as_nft_prints_the_same_lines() {
    let (b, hook, under) = filter();
    let r = rendered(&b, &hook, &under);
    let want: Vec<(String, String)> = [
        ("FORWARD", "ct state established,related accept"),
        ("FORWARD", r#"iifname "br0" oifname "eth0" accept"#),
        ("FORWARD", r#"iifname "br0" jump MINE"#),
        ("MINE", "ip saddr 10.10.0.5 drop"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .collect();
    assert_eq!(r, want);
}

#[test]
fn without_a_rule_the_jumps_and_hooks_follow() {
    let (b, hook, under) = filter();
    let es = blob::entries(Family::V4, &b).unwrap();
    // The first two rules of FORWARD.
    let gone = [es[1].offset, es[2].offset];
    let (mut h, mut u) = (hook, under);
    let (nb, kept) = blob::without(Family::V4, &b, &gone, &mut h, &mut u).unwrap();
    assert_eq!(kept.len(), es.len() - 2);
    let r = rendered(&nb, &h, &u);
    assert_eq!(
        r.iter()
            .map(|(c, t)| format!("{c}: {t}"))
            .collect::<Vec<_>>(),
        [
            r#"FORWARD: iifname "br0" jump MINE"#,
            "MINE: ip saddr 10.10.0.5 drop"
        ]
    );
    // FORWARD starts at its first kept rule; a hook the table is not on stays unset.
    assert_eq!(h[2] as usize, es[1].offset);
    assert_eq!(h[0], u32::MAX);
    assert_eq!(u[2] as usize, es[4].offset - es[1].len - es[2].len);
}

#[test]
fn the_key_leaves_out_the_counters() {
    let (b, _, _) = filter();
    let es = blob::entries(Family::V4, &b).unwrap();
    let mut other = b.clone();
    other[es[2].offset + 96] ^= 0xff;
    let es2 = blob::entries(Family::V4, &other).unwrap();
    assert_eq!(es[2].key(Family::V4, &b), es2[2].key(Family::V4, &other));
    assert_ne!(es[1].key(Family::V4, &b), es[2].key(Family::V4, &b));
}

#[test]
fn what_is_not_read_is_said_so() {
    let any = ([0; 4], [0; 4]);
    let tcp = {
        let mut d = vec![0u8; 12];
        d[2..4].copy_from_slice(&u16::MAX.to_ne_bytes());
        d[4..6].copy_from_slice(&8080u16.to_ne_bytes());
        d[6..8].copy_from_slice(&8080u16.to_ne_bytes());
        d
    };
    // MASQUERADE rev 0: rangesize 1, nothing else.
    let mut masq = vec![0u8; 20];
    masq[..4].copy_from_slice(&1u32.to_ne_bytes());
    let cases = [
        (
            entry(any, "", "br0", 0x02, 0, &[], xt("MASQUERADE", 0, &masq)),
            r#"oifname != "br0" masquerade"#.to_string(),
        ),
        (
            entry(any, "br0", "", 0, 6, &[xt("tcp", 0, &tcp)], verdict(ACCEPT)),
            r#"iifname "br0" meta l4proto tcp tcp dport 8080 accept"#.to_string(),
        ),
        (
            entry(any, "br0", "", 0, 0, &[xt("comment", 0, b"x")], verdict(ACCEPT)),
            "iifname \"br0\" [nsfw cannot read this (xtables match comment): match name=\"comment\" rev=0 info=0x7800000000000000] accept".to_string(),
        ),
        (
            entry(any, "", "", 0x40, 6, &[], verdict(DROP)),
            "[nsfw cannot read this (! -p tcp)] drop".to_string(),
        ),
    ];
    for (e, want) in cases {
        let es = blob::entries(Family::V4, &e).unwrap();
        assert_eq!(text::render(Family::V4, &es[0], &|_| None), want);
    }
}

/// `-o upl+`: iptables keeps the `+` in the name and leaves the mask's byte under it (and
/// after it) zero. Written as nft writes a wildcard, once: never `upl++`.
#[test]
fn a_wildcard_interface_is_written_once_as_a_wildcard() {
    let any = ([0; 4], [0; 4]);
    let mut e = entry(any, "", "upl+", 0, 0, &[], verdict(ACCEPT));
    e[64 + 3..64 + 5].fill(0);
    let es = blob::entries(Family::V4, &e).unwrap();
    assert_eq!(
        text::render(Family::V4, &es[0], &|_| None),
        r#"oifname "upl*" accept"#
    );
}

/// conntrack's 64 is SNAT (not read), its 256 untracked; `-m state` as iptables 1.8 loads it
/// (conntrack rev 3 with the state-alias flag) is read as the state it says.
#[test]
fn conntrack_states_are_read_by_the_conntracks_bits() {
    let any = ([0; 4], [0; 4]);
    let ct = |flags: u16, mask: u16| {
        let mut d = vec![0u8; 160];
        d[146..148].copy_from_slice(&flags.to_ne_bytes());
        d[150..152].copy_from_slice(&mask.to_ne_bytes());
        let e = entry(
            any,
            "",
            "",
            0,
            0,
            &[xt("conntrack", 3, &d)],
            verdict(ACCEPT),
        );
        let es = blob::entries(Family::V4, &e).unwrap();
        text::render(Family::V4, &es[0], &|_| None)
    };
    assert_eq!(ct(1, 6), "ct state established,related accept");
    assert_eq!(ct(0x2001, 6), "ct state established,related accept");
    assert_eq!(ct(1, 256), "ct state untracked accept");
    assert!(ct(1, 64).contains("cannot read this"), "{}", ct(1, 64));
}
