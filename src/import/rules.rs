//! The firewall lines the guide and its readers write, recognised in the rules the kernel
//! holds: each rule of iptables-nft's tables (and of any other table that names a lab's
//! bridge) rendered as `nft` prints it, counters left out, then read clause by clause. A rule
//! with a clause nothing here knows is not recognised: it becomes a note with its text, never
//! a guess. Pure: `classify` works on text, so unit tests give it the lines themselves.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Where a rule is: enough to delete exactly it (by handle) in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub family: nft::Family,
    pub table: String,
    pub chain: String,
    /// nftables: the rule's handle; iptables-legacy: its place in the chain (1-based).
    pub handle: u64,
    /// In iptables-legacy (`family` Ip or Ip6): what the entry is, byte for byte but its
    /// counters (x_tables rules have no handle; `xtables::remove` finds them by this).
    pub legacy: Option<Vec<u8>>,
}

impl At {
    /// The tables' family as the command that shows them names it.
    pub(crate) fn family_name(&self) -> &'static str {
        match (&self.legacy, self.family) {
            (Some(_), nft::Family::Ip6) => "ip6tables-legacy",
            (Some(_), _) => "iptables-legacy",
            (None, f) => f.as_str(),
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.family_name(), self.table, self.chain)
    }
}

/// What a recognised rule means in a topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// MASQUERADE/SNAT of a subnet (`masquerade`), out of `uplink` when it names one.
    Masquerade {
        subnet: IpNetwork,
        uplink: Option<String>,
        /// `oifname != NAME`: every way out but NAME (the guide's: the subnet's own bridge).
        not_out: Option<String>,
        /// SNAT to a fixed address: nsfw masquerades instead.
        snat: Option<String>,
    },
    /// `ct state established,related accept`: nsfw's stateful forward.
    Stateful,
    /// Forwarding out of a bridge (or a subnet) accepted: the default egress.
    Egress { from: String },
    /// Forwarding into a bridge accepted whatever the state: nsfw accepts only replies and
    /// published ports there.
    Inbound { to: String },
    /// A DNAT port forward: `publish` of the namespace holding `to`.
    Publish {
        proto: String,
        host_addr: Option<IpAddr>,
        port: u16,
        to: IpAddr,
        to_port: u16,
    },
    /// Traffic between two addresses or within a bridge dropped.
    Drop { from: String, to: String },
}

/// A rule read back: where it is, its text, and its meaning if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub at: At,
    pub text: String,
    pub meaning: Option<Meaning>,
}

/// The clauses of a rule's text: `iifname "br0"` → ("iifname", false, "br0").
#[derive(Default, Debug)]
struct Clauses {
    iif: Option<(bool, String)>,
    oif: Option<(bool, String)>,
    saddr: Option<(bool, String)>,
    daddr: Option<(bool, String)>,
    proto: Option<String>,
    dport: Option<u16>,
    ct_state: Option<String>,
    /// The terminal statement and its argument: ("accept", ""), ("dnat", "10.10.0.2:80").
    action: Option<(String, String)>,
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Reads a rule's text into clauses; None when a word is not understood.
fn clauses(text: &str) -> Option<Clauses> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut c = Clauses::default();
    let mut i = 0;
    // `KEY [!=] VALUE`
    let val = |i: &mut usize| -> Option<(bool, String)> {
        let neg = words.get(*i + 1) == Some(&"!=");
        if neg {
            *i += 1;
        }
        let v = words.get(*i + 1)?;
        *i += 2;
        Some((!neg, unquote(v)))
    };
    while i < words.len() {
        match words[i] {
            "iifname" | "iif" => c.iif = Some(val(&mut i)?),
            "oifname" | "oif" => c.oif = Some(val(&mut i)?),
            "ip" if words.get(i + 1) == Some(&"saddr") => {
                i += 1;
                c.saddr = Some(val(&mut i)?);
            }
            "ip" if words.get(i + 1) == Some(&"daddr") => {
                i += 1;
                c.daddr = Some(val(&mut i)?);
            }
            "meta" if words.get(i + 1) == Some(&"l4proto") => {
                c.proto = Some(words.get(i + 2)?.to_string());
                i += 3;
            }
            "ip" if words.get(i + 1) == Some(&"protocol") => {
                c.proto = Some(words.get(i + 2)?.to_string());
                i += 3;
            }
            p @ ("tcp" | "udp" | "th") if words.get(i + 1) == Some(&"dport") => {
                if p != "th" {
                    c.proto = Some(p.to_string());
                }
                c.dport = Some(words.get(i + 2)?.parse().ok()?);
                i += 3;
            }
            "ct" if words.get(i + 1) == Some(&"state") => {
                c.ct_state = Some(words.get(i + 2)?.to_string());
                i += 3;
            }
            "counter" => i += 1,
            a @ ("accept" | "drop" | "masquerade") if i + 1 == words.len() => {
                c.action = Some((a.to_string(), String::new()));
                i += 1;
            }
            a @ ("dnat" | "snat") => {
                // `dnat to 10.10.0.2:80`, `dnat ip to ...` (in an inet table)
                let mut j = i + 1;
                if words.get(j) == Some(&"ip") {
                    j += 1;
                }
                if words.get(j) != Some(&"to") || j + 2 != words.len() {
                    return None;
                }
                c.action = Some((a.to_string(), words[j + 1].to_string()));
                i = j + 2;
            }
            _ => return None,
        }
    }
    Some(c)
}

/// What a rule of chain `chain` (iptables' names: POSTROUTING, FORWARD, DOCKER-USER,
/// PREROUTING, OUTPUT) means, if the guide's lines say it.
pub(crate) fn classify(chain: &str, text: &str) -> Option<Meaning> {
    let c = clauses(text)?;
    let (action, arg) = c.action.clone()?;
    // A wildcard interface (`upl*`, iptables' `upl+`) names no one link, and a negated
    // interface or address means "all but": no key of the file says either, so a rule with
    // one is not translated (kept, with a warning) rather than widened, narrowed or inverted.
    // The one exception is the guide's own `oifname != "br0"` of a masquerade, which
    // `Masquerade::not_out` carries for `adopt::says` to compare with the bridge.
    let wild = |s: &Option<(bool, String)>| s.as_ref().is_some_and(|(_, v)| v.contains(['*', '+']));
    if wild(&c.iif) || wild(&c.oif) {
        return None;
    }
    let negated = |s: &Option<(bool, String)>| s.as_ref().is_some_and(|(eq, _)| !eq);
    let masq = chain == "POSTROUTING" && matches!(action.as_str(), "masquerade" | "snat");
    if negated(&c.iif) || negated(&c.saddr) || negated(&c.daddr) || (negated(&c.oif) && !masq) {
        return None;
    }
    match (chain, action.as_str()) {
        ("POSTROUTING", "masquerade" | "snat") => {
            // Any destination (`! -d 10.0.0.0/8` too) narrows it: nsfw masquerades every
            // destination out of the bridges.
            if c.iif.is_some()
                || c.daddr.is_some()
                || c.proto.is_some()
                || c.dport.is_some()
                || c.ct_state.is_some()
            {
                return None;
            }
            Some(Meaning::Masquerade {
                subnet: net(&c.saddr)?,
                uplink: name(&c.oif),
                not_out: c.oif.as_ref().filter(|(eq, _)| !eq).map(|(_, v)| v.clone()),
                snat: (action == "snat").then_some(arg),
            })
        }
        ("FORWARD" | "DOCKER-USER", "accept") => {
            if c.proto.is_some() || c.dport.is_some() {
                return None;
            }
            if let Some(st) = &c.ct_state {
                let mut s: Vec<&str> = st.split(',').collect();
                s.sort_unstable();
                let alone =
                    c.iif.is_none() && c.oif.is_none() && c.saddr.is_none() && c.daddr.is_none();
                return (s == ["established", "related"] && alone).then_some(Meaning::Stateful);
            }
            match (name(&c.iif), name(&c.oif), &c.saddr, &c.daddr) {
                (Some(i), _, None, None) => Some(Meaning::Egress { from: i }),
                (None, None, Some(_), None) => Some(Meaning::Egress {
                    from: net(&c.saddr)?.to_string(),
                }),
                (None, Some(o), None, None) => Some(Meaning::Inbound { to: o }),
                (None, None, None, Some(_)) => Some(Meaning::Inbound {
                    to: net(&c.daddr)?.to_string(),
                }),
                _ => None,
            }
        }
        ("FORWARD" | "DOCKER-USER", "drop") => drop_of(&c),
        ("PREROUTING" | "OUTPUT", "dnat") => dnat_of(&c, &arg),
        _ => None,
    }
}

/// A clause's network, when it says one (not negated).
fn net(s: &Option<(bool, String)>) -> Option<IpNetwork> {
    s.as_ref()
        .filter(|(eq, _)| *eq)
        .and_then(|(_, v)| v.parse::<IpNetwork>().ok())
}

/// A clause's interface name, when it says one (not negated).
fn name(s: &Option<(bool, String)>) -> Option<String> {
    s.as_ref().filter(|(eq, _)| *eq).map(|(_, v)| v.clone())
}

fn drop_of(c: &Clauses) -> Option<Meaning> {
    if c.proto.is_some() || c.ct_state.is_some() {
        return None;
    }
    match (name(&c.iif), name(&c.oif), net(&c.saddr), net(&c.daddr)) {
        (Some(i), Some(o), None, None) if i == o => Some(Meaning::Drop { from: i, to: o }),
        // One address each: a prefix (`-d 10.10.0.4/30`) would be narrowed to its first
        // address.
        (None, None, Some(s), Some(d)) if is_host(&s) && is_host(&d) => Some(Meaning::Drop {
            from: s.ip().to_string(),
            to: d.ip().to_string(),
        }),
        _ => None,
    }
}

fn dnat_of(c: &Clauses, arg: &str) -> Option<Meaning> {
    // `publish` says a host address, a port and a protocol, no more: a rule narrower than
    // that (one input interface, one source) would be widened into an open port forward;
    // it stays on the host, as a note.
    if c.iif.is_some() || c.oif.is_some() || c.saddr.is_some() || c.ct_state.is_some() {
        return None;
    }
    let (to, to_port) = match arg.rsplit_once(':') {
        Some((a, p)) => (a.parse().ok()?, p.parse().ok()?),
        None => (arg.parse().ok()?, c.dport?),
    };
    let host_addr = match &c.daddr {
        None => None,
        Some((true, a)) => Some(a.parse().ok()?),
        Some((false, _)) => return None,
    };
    Some(Meaning::Publish {
        proto: c.proto.clone()?,
        host_addr,
        port: c.dport?,
        to,
        to_port,
    })
}

fn is_host(n: &IpNetwork) -> bool {
    n.prefix() == if n.is_ipv4() { 32 } else { 128 }
}

/// A DNAT in nat OUTPUT alone changes only the host's own connections; `publish` opens the
/// port to everyone (prerouting). So an OUTPUT DNAT is a `publish` only beside a PREROUTING
/// DNAT that says the same (the guide writes both); alone, it is left unsaid (kept, noted).
pub(crate) fn pair_output_dnat(found: &mut [Found]) {
    let pre: Vec<Meaning> = found
        .iter()
        .filter(|f| f.at.chain == "PREROUTING")
        .filter_map(|f| f.meaning.clone())
        .collect();
    for f in found.iter_mut().filter(|f| f.at.chain == "OUTPUT") {
        if f.meaning.as_ref().is_some_and(|m| !pre.contains(m)) {
            f.meaning = None;
        }
    }
}

/// A rule's text with the xtables targets iptables-nft leaves in it (`-j MASQUERADE`,
/// `-j DNAT --to-destination`, `-j SNAT`: nft_compat expressions, which the nft crate shows
/// as unreadable with their name, revision and info bytes) written as nft writes the native
/// statement, where their info says exactly that; unchanged otherwise.
pub(crate) fn xt_as_nft(text: &str) -> String {
    if let Some(t) = xt_conntrack(text) {
        return t;
    }
    let Some(start) = text.find("[nsfw cannot read this (xtables target ") else {
        return text.to_string();
    };
    let Some(len) = text[start..].find(']') else {
        return text.to_string();
    };
    let inner = &text[start..start + len];
    let field = |k: &str| {
        inner
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(|v| v.trim_matches('"').to_string())
    };
    let (Some(name), Some(rev), Some(info)) = (field("name="), field("rev="), field("info=0x"))
    else {
        return text.to_string();
    };
    let bytes: Option<Vec<u8>> = (0..info.len() / 2)
        .map(|i| u8::from_str_radix(info.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let Some(nat) =
        bytes.and_then(|b| crate::plumbing::xtables::nat_stmt(&name, rev.parse().ok()?, &b))
    else {
        return text.to_string();
    };
    format!("{}{nat}{}", &text[..start], &text[start + len + 1..])
}

/// `-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT` as iptables-nft loads it (an
/// xt_conntrack_mtinfo3 match, then a counter and the verdict, all unread by the nft crate):
/// `ct state established,related accept` when the info says exactly that (match_flags
/// XT_CONNTRACK_STATE, no inversion, state_mask ESTABLISHED|RELATED, everything else zero).
fn xt_conntrack(text: &str) -> Option<String> {
    let start = text.find("[nsfw cannot read this (xtables match conntrack)")?;
    let end = start + text[start..].find(']')?;
    let inner = &text[start..end];
    let hex = inner.split("info=0x").nth(1)?.split(';').next()?.trim();
    let b: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let u16le = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let rest_zero = b
        .iter()
        .enumerate()
        .all(|(i, x)| *x == 0 || (146..148).contains(&i) || (150..152).contains(&i));
    if !(rest_zero && u16le(146)? == 1 && u16le(148)? == 0 && u16le(150)? == 6) {
        return None;
    }
    // What follows the match inside the brackets: a counter and NF_ACCEPT, nothing else.
    let tail: Vec<&str> = inner.split(';').skip(1).map(str::trim).collect();
    let ok = tail
        .iter()
        .all(|t| t.starts_with("counter ") || *t == "immediate dreg=0 verdict=1");
    if !ok || !tail.contains(&"immediate dreg=0 verdict=1") {
        return None;
    }
    Some(format!(
        "{}ct state established,related accept{}",
        &text[..start],
        &text[end + 1..]
    ))
}

/// Whether a rule's text names one of `bridges` or an address in one of `subnets`: a rule
/// that concerns the lab.
/// Whether an xtables NAT target nsfw cannot read (`--dport 1000:2000 -j DNAT --to
/// 10.10.0.2:3000-4000`) carries, in its info bytes, the whole-byte prefix of one of
/// `subnets`: then it concerns the lab, is noted and kept, rather than dropped unsaid.
pub(crate) fn unread_nat_into(text: &str, subnets: &[IpNetwork]) -> bool {
    let Some(info) = text
        .contains("cannot read this")
        .then(|| text.split("info=0x").nth(1))
        .flatten()
    else {
        return false;
    };
    subnets.iter().any(|s| match s {
        IpNetwork::V4(n) => {
            let bytes = usize::from(n.prefix() / 8).max(1);
            let hex: String = n.network().octets()[..bytes]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            text.contains("target name=\"DNAT\"") && info.contains(&hex)
        }
        IpNetwork::V6(_) => false,
    })
}

pub(crate) fn concerns(text: &str, bridges: &[String], subnets: &[IpNetwork]) -> bool {
    text.split_whitespace().any(|w| {
        let w = w.trim_matches('"');
        bridges.iter().any(|b| b == w)
            || addr_of(w).is_some_and(|a| subnets.iter().any(|s| s.contains(a)))
    })
}

/// The address a word starts: `10.10.0.0/24`, `10.10.0.2:80`, `fd00:10::/64`, `fd00::2`.
fn addr_of(w: &str) -> Option<IpAddr> {
    let a = w.split('/').next()?;
    a.parse::<IpAddr>().ok().or_else(|| {
        a.rsplit_once(':')
            .and_then(|(h, _)| h.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
