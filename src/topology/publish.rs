//! `publish = ["8080:80/tcp", "127.0.0.1:8443:443", "9000-9010:9000-9010/udp"]`: Docker's `-p`
//! syntax for ports of a namespace reachable at ports of the host.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use toml::{Table, Value};

use super::Namespace;
use super::syntax::{Ctx, join};

/// The transport protocols a port can be published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `publish`, resolved: host ports `host.0..=host.1` lead to the namespace's
/// ports `ns.0..=ns.1`, one to one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Only connections to this host address (None: any of the host's addresses).
    pub host_addr: Option<Ipv4Addr>,
    pub host: (u16, u16),
    pub ns: (u16, u16),
    pub proto: Proto,
    /// The entry as written, for messages.
    pub entry: String,
}

impl Publish {
    /// (host port, namespace port), one pair per published port.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (self.host.0..=self.host.1).zip(self.ns.0..=self.ns.1)
    }

    /// Whether connections from the host to 127.0.0.1 reach it (it needs route_localnet on
    /// the namespace's bridge).
    pub fn on_localhost(&self) -> bool {
        self.host_addr.is_none_or(|a| a.is_loopback())
    }
}

fn port_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u32>() {
            Ok(0) => Err(format!("{what} port 0 cannot be published")),
            Ok(n) if n <= 65535 => Ok(n as u16),
            Ok(n) => Err(format!("{what} port {n} is above 65535")),
            Err(_) => Err(format!("{what} port `{p}` is not a number")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("{what} port range {a}-{b} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Parses `[ADDR:]HOSTPORT[-END]:PORT[-END][/tcp|/udp]`.
pub fn parse(entry: &str) -> Result<Publish, String> {
    let usage = "expected [ADDRESS:]HOSTPORT:PORT[/tcp|/udp], like \"8080:80/tcp\" or \"127.0.0.1:8443:443\"";
    let (body, proto) = match entry.rsplit_once('/') {
        Some((b, "tcp")) => (b, Proto::Tcp),
        Some((b, "udp")) => (b, Proto::Udp),
        Some((_, p)) => return Err(format!("protocol `{p}` is not tcp or udp")),
        None => (entry, Proto::Tcp),
    };
    let (addr, ports) = if let Some(rest) = body.strip_prefix('[') {
        let Some((a, rest)) = rest.split_once("]:") else {
            return Err(usage.into());
        };
        (Some(a), rest)
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            2 => (None, body),
            3 => (Some(parts[0]), &body[parts[0].len() + 1..]),
            1 => {
                return Err(format!(
                    "`{body}` names one port only: say which host port leads to it ({usage})"
                ));
            }
            _ => return Err(usage.into()),
        }
    };
    let Some((h, n)) = ports.split_once(':') else {
        return Err(usage.into());
    };
    let host = port_range(h, "host")?;
    let ns = port_range(n, "namespace")?;
    if host.1 - host.0 != ns.1 - ns.0 {
        return Err(format!(
            "host ports {h} and namespace ports {n} are ranges of different lengths (they map one to one)"
        ));
    }
    let host_addr = match addr {
        None => None,
        Some(a) => {
            match a.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) if ip.is_unspecified() => None,
                Ok(IpAddr::V4(ip)) => {
                    if ip.is_multicast() || ip.is_broadcast() {
                        return Err(format!("{ip} is not an address of the host"));
                    }
                    Some(ip)
                }
                Ok(IpAddr::V6(_)) => {
                    return Err("IPv6 addresses cannot be published on yet: nsfw's namespaces have IPv4 only".into());
                }
                Err(_) => return Err(format!("`{a}` is not an IP address")),
            }
        }
    };
    Ok(Publish {
        host_addr,
        host,
        ns,
        proto,
        entry: entry.to_string(),
    })
}

/// The `publish` key of a namespace.
pub(super) fn read(cx: &mut Ctx, t: &Table, prefix: &str) -> Vec<Publish> {
    let key = join(prefix, "publish");
    let mut out = Vec::new();
    for (s, v) in cx.strings(t, prefix, "publish") {
        match parse(&s) {
            Ok(p) => out.push(p),
            Err(why) => cx.err(&key, Some(v), why),
        }
    }
    out
}

/// A host port (per protocol, per address) leads to one place only. Linear in the number of
/// ports published: a file may publish thousands.
pub(super) fn check_clashes(cx: &mut Ctx, namespaces: &[Namespace]) {
    type Claim<'a> = (Option<std::net::Ipv4Addr>, &'a str, &'a str);
    let mut taken: BTreeMap<(Proto, u16), Vec<Claim>> = BTreeMap::new();
    for n in namespaces {
        for p in &n.publish {
            for port in p.host.0..=p.host.1 {
                let claims = taken.entry((p.proto, port)).or_default();
                let hit = claims.iter().find(|(addr, _, _)| {
                    addr.is_none() || p.host_addr.is_none() || *addr == p.host_addr
                });
                if let Some((_, other_ns, other)) = hit {
                    let v = Value::String(p.entry.clone());
                    cx.err(
                        &join(&join("namespaces", &n.name), "publish"),
                        Some(&v),
                        format!(
                            "host port {port}/{} is already published by namespaces.{other_ns}.publish = {other:?}",
                            p.proto
                        ),
                    );
                    break;
                }
                claims.push((p.host_addr, &n.name, &p.entry));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax() {
        let p = parse("8080:80").expect("ok");
        assert_eq!(
            (p.host, p.ns, p.proto, p.host_addr),
            ((8080, 8080), (80, 80), Proto::Tcp, None)
        );
        let p = parse("127.0.0.1:8443:443/tcp").expect("ok");
        assert_eq!(p.host_addr, Some(Ipv4Addr::LOCALHOST));
        let p = parse("9000-9010:9100-9110/udp").expect("ok");
        assert_eq!(p.pairs().count(), 11);
        assert_eq!(p.pairs().last(), Some((9010, 9110)));
        assert!(parse("0.0.0.0:53:53/udp").expect("ok").host_addr.is_none());
    }

    #[test]
    fn bad_entries() {
        for (e, why) in [
            ("80", "one port only"),
            ("0:80", "port 0"),
            ("70000:80", "above 65535"),
            ("8080:80/sctp", "not tcp or udp"),
            ("9000-9010:80", "different lengths"),
            ("9010-9000:9010-9000", "backwards"),
            ("x:80", "not a number"),
            ("1.2.3:80:80", "not an IP address"),
            ("a:b:c:d", "expected"),
        ] {
            let got = parse(e).expect_err(e);
            assert!(got.contains(why), "{e}: {got}");
        }
    }
}
