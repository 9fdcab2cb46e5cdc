//! `publish = ["8080:80/tcp", "127.0.0.1:8443:443", "[::]:8080:80", "9000-9010:9000-9010/udp"]`:
//! Docker's `-p` syntax for ports of a namespace reachable at ports of the host. Without an
//! address an entry publishes on both families (where the namespace has an address of each);
//! `0.0.0.0:` and `[::]:` restrict it to one, an address to that address.

use std::fmt;
use std::net::IpAddr;

use toml::{Table, Value};

use super::Namespace;
use super::syntax::{Ctx, join};

/// The transport protocols a port can be published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub(crate) fn number(self) -> u8 {
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
pub(crate) struct Publish {
    /// Only connections to this host address (None: any of the host's addresses).
    pub host_addr: Option<IpAddr>,
    /// Published over IPv4, over IPv6.
    pub v4: bool,
    pub v6: bool,
    pub host: (u16, u16),
    pub ns: (u16, u16),
    pub proto: Proto,
    /// The entry as written, for messages.
    pub entry: String,
}

impl Publish {
    /// (host port, namespace port), one pair per published port.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (self.host.0..=self.host.1).zip(self.ns.0..=self.ns.1)
    }

    /// Whether connections from the host to 127.0.0.1 reach it (it needs route_localnet on
    /// the namespace's bridge).
    pub(crate) fn on_localhost(&self) -> bool {
        self.v4 && self.host_addr.is_none_or(|a| a.is_loopback())
    }

    /// Whether a connection to host address `a` at a published port reaches it.
    pub(crate) fn answers_at(&self, a: IpAddr) -> bool {
        let family = if a.is_ipv6() { self.v6 } else { self.v4 };
        family && self.host_addr.is_none_or(|h| h == a)
    }
}

fn port_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        // `u32::from_str` takes a leading `+`; Docker's syntax and ports have digits only.
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{what} port `{p}` is not a number"));
        }
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
pub(super) fn parse(entry: &str) -> Result<Publish, String> {
    let usage = "expected [ADDRESS:]HOSTPORT:PORT[/tcp|/udp], like \"8080:80/tcp\" or \"127.0.0.1:8443:443\"";
    let (body, proto) = match entry.rsplit_once('/') {
        Some((b, "tcp")) => (b, Proto::Tcp),
        Some((b, "udp")) => (b, Proto::Udp),
        Some((_, p)) => return Err(format!("protocol `{p}` is not tcp or udp")),
        None => (entry, Proto::Tcp),
    };
    let addr_bracketed = body.starts_with('[');
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
        Some(a) => match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if addr_bracketed => {
                return Err(format!(
                    "brackets are for IPv6 addresses: write {ip}:{ports} without them"
                ));
            }
            Ok(ip) if ip.is_unspecified() => Some(ip),
            Ok(IpAddr::V4(ip)) if ip.is_multicast() || ip.is_broadcast() => {
                return Err(format!("{ip} is not an address of the host"));
            }
            Ok(IpAddr::V6(ip)) if ip.is_loopback() => {
                return Err("[::1] cannot be published on: Linux has no route_localnet for IPv6 and never routes a packet from ::1 out of an interface; publish on 127.0.0.1, or on [::] for the host's IPv6 addresses".into());
            }
            Ok(IpAddr::V6(ip)) if ip.is_multicast() || ip.to_ipv4_mapped().is_some() => {
                return Err(format!("{ip} is not an IPv6 address of the host"));
            }
            Ok(IpAddr::V6(ip)) if ip.is_unicast_link_local() => {
                return Err(format!(
                    "{ip} is link-local: it names no single interface without a zone; publish on [::] or a global address"
                ));
            }
            Ok(ip) => Some(ip),
            Err(_) if addr_bracketed => return Err(format!("`{a}` is not an IPv6 address")),
            Err(_) => return Err(format!("`{a}` is not an IP address")),
        },
    };
    let (v4, v6) = match host_addr {
        None => (true, true),
        Some(a) => (a.is_ipv4(), a.is_ipv6()),
    };
    let host_addr = host_addr.filter(|a| !a.is_unspecified());
    Ok(Publish {
        host_addr,
        v4,
        v6,
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
/// ports published, with no hashing: a file may publish tens of thousands.
pub(super) fn check_clashes(cx: &mut Ctx, namespaces: &[Namespace]) {
    /// A claim of a port: its address (None: any), namespace, entry, whether the entry
    /// publishes on both families, and the next claim of the same port (on another address;
    /// an index + 1 into the claims, 0: none).
    type Claim<'a> = (Option<IpAddr>, &'a str, &'a str, bool, u32);
    let mut claims: Vec<Claim> = Vec::new();
    // Per (IPv6?, protocol): the first claim of each port (an index + 1, 0: none). The
    // tables are zeroed memory, which the kernel maps only where a port is claimed.
    let mut first: [Vec<u32>; 4] = Default::default();
    for n in namespaces {
        for p in &n.publish {
            'port: for port in p.host.0..=p.host.1 {
                for fam in [false, true]
                    .into_iter()
                    .filter(|&v6| if v6 { p.v6 } else { p.v4 })
                {
                    let table = &mut first[usize::from(fam) * 2 + p.proto as usize];
                    if table.is_empty() {
                        *table = vec![0; 65536];
                    }
                    let slot = &mut table[usize::from(port)];
                    let mut at = *slot;
                    while at != 0 {
                        let (addr, other_ns, other, both, next) = claims[at as usize - 1];
                        if addr.is_none() || p.host_addr.is_none() || addr == p.host_addr {
                            let v = Value::String(p.entry.clone());
                            // `"[::]:8080:80"` beside `"8080:80"`: the plain entry has it.
                            let hint = if both != (p.v4 && p.v6) {
                                " (an entry without an address publishes on IPv4 and IPv6 both; `0.0.0.0:` or `[::]:` before the port restricts one to a family)"
                            } else {
                                ""
                            };
                            cx.err(
                                &join(&join("namespaces", &n.name), "publish"),
                                Some(&v),
                                format!(
                                    "host port {port}/{} is already published by namespaces.{other_ns}.publish = {other:?}{hint}",
                                    p.proto
                                ),
                            );
                            break 'port;
                        }
                        at = next;
                    }
                    claims.push((
                        p.host_addr,
                        n.name.as_str(),
                        p.entry.as_str(),
                        p.v4 && p.v6,
                        *slot,
                    ));
                    *slot = u32::try_from(claims.len()).unwrap_or(u32::MAX);
                }
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
        assert!(p.v4 && p.v6);
        let p = parse("127.0.0.1:8443:443/tcp").expect("ok");
        assert_eq!(p.host_addr, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(p.v4 && !p.v6 && p.on_localhost());
        let p = parse("[::]:8080:80").expect("ok");
        assert!(!p.v4 && p.v6 && p.host_addr.is_none() && !p.on_localhost());
        let p = parse("[2001:db8::1]:8080:80/udp").expect("ok");
        assert_eq!(p.host_addr, "2001:db8::1".parse().ok());
        assert!(p.answers_at("2001:db8::1".parse().expect("ip")));
        assert!(!p.answers_at("2001:db8::2".parse().expect("ip")));
        let p = parse("9000-9010:9100-9110/udp").expect("ok");
        assert_eq!(p.pairs().count(), 11);
        assert_eq!(p.pairs().last(), Some((9010, 9110)));
        let p = parse("0.0.0.0:53:53/udp").expect("ok");
        assert!(p.host_addr.is_none() && p.v4 && !p.v6);
    }

    /// Clashes: an address-bound port and another address share a port; a wildcard takes the
    /// port on every address; the two families and the two protocols are separate; a range
    /// stops at its first clash.
    #[test]
    fn clashes() {
        let topo = |a: &str, b: &str| {
            format!(
                "name = \"c\"\n[bridges.br0]\naddress = \"10.1.0.1/24\"\naddress6 = \"fd00::1/64\"\n\
                 [namespaces.a]\nbridge = \"br0\"\npublish = [{a}]\n\
                 [namespaces.b]\nbridge = \"br0\"\npublish = [{b}]\n"
            )
        };
        let errors = |a: &str, b: &str| -> Vec<String> {
            match crate::topology::parse(&topo(a, b), std::path::Path::new("c.toml")) {
                Ok(_) => Vec::new(),
                Err(e) => e.to_string().lines().map(str::to_string).collect(),
            }
        };
        for (a, b) in [
            (r#""127.0.0.1:80:80""#, r#""127.0.0.2:80:80""#),
            (r#""0.0.0.0:80:80""#, r#""[::]:80:80""#),
            (r#""80:80/tcp""#, r#""80:80/udp""#),
            (r#""80-89:80-89""#, r#""90-99:80-89""#),
        ] {
            assert_eq!(errors(a, b), Vec::<String>::new(), "{a} {b}");
        }
        for (a, b, port) in [
            (r#""127.0.0.1:80:80""#, r#""80:80""#, 80),
            (r#""80:80""#, r#""[fd00::1]:80:80""#, 80),
            (r#""80-89:80-89""#, r#""85-99:80-94""#, 85),
        ] {
            let e = errors(a, b);
            assert_eq!(e.len(), 1, "{a} {b}: {e:?}");
            assert!(
                e[0].contains(&format!(
                    "host port {port}/tcp is already published by namespaces.a.publish"
                )),
                "{e:?}"
            );
        }
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
            ("[::1]:8080:80", "route_localnet"),
            ("[fe80::1]:8080:80", "link-local"),
            ("[ff02::1]:8080:80", "not an IPv6 address of the host"),
            ("[nope]:8080:80", "not an IPv6 address"),
            ("[127.0.0.1]:8080:80", "brackets are for IPv6"),
            ("+8080:80", "not a number"),
            ("8080:+80", "not a number"),
            ("8080-+8081:80-81", "not a number"),
        ] {
            let got = parse(e).expect_err(e);
            assert!(got.contains(why), "{e}: {got}");
        }
    }
}
