//! `[[allow]]` and `[[deny]]`: who may open connections to whom. The entries, parsed and
//! checked; what they decide for a connection is `crate::oracle`'s.

use std::fmt;

use ipnetwork::IpNetwork;
use rustc_hash::FxHashSet;
use toml::{Table, Value};

use super::syntax::{Ctx, join};
use super::{Bridge, Namespace};

/// One side of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Ns(String),
    Bridge(String),
    /// The host itself (its own addresses).
    Host,
    /// Everything that is not one of the topology's namespaces or the host.
    World,
    Cidr(IpNetwork),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ns(n) | Endpoint::Bridge(n) => write!(f, "{n}"),
            Endpoint::Host => write!(f, "host"),
            Endpoint::World => write!(f, "world"),
            Endpoint::Cidr(c) => write!(f, "{c}"),
        }
    }
}

/// What a rule covers of the traffic: a protocol (all when None) and a port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortSpec {
    /// Protocol number; `icmp` covers ICMP and ICMPv6.
    pub proto: Option<u8>,
    pub ports: (u16, u16),
}

pub(crate) const ICMP: u8 = 1;
pub(crate) const ICMPV6: u8 = 58;

impl PortSpec {
    pub(crate) const ALL: PortSpec = PortSpec {
        proto: None,
        ports: (0, 65535),
    };

    /// Whether a connection of protocol `proto` to port `port` is covered.
    pub(crate) fn covers(&self, proto: u8, port: u16) -> bool {
        let p = match self.proto {
            None => true,
            Some(ICMP) => proto == ICMP || proto == ICMPV6,
            Some(x) => x == proto,
        };
        p && (self.ports.0..=self.ports.1).contains(&port)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            None => write!(f, "all"),
            Some(ICMP) => write!(f, "icmp"),
            Some(p) => {
                let name = match p {
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => format!("proto {n}"),
                };
                match self.ports {
                    (0, 65535) => write!(f, "{name}"),
                    (a, b) if a == b => write!(f, "{name}/{a}"),
                    (a, b) => write!(f, "{name}/{a}-{b}"),
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
}

/// One `[[allow]]` or `[[deny]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PolicyRule {
    pub action: Action,
    pub from: Endpoint,
    pub to: Endpoint,
    pub ports: Vec<PortSpec>,
    /// `allow[2]`, for messages.
    pub key: String,
}

/// Parses `tcp/5432`, `udp/53`, `tcp/8000-8100`, `tcp`, `udp`, `icmp`.
pub(super) fn parse_port(s: &str) -> Result<PortSpec, String> {
    let (proto, rest) = match s.split_once('/') {
        Some((p, r)) => (p, Some(r)),
        None => (s, None),
    };
    let proto = match proto {
        "tcp" => 6,
        "udp" => 17,
        "icmp" | "icmpv6" => {
            if rest.is_some() {
                return Err("ICMP has no ports: write \"icmp\"".into());
            }
            return Ok(PortSpec {
                proto: Some(ICMP),
                ports: (0, 65535),
            });
        }
        other => {
            return Err(format!(
                "`{other}` is not tcp, udp or icmp (expected \"tcp/5432\", \"udp/53\", \"tcp/8000-8100\", \"icmp\")"
            ));
        }
    };
    let ports = match rest {
        None => (0, 65535),
        Some(r) => {
            let one = |p: &str| -> Result<u16, String> {
                match p.parse::<u32>() {
                    Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                    _ => Err(format!("`{p}` is not a port (1-65535)")),
                }
            };
            match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (one(a)?, one(b)?);
                    if a > b {
                        return Err(format!("port range {a}-{b} runs backwards"));
                    }
                    (a, b)
                }
                None => {
                    let p = one(r)?;
                    (p, p)
                }
            }
        }
    };
    Ok(PortSpec {
        proto: Some(proto),
        ports,
    })
}

/// Resolves `from`/`to`: a namespace, a bridge, `host`, `world`, or a CIDR.
fn endpoint(s: &str, names: &Names<'_>) -> Result<Endpoint, String> {
    match s {
        "host" => return Ok(Endpoint::Host),
        "world" => return Ok(Endpoint::World),
        _ => {}
    }
    if s.contains('/') || s.parse::<std::net::IpAddr>().is_ok() {
        let net: IpNetwork = s
            .parse()
            .map_err(|_| format!("`{s}` is not a CIDR (like 203.0.113.0/24)"))?;
        if net.network() != net.ip() {
            return Err(format!(
                "{s} has host bits set: the network is {}/{}",
                net.network(),
                net.prefix()
            ));
        }
        return Ok(Endpoint::Cidr(net));
    }
    let ns = names.namespaces.contains(s);
    let br = names.bridges.contains(s);
    match (ns, br) {
        (true, true) => Err(format!(
            "`{s}` names both a namespace and a bridge: rename one of them"
        )),
        (true, false) => Ok(Endpoint::Ns(s.to_string())),
        (false, true) => Ok(Endpoint::Bridge(s.to_string())),
        (false, false) => Err(format!(
            "no namespace or bridge is called `{s}` (or say \"host\", \"world\" or a CIDR)"
        )),
    }
}

/// The names an endpoint may be, looked up once per entry side: a scan of every namespace
/// for each of 10,000 entries at 1,000 namespaces is 20 million compares.
struct Names<'a> {
    namespaces: FxHashSet<&'a str>,
    bridges: FxHashSet<&'a str>,
}

/// Reads `[[allow]]` and `[[deny]]`; warnings go to `warnings` (they change nothing).
pub(super) fn read(
    cx: &mut Ctx,
    root: &Table,
    bridges: &[Bridge],
    namespaces: &[Namespace],
) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let names = Names {
        namespaces: namespaces.iter().map(|n| n.name.as_str()).collect(),
        bridges: bridges.iter().map(|b| b.name.as_str()).collect(),
    };
    for (key, action) in [("allow", Action::Allow), ("deny", Action::Deny)] {
        let Some(v) = root.get(key) else { continue };
        let Some(items) = v.as_array() else {
            cx.err(
                key,
                Some(v),
                format!("must be a list of tables ([[{key}]])"),
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("{key}[{i}]");
            let Some(t) = item.as_table() else {
                cx.err(&prefix, Some(item), "must be a table");
                continue;
            };
            cx.unknown_keys(t, &prefix, &["from", "to", "ports"]);
            let side = |cx: &mut Ctx, k: &str| -> Option<Endpoint> {
                let Some(s) = cx.string(t, &prefix, k) else {
                    if !t.contains_key(k) {
                        cx.err(
                            &join(&prefix, k),
                            None,
                            "missing: a namespace, a bridge, \"host\", \"world\" or a CIDR",
                        );
                    }
                    return None;
                };
                endpoint(&s, &names)
                    .map_err(|why| cx.err(&join(&prefix, k), t.get(k), why))
                    .ok()
            };
            let from = side(cx, "from");
            let to = side(cx, "to");
            let mut ports = Vec::new();
            let mut bad = false;
            for (s, v) in cx.strings(t, &prefix, "ports") {
                match parse_port(&s) {
                    Ok(p) => ports.push(p),
                    Err(why) => {
                        bad = true;
                        cx.err(&join(&prefix, "ports"), Some(v), why);
                    }
                }
            }
            if t.get("ports")
                .and_then(|v| v.as_array())
                .is_some_and(|a| a.is_empty())
                && !bad
            {
                cx.err(
                    &join(&prefix, "ports"),
                    t.get("ports"),
                    "an empty list matches nothing: leave `ports` out to mean everything",
                );
            }
            if ports.is_empty() {
                ports.push(PortSpec::ALL);
            }
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            if let Some(why) = pointless(&from, &to) {
                cx.err(&prefix, Some(&Value::String(format!("{from} → {to}"))), why);
                continue;
            }
            out.push(PolicyRule {
                action,
                from,
                to,
                ports,
                key: prefix,
            });
        }
    }
    out
}

/// Pairs nsfw cannot judge.
fn pointless(from: &Endpoint, to: &Endpoint) -> Option<&'static str> {
    match (from, to) {
        (Endpoint::Host, Endpoint::Host) => Some("the host to itself is not nsfw's to judge"),
        (Endpoint::World | Endpoint::Cidr(_), Endpoint::Host) => {
            Some("nsfw judges what its namespaces open to the host, not what the world opens to it")
        }
        (Endpoint::Host, Endpoint::World | Endpoint::Cidr(_)) => {
            Some("nsfw judges what reaches its namespaces, not what the host opens to the world")
        }
        _ => None,
    }
}

/// Warnings about a policy that changes nothing by itself: an allow and a deny of the same
/// connections (deny wins), a bridge denied egress with nothing allowed out.
pub(super) fn lint(
    file: &str,
    bridges: &[Bridge],
    namespaces: &[Namespace],
    policy: &[PolicyRule],
) -> Vec<String> {
    let mut out = Vec::new();
    // The denies once, not a scan of the whole policy per allow: with 10,000 allows that scan
    // was 10^8 steps and a third of a no-op apply.
    let denies: Vec<&PolicyRule> = policy.iter().filter(|r| r.action == Action::Deny).collect();
    for a in policy.iter().filter(|r| r.action == Action::Allow) {
        for d in &denies {
            if a.from == d.from && a.to == d.to && a.ports == d.ports {
                out.push(format!(
                    "{file}: {} and {} name the same connections ({} → {}): the deny wins",
                    a.key, d.key, a.from, a.to
                ));
            }
        }
    }
    for r in policy.iter().filter(|r| r.action == Action::Allow) {
        // The world to the world is traffic nsfw never judges (neither end is one of its
        // namespaces); a namespace to itself never leaves it; a bridge to itself is open by
        // default unless `isolate` closes it (then the allow is what reopens it).
        let why = match (&r.from, &r.to) {
            (Endpoint::World, Endpoint::World) => {
                Some("the world to itself is not nsfw's to judge")
            }
            (Endpoint::Ns(a), Endpoint::Ns(b)) if a == b => {
                Some("a namespace to itself never leaves the namespace, where nothing is judged")
            }
            (Endpoint::Bridge(a), Endpoint::Bridge(b))
                if a == b && bridges.iter().any(|x| &x.name == a && !x.isolate) =>
            {
                Some(
                    "namespaces of one bridge reach each other by default (unless it has isolate = true)",
                )
            }
            _ => None,
        };
        if let Some(why) = why {
            out.push(format!(
                "{file}: {}: from = \"{}\", to = \"{}\": {why}; the entry changes nothing useful",
                r.key, r.from, r.to
            ));
        }
    }
    for b in bridges.iter().filter(|b| b.egress_deny) {
        let members: Vec<&str> = namespaces
            .iter()
            .filter(|n| n.primary().is_some_and(|i| i.bridge == b.name))
            .map(|n| n.name.as_str())
            .collect();
        let out_allowed = policy.iter().any(|r| {
            r.action == Action::Allow
                && match &r.from {
                    Endpoint::Ns(n) => members.contains(&n.as_str()),
                    Endpoint::Bridge(x) => *x == b.name,
                    Endpoint::Cidr(_) => true,
                    _ => false,
                }
        });
        if !out_allowed {
            out.push(format!(
                "{file}: bridges.{}.egress = \"deny\" and no [[allow]] from its namespaces: they can reach nothing outside",
                b.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(parse_port("tcp/5432").expect("ok").ports, (5432, 5432));
        assert_eq!(parse_port("tcp/8000-8100").expect("ok").ports, (8000, 8100));
        assert_eq!(
            parse_port("udp").expect("ok"),
            PortSpec {
                proto: Some(17),
                ports: (0, 65535)
            }
        );
        assert_eq!(parse_port("icmp").expect("ok").proto, Some(ICMP));
        for bad in ["icmp/8", "tcp/0", "tcp/70000", "sctp/5", "tcp/9-1", "tcp/x"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert!(parse_port("icmp").expect("ok").covers(ICMPV6, 0));
        assert!(!parse_port("tcp/22").expect("ok").covers(17, 22));
    }
}
