//! How `nft` prints values: the symbol tables of nftables' datatype.c, proto.c, ct.c, meta.c
//! and fib.c, and the formats of addresses, marks and names.

use super::types::Value;

const ICMP_TYPES: &[(u8, &str)] = &[
    (0, "echo-reply"),
    (3, "destination-unreachable"),
    (4, "source-quench"),
    (5, "redirect"),
    (8, "echo-request"),
    (9, "router-advertisement"),
    (10, "router-solicitation"),
    (11, "time-exceeded"),
    (12, "parameter-problem"),
    (13, "timestamp-request"),
    (14, "timestamp-reply"),
    (15, "info-request"),
    (16, "info-reply"),
    (17, "address-mask-request"),
    (18, "address-mask-reply"),
];

const ICMPV6_TYPES: &[(u8, &str)] = &[
    (1, "destination-unreachable"),
    (2, "packet-too-big"),
    (3, "time-exceeded"),
    (4, "parameter-problem"),
    (128, "echo-request"),
    (129, "echo-reply"),
    (130, "mld-listener-query"),
    (131, "mld-listener-report"),
    (132, "mld-listener-done"),
    (133, "nd-router-solicit"),
    (134, "nd-router-advert"),
    (135, "nd-neighbor-solicit"),
    (136, "nd-neighbor-advert"),
    (137, "nd-redirect"),
    (138, "router-renumbering"),
    (141, "ind-neighbor-solicit"),
    (142, "ind-neighbor-advert"),
    (143, "mld2-listener-report"),
];

/// Reject codes: `reject with icmp host-unreachable`.
pub const ICMP_CODES: &[(u8, &str)] = &[
    (0, "net-unreachable"),
    (1, "host-unreachable"),
    (2, "prot-unreachable"),
    (3, "port-unreachable"),
    (9, "net-prohibited"),
    (10, "host-prohibited"),
    (13, "admin-prohibited"),
    (4, "frag-needed"),
];
pub const ICMPV6_CODES: &[(u8, &str)] = &[
    (0, "no-route"),
    (1, "admin-prohibited"),
    (3, "addr-unreachable"),
    (4, "port-unreachable"),
    (5, "policy-fail"),
    (6, "reject-route"),
];
pub const ICMPX_CODES: &[(u8, &str)] = &[
    (1, "port-unreachable"),
    (3, "admin-prohibited"),
    (0, "no-route"),
    (2, "host-unreachable"),
];

const CT_STATES: &[(u32, &str)] = &[
    (1, "invalid"),
    (2, "established"),
    (4, "related"),
    (8, "new"),
    (64, "untracked"),
];
const CT_STATUS: &[(u32, &str)] = &[
    (1, "expected"),
    (2, "seen-reply"),
    (4, "assured"),
    (8, "confirmed"),
    (16, "snat"),
    (32, "dnat"),
    (512, "dying"),
];
const ETHER_TYPES: &[(u16, &str)] = &[
    (0x0800, "ip"),
    (0x0806, "arp"),
    (0x86dd, "ip6"),
    (0x8100, "8021q"),
    (0x88a8, "8021ad"),
];
const ARPHRD: &[(u16, &str)] = &[
    (1, "ether"),
    (512, "ppp"),
    (768, "ipip"),
    (769, "ipip6"),
    (772, "loopback"),
    (776, "sit"),
    (778, "ipgre"),
];
const PKTTYPES: &[(u8, &str)] = &[
    (0, "host"),
    (1, "broadcast"),
    (2, "multicast"),
    (3, "other"),
];
const FIB_ADDRTYPES: &[(u32, &str)] = &[
    (0, "unspec"),
    (1, "unicast"),
    (2, "local"),
    (3, "broadcast"),
    (4, "anycast"),
    (5, "multicast"),
    (6, "blackhole"),
    (7, "unreachable"),
    (8, "prohibit"),
];

pub const LOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
];

pub fn lookup<T: PartialEq + Copy>(tbl: &[(T, &'static str)], v: T) -> Option<&'static str> {
    tbl.iter().find(|(k, _)| *k == v).map(|(_, n)| *n)
}

/// Set bits by name, lowest bit first (`established,related`); unnamed bits in hex.
fn flags(tbl: &[(u32, &'static str)], v: u32, width: usize) -> String {
    let mut names = Vec::new();
    let mut rest = v;
    for bit in 0..32 {
        let b = 1u32 << bit;
        if v & b != 0
            && let Some(n) = lookup(tbl, b)
        {
            names.push(n.to_string());
            rest &= !b;
        }
    }
    if rest != 0 || names.is_empty() {
        names.push(format!("0x{rest:0width$x}"));
    }
    names.join(",")
}

/// The name /etc/protocols gives an IP protocol number, as nft prints it (getprotobynumber).
/// Looked up once per number and process: each lookup opens and reads /etc/protocols, and a
/// table of 10,000 policy entries prints the protocol of each.
pub fn proto_name(p: u8) -> Option<String> {
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<std::collections::HashMap<u8, Option<String>>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(std::collections::HashMap::new()));
    if let Ok(m) = names.lock()
        && let Some(n) = m.get(&p)
    {
        return n.clone();
    }
    let n = crate::ffi::proto_name_lookup(p);
    if let Ok(mut m) = names.lock() {
        m.insert(p, n.clone());
    }
    n
}

/// The name of an interface index in the current network namespace (nft prints `iif "lo"`).
fn ifindex_name(i: u32) -> Option<String> {
    nix::net::if_::if_indextoname(i)
        .ok()
        .map(|n| n.to_string_lossy().into_owned())
}

/// A value as `nft list` prints it. `numeric`: inside ranges nft prints numbers, not names.
pub fn value(v: &Value, numeric: bool) -> String {
    let named = |tbl: &[(u8, &'static str)], n: u8| match lookup(tbl, n) {
        Some(s) if !numeric => s.to_string(),
        _ => n.to_string(),
    };
    match v {
        Value::NfProto(2) if !numeric => "ipv4".into(),
        Value::NfProto(10) if !numeric => "ipv6".into(),
        Value::NfProto(n) => n.to_string(),
        Value::Ipv4(a) => a.to_string(),
        Value::Ipv6(a) => a.to_string(),
        Value::Ether(m) => m
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        Value::EtherType(t) => match lookup(ETHER_TYPES, *t) {
            Some(s) if !numeric => s.into(),
            _ => format!("0x{t:04x}"),
        },
        Value::Proto(p) => match proto_name(*p) {
            Some(n) if !numeric => n,
            _ => p.to_string(),
        },
        Value::Port(p) => p.to_string(),
        Value::IcmpType(t) => named(ICMP_TYPES, *t),
        Value::Icmpv6Type(t) => named(ICMPV6_TYPES, *t),
        Value::Mark(m) => format!("0x{m:08x}"),
        Value::Ifindex(i) => match ifindex_name(*i) {
            Some(n) if !numeric => format!("\"{n}\""),
            _ => i.to_string(),
        },
        Value::ArpHrd(t) => match lookup(ARPHRD, *t) {
            Some(s) if !numeric => s.into(),
            _ => t.to_string(),
        },
        Value::CtState(s) => flags(CT_STATES, *s, 8),
        Value::CtStatus(s) => flags(CT_STATUS, *s, 8),
        Value::CtDir(0) if !numeric => "original".into(),
        Value::CtDir(1) if !numeric => "reply".into(),
        Value::CtDir(d) => d.to_string(),
        Value::PktType(t) => named(PKTTYPES, *t),
        Value::FibAddr(t) => match lookup(FIB_ADDRTYPES, *t) {
            Some(s) if !numeric => s.into(),
            _ => t.to_string(),
        },
        Value::Bool(true) => "exists".into(),
        Value::Bool(false) => "missing".into(),
        Value::Ifname(n) => format!("\"{n}\""),
        Value::U16(v) => v.to_string(),
        Value::Bits16(v) => format!("{v:#x}"),
        Value::Bits24(v) => v.to_string(),
    }
}

/// A duration as nft prints it: `1h`, `10m`, `1d2h3m4s5ms`.
pub fn duration(ms: u64) -> String {
    let mut rest = ms;
    let mut s = String::new();
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
        (1, "ms"),
    ] {
        let n = rest / unit;
        rest %= unit;
        if n > 0 {
            s.push_str(&format!("{n}{name}"));
        }
    }
    if s.is_empty() { "0s".into() } else { s }
}
