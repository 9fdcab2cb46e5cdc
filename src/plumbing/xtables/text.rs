//! An x_tables entry as `nft` would print the rule iptables-nft makes of the same line
//! (`iifname "br0" oifname "eth0" accept`, `ip saddr 10.10.0.0/24 masquerade`), so that the
//! one reader of the guide's lines (`import::rules`) reads both. Only what those lines use is
//! read: interfaces, addresses, the protocol, `tcp`/`udp` destination ports, `conntrack` and
//! `state`, ACCEPT/DROP/RETURN, MASQUERADE/SNAT/DNAT. Anything else is written as
//! `[nsfw cannot read this (xtables match NAME)]`, which no reader takes for a clause: the
//! rule is then noted, never guessed at. Pure.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Family;
use super::blob::{ACCEPT, DROP, Entry, RETURN, Xt, u16_at, u32_at};

/// What is not read, with its bytes (as the nft crate shows an xtables expression it cannot
/// read, so that a DNAT into the lab is found in either).
fn unread(what: &str, x: &Xt) -> String {
    let hex: String = x.data.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "[nsfw cannot read this (xtables {what} {}): {what} name=\"{}\" rev={} info=0x{hex}]",
        x.name, x.name, x.rev
    )
}

/// A mask's prefix length, if its ones are contiguous.
fn prefix(mask: &[u8]) -> Option<u32> {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let contiguous = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .skip(ones as usize)
        .all(|bit| !bit);
    contiguous.then_some(ones)
}

fn addr(f: Family, b: &[u8]) -> String {
    match f {
        Family::V4 => <[u8; 4]>::try_from(b).map(|a| Ipv4Addr::from(a).to_string()),
        Family::V6 => <[u8; 16]>::try_from(b).map(|a| Ipv6Addr::from(a).to_string()),
    }
    .unwrap_or_default()
}

/// `iifname "br0"`, `oifname != "br*"` (a wildcard as nft writes it: no clause reads it as a
/// bridge's name). iptables keeps its `+` in the name bytes and says "wildcard" through the
/// mask alone (no 0xff after the compared bytes).
fn iface(key: &str, name: &[u8], mask: &[u8], inv: bool) -> Option<String> {
    let n = super::blob::cstr(name);
    if n.is_empty() {
        return None;
    }
    let exact = mask.get(n.len()).is_some_and(|m| *m == 0xff);
    let n = if exact {
        n
    } else {
        let compared = mask.iter().take_while(|m| **m == 0xff).count();
        format!("{}*", n.get(..compared.min(n.len())).unwrap_or(&n))
    };
    Some(format!("{key} {}\"{n}\"", if inv { "!= " } else { "" }))
}

fn proto_name(p: u16) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

/// The head's clauses: interfaces, addresses, protocol.
fn head(f: Family, h: &[u8], words: &mut Vec<String>) -> Option<()> {
    // ipt_ip: src, dst, smsk, dmsk (4 bytes each), iniface, outiface, their masks (16 each),
    // proto u16, flags, invflags; ip6t_ip6 the same with 16-byte addresses and a tos byte.
    let (a, fam) = match f {
        Family::V4 => (4, "ip"),
        Family::V6 => (16, "ip6"),
    };
    let ifs = 4 * a;
    let proto = u16_at(h, ifs + 64)?;
    let (flags, inv) = match f {
        Family::V4 => (*h.get(ifs + 66)?, *h.get(ifs + 67)?),
        // IP6T_F_PROTO (1) says the protocol is set: not a condition of its own; IP6T_F_GOTO
        // is 4 (read by `render`); IP6T_F_TOS (2) is a condition, brought to IPv4's flag
        // bit that is one (1, -f) so that it is flagged below.
        Family::V6 => (u8::from(*h.get(ifs + 67)? & 2 != 0), *h.get(ifs + 68)?),
    };
    words.extend(iface(
        "iifname",
        &h[ifs..ifs + 16],
        &h[ifs + 32..ifs + 48],
        inv & 1 != 0,
    ));
    words.extend(iface(
        "oifname",
        &h[ifs + 16..ifs + 32],
        &h[ifs + 48..ifs + 64],
        inv & 2 != 0,
    ));
    for (i, key, bit) in [(0, "saddr", 0x08u8), (1, "daddr", 0x10)] {
        let mask = &h[(2 + i) * a..(3 + i) * a];
        if mask.iter().all(|b| *b == 0) {
            continue;
        }
        let Some(p) = prefix(mask) else {
            words.push("[nsfw cannot read this (a non-contiguous address mask)]".into());
            continue;
        };
        let ip = addr(f, &h[i * a..(i + 1) * a]);
        let neg = if inv & bit != 0 { "!= " } else { "" };
        let full = if f == Family::V4 { 32 } else { 128 };
        let net = if p == full { ip } else { format!("{ip}/{p}") };
        words.push(format!("{fam} {key} {neg}{net}"));
    }
    if proto != 0 {
        if inv & 0x40 != 0 {
            words.push(format!(
                "[nsfw cannot read this (! -p {})]",
                proto_name(proto)
            ));
        } else {
            words.push(format!("meta l4proto {}", proto_name(proto)));
        }
    }
    // -f, a TOS, or a negated one of those: what no guide line says.
    if flags & !2 != 0 || inv & !(0x01 | 0x02 | 0x08 | 0x10 | 0x40) != 0 {
        words.push("[nsfw cannot read this (-f or a TOS)]".into());
    }
    Some(())
}

/// conntrack's or state's state mask as `ct state` names it. `untracked` is the state
/// match's 64 and the conntrack match's 256 (its 64 and 128 are SNAT and DNAT, not read).
fn states(mask: u32, untracked: u32) -> Option<String> {
    let names = [
        (1, "invalid"),
        (2, "established"),
        (4, "related"),
        (8, "new"),
        (untracked, "untracked"),
    ];
    let known: u32 = names.iter().map(|(b, _)| b).sum();
    if mask == 0 || mask & !known != 0 {
        return None;
    }
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| *n)
        .collect();
    Some(format!("ct state {}", v.join(",")))
}

fn a_match(x: &Xt) -> Option<String> {
    let d = x.data;
    match (x.name.as_str(), x.rev) {
        // xt_tcp / xt_udp: spts[2], dpts[2] (host order), then tcp's option, flags and
        // invflags, or udp's invflags.
        (p @ ("tcp" | "udp"), 0) => {
            let (sp0, sp1, dp0, dp1) = (u16_at(d, 0)?, u16_at(d, 2)?, u16_at(d, 4)?, u16_at(d, 6)?);
            let rest = if p == "tcp" {
                d.get(8..12)?
            } else {
                d.get(8..9)?
            };
            if (sp0, sp1) != (0, u16::MAX) || rest.iter().any(|b| *b != 0) {
                return None;
            }
            Some(match (dp0, dp1) {
                (0, u16::MAX) => String::new(),
                (a, b) if a == b => format!("{p} dport {a}"),
                (a, b) => format!("{p} dport {a}-{b}"),
            })
        }
        // xt_conntrack_mtinfo3: the state alone (match_flags XT_CONNTRACK_STATE, or that
        // and XT_CONNTRACK_STATE_ALIAS 0x2000, which is how iptables 1.8 loads `-m state`;
        // nothing inverted, every other field zero).
        ("conntrack", 3) => {
            let ok = d
                .iter()
                .enumerate()
                .all(|(i, b)| *b == 0 || (146..148).contains(&i) || (150..152).contains(&i));
            if !ok || !matches!(u16_at(d, 146)?, 1 | 0x2001) || u16_at(d, 148)? != 0 {
                return None;
            }
            states(u32::from(u16_at(d, 150)?), 256)
        }
        ("state", 0) => states(u32_at(d, 0)?, 64),
        _ => None,
    }
}

/// The nft statement of an xtables NAT target's info: rev 0 is `nf_nat_ipv4_multi_range_compat`
/// (rangesize, then flags, min and max address, min and max port), rev 1 and 2 `nf_nat_range`
/// and `nf_nat_range2` (flags, min and max address as 16 bytes each, min and max port). IPv4.
pub(crate) fn nat_stmt(name: &str, rev: u8, b: &[u8]) -> Option<String> {
    let u32le = |o: usize| u32_at(b, o);
    let port = |o: usize| Some(u16::from_be_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let v4 = |o: usize| -> Option<Ipv4Addr> {
        Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(o..o + 4)?).ok()?))
    };
    let (flags, min, max, pmin, pmax) = match rev {
        0 if u32le(0)? == 1 => (u32le(4)?, v4(8)?, v4(12)?, port(16)?, port(18)?),
        1 | 2 => (u32le(0)?, v4(4)?, v4(20)?, port(36)?, port(38)?),
        _ => return None,
    };
    // NF_NAT_RANGE_MAP_IPS 1, NF_NAT_RANGE_PROTO_SPECIFIED 2; anything else (random,
    // persistent, fully random, netmap) has no place in a topology file.
    let (ips, ports) = (flags & 1 != 0, flags & 2 != 0);
    if flags & !3 != 0 || min != max || pmin != pmax {
        return None;
    }
    match name {
        "MASQUERADE" if !ips && !ports => Some("masquerade".into()),
        "DNAT" | "SNAT" if ips => {
            let verb = name.to_lowercase();
            Some(if ports {
                format!("{verb} to {min}:{pmin}")
            } else {
                format!("{verb} to {min}")
            })
        }
        _ => None,
    }
}

/// The rule's text. `chain_at` names the chain a jump's offset starts.
pub(super) fn render(f: Family, e: &Entry, chain_at: &dyn Fn(usize) -> Option<String>) -> String {
    let mut words = Vec::new();
    if head(f, e.head, &mut words).is_none() {
        words.push("[nsfw cannot read this (entry head)]".into());
    }
    for m in &e.matches {
        match a_match(m) {
            Some(w) if w.is_empty() => {}
            Some(w) => words.push(w),
            None => words.push(unread("match", m)),
        }
    }
    let t = &e.target;
    let goto = match f {
        Family::V4 => e.head.get(82).is_some_and(|b| b & 2 != 0),
        Family::V6 => e.head.get(131).is_some_and(|b| b & 4 != 0),
    };
    words.push(match e.verdict() {
        Some(ACCEPT) => "accept".into(),
        Some(DROP) => "drop".into(),
        Some(RETURN) => "return".into(),
        Some(v) if v >= 0 => {
            let to = usize::try_from(v).ok().and_then(chain_at);
            let verb = if goto { "goto" } else { "jump" };
            format!("{verb} {}", to.unwrap_or_else(|| format!("@{v}")))
        }
        Some(_) => unread("target", t),
        None => match f {
            Family::V4 => nat_stmt(&t.name, t.rev, t.data).unwrap_or_else(|| unread("target", t)),
            Family::V6 => unread("target", t),
        },
    });
    words.join(" ")
}
