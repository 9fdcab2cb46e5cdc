//! The ADD result (SPEC.md section 5): interfaces (the bridge, the host end, the container's
//! end with its sandbox), the IP with the index of its interface, routes and DNS; and what
//! CHECK reads back of it from `prevResult`.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde_json::{Value, json};

use super::config::{NetConf, at_least};
use super::ipam::Lease;
use crate::topology::Mac;

/// One interface of the result.
pub(super) struct Iface<'a> {
    pub name: &'a str,
    pub mac: Option<Mac>,
    pub sandbox: Option<&'a str>,
}

/// The result of an ADD. Interface 2 is the container's; 0.4.0 results carry each IP's
/// `version`, 1.1.0 ones the MTU of each interface.
pub(super) fn build(c: &NetConf, ifaces: &[Iface], lease: &Lease) -> Value {
    let v11 = at_least(&c.version, "1.1.0");
    let interfaces: Vec<Value> = ifaces
        .iter()
        .map(|i| {
            let mut o = json!({"name": i.name});
            if let Some(m) = i.mac {
                o["mac"] = json!(m.to_string());
            }
            if let Some(s) = i.sandbox {
                o["sandbox"] = json!(s);
            }
            if v11 {
                o["mtu"] = json!(c.mtu);
            }
            o
        })
        .collect();
    let mut ip = json!({
        "address": lease.addr.to_string(),
        "gateway": lease.gateway.to_string(),
        "interface": 2,
    });
    if !at_least(&c.version, "1.0.0") {
        ip["version"] = json!("4");
    }
    let routes: Vec<Value> = lease
        .routes
        .iter()
        .map(|(d, gw)| json!({"dst": d.to_string(), "gw": gw.unwrap_or(lease.gateway).to_string()}))
        .collect();
    let mut r = json!({
        "cniVersion": c.version,
        "interfaces": interfaces,
        "ips": [ip],
        "routes": routes,
    });
    r["dns"] = lease.dns.clone().unwrap_or_else(|| json!({}));
    r
}

/// What CHECK expects of the container's end, from `prevResult`.
#[derive(Debug, Default)]
pub(super) struct Expected {
    pub mac: Option<String>,
    pub addrs: Vec<Ipv4Network>,
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
}

/// The container's interface (`ifname` in `sandbox`) in a result, its addresses and routes.
pub(super) fn expected(prev: &Value, ifname: &str, sandbox: &str) -> Expected {
    let mut e = Expected::default();
    let ifaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    // The container's end: the interface of that name with a sandbox (the host's have none;
    // the path may be spelt otherwise than CNI_NETNS by now, so any sandbox counts, the exact
    // one first).
    let named = |i: &Value| i["name"].as_str() == Some(ifname);
    let idx = ifaces
        .iter()
        .position(|i| named(i) && i["sandbox"].as_str() == Some(sandbox))
        .or_else(|| {
            ifaces
                .iter()
                .position(|i| named(i) && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        });
    if let Some(i) = idx {
        e.mac = ifaces[i]["mac"].as_str().map(str::to_ascii_lowercase);
    }
    for ip in prev["ips"].as_array().cloned().unwrap_or_default() {
        let mine = match (ip["interface"].as_u64(), idx) {
            (Some(n), Some(i)) => n as usize == i,
            (None, _) => true,
            _ => false,
        };
        if let Some(Ok(n)) = ip["address"].as_str().map(str::parse::<Ipv4Network>)
            && mine
        {
            e.addrs.push(n);
        }
    }
    for r in prev["routes"].as_array().cloned().unwrap_or_default() {
        if let Some(Ok(d)) = r["dst"].as_str().map(str::parse::<Ipv4Network>) {
            e.routes
                .push((d, r["gw"].as_str().and_then(|g| g.parse().ok())));
        }
    }
    e
}
