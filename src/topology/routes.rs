//! `routes = [{ to = "10.30.0.0/24", via = "10.20.0.9" }]`, on a namespace or on `[host]`:
//! static routes, each through a next hop on a directly connected subnet (which the caller
//! checks: it knows the subnets).

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use toml::{Table, Value};

use super::addr::check_unicast;
use super::syntax::{Ctx, join};

/// A static route: traffic to `to` goes to the next hop `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StaticRoute {
    pub to: IpNetwork,
    pub via: IpAddr,
}

impl StaticRoute {
    pub(crate) fn is_default(&self) -> bool {
        self.to.prefix() == 0
    }
}

fn parse_one(item: &Value) -> Result<StaticRoute, String> {
    let usage = "each route is { to = \"CIDR\", via = \"ADDRESS\" }";
    let Some(t) = item.as_table() else {
        return Err(usage.into());
    };
    if let Some(k) = t.keys().find(|k| *k != "to" && *k != "via") {
        return Err(format!("unknown key `{k}` ({usage})"));
    }
    let (Some(to), Some(via)) = (
        t.get("to").and_then(Value::as_str),
        t.get("via").and_then(Value::as_str),
    ) else {
        return Err(format!(
            "`to` and `via` are both needed, as strings ({usage})"
        ));
    };
    let to: IpNetwork = to
        .parse()
        .map_err(|_| format!("to = `{to}` is not a CIDR (like 10.30.0.0/24)"))?;
    if to.network() != to.ip() {
        return Err(format!(
            "to = {to} has host bits set: the network is {}/{}",
            to.network(),
            to.prefix()
        ));
    }
    let via: IpAddr = via
        .parse()
        .map_err(|_| format!("via = `{via}` is not an IP address"))?;
    if via.is_ipv6() != to.is_ipv6() {
        return Err(format!("via {via} and to {to} are of different families"));
    }
    check_unicast(via).map_err(|why| format!("via {via}: {why}"))?;
    Ok(StaticRoute { to, via })
}

/// The `routes` key of `t`, each with the value it came from (for messages). A destination
/// given twice is an error: which one would the kernel keep?
pub(super) fn read<'a>(cx: &mut Ctx, t: &'a Table, prefix: &str) -> Vec<(StaticRoute, &'a Value)> {
    let key = join(prefix, "routes");
    let Some(v) = t.get("routes") else {
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        cx.err(
            &key,
            Some(v),
            "must be a list of { to = \"CIDR\", via = \"ADDRESS\" }",
        );
        return Vec::new();
    };
    let mut out: Vec<(StaticRoute, &Value)> = Vec::new();
    for item in items {
        match parse_one(item) {
            Ok(r) if out.iter().any(|(o, _)| o.to == r.to) => {
                cx.err(&key, Some(item), format!("a second route to {}", r.to));
            }
            Ok(r) => out.push((r, item)),
            Err(why) => cx.err(&key, Some(item), why),
        }
    }
    out
}

/// Routing that is valid but will not do what it looks like it does (warnings, not errors:
/// the file may be half-way through an edit).
pub(super) fn lint(
    file: &str,
    host: &[StaticRoute],
    namespaces: &[super::Namespace],
) -> Vec<String> {
    let mut out = Vec::new();
    // A `[host]` route's next hop must be somebody: a router of the file (the host's own
    // subnets were checked already). Without one, the route leads nowhere.
    for r in host {
        let owner = namespaces
            .iter()
            .any(|n| n.addrs(r.via.is_ipv6()).any(|a| a == r.via));
        if !owner {
            out.push(format!(
                "{file}: host.routes: the route to {} via {}: no namespace of the file has the address {}, so nothing forwards what the host sends there (a router taken out of the file?)",
                r.to, r.via, r.via
            ));
        }
    }
    // NAT out of an interface the namespace's default route does not leave through: what
    // the router forwards out of its default route is not masqueraded, and the masquerade
    // interface's own traffic drops what comes in unasked.
    for n in namespaces {
        let Some(m) = &n.masquerade else { continue };
        let via = n.gateway.map(IpAddr::V4).or_else(|| {
            n.routes
                .iter()
                .find(|r| r.is_default() && r.via.is_ipv4())
                .map(|r| r.via)
        });
        let Some(out_if) = via.and_then(|v| n.iface_towards(v)) else {
            continue;
        };
        if &out_if.ifname != m {
            out.push(format!(
                "{file}: namespaces.{}.masquerade = \"{m}\": its default route leaves through {} (via {}), not {m}; traffic it forwards to the world is not masqueraded, and what comes in on {m} unasked is dropped",
                n.name,
                out_if.ifname,
                via.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<StaticRoute, String> {
        let t: Table = format!("r = {s}").parse().expect("toml");
        parse_one(t.get("r").expect("r"))
    }

    #[test]
    fn routes_parse_and_refuse() {
        let r = one("{ to = \"10.30.0.0/24\", via = \"10.20.0.9\" }").expect("ok");
        assert_eq!(r.to.to_string(), "10.30.0.0/24");
        assert!(
            one("{ to = \"0.0.0.0/0\", via = \"10.0.0.1\" }")
                .expect("ok")
                .is_default()
        );
        for (bad, why) in [
            (
                "{ to = \"10.30.0.1/24\", via = \"10.20.0.9\" }",
                "host bits",
            ),
            ("{ to = \"10.30.0.0/24\" }", "both needed"),
            (
                "{ to = \"10.30.0.0/24\", via = \"fd00::1\" }",
                "different families",
            ),
            (
                "{ to = \"10.30.0.0/24\", via = \"x\" }",
                "not an IP address",
            ),
            (
                "{ to = \"10.30.0.0/24\", via = \"224.0.0.1\" }",
                "multicast",
            ),
            (
                "{ to = \"10.30.0.0/24\", via = \"10.0.0.1\", dev = \"x\" }",
                "unknown key",
            ),
            ("\"10.30.0.0/24\"", "each route is"),
        ] {
            let e = one(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
