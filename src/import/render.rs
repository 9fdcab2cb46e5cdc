//! The lab as a topology file's text, keys in the order docs/topology.md gives them, and a key
//! only where the host differs from the file's default (a MAC always: the kernel gave the
//! links random ones, and a changed MAC would make neighbours relearn it). What could not be
//! translated comes first, as comments. The same host gives the same text.

use std::fmt::Write;

use super::lab::{Bridge, Lab, Ns};

/// A TOML string (the toml crate's quoting: Rust's `{:?}` escapes are not all TOML's).
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare where TOML allows it, else quoted (`"ns.dot"`, `"has=eq"`).
fn key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { s.to_string() } else { q(s) }
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

/// The topology file of `lab`.
pub(crate) fn toml(lab: &Lab) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `nsfw import` from what this host holds. `nsfw apply --adopt FILE` takes\n# it over in place; `nsfw diff --adopt FILE` shows how first."
    );
    if !lab.notes.is_empty() {
        let _ = writeln!(s, "#\n# Not translated (left as it is on the host):");
        for n in &lab.notes {
            let _ = writeln!(s, "#   {}", n.replace('\n', " "));
        }
    }
    if !lab.remarks.is_empty() {
        let _ = writeln!(s, "#\n# Remarks:");
        for n in &lab.remarks {
            let _ = writeln!(s, "#   {}", n.replace('\n', " "));
        }
    }
    let _ = writeln!(s, "name = {}", q(&lab.name));
    if let Some(f) = lab.ip_forward {
        let masq = lab.bridges.values().any(|b| b.masquerade);
        if f != masq {
            let _ = writeln!(s, "\n[host]\nip_forward = {f}");
        }
    }
    for (name, b) in &lab.bridges {
        bridge(&mut s, name, b);
    }
    for (name, n) in &lab.namespaces {
        namespace(&mut s, lab, name, n);
    }
    for (from, to) in &lab.denies {
        let _ = writeln!(s, "\n[[deny]]\nfrom = {}\nto = {}", q(from), q(to));
    }
    s
}

fn bridge(s: &mut String, name: &str, b: &Bridge) {
    let _ = writeln!(s, "\n[bridges.{}]", key(name));
    if let Some(a) = b.address {
        let _ = writeln!(s, "address = {}", q(&a.to_string()));
    }
    if let Some(a) = b.address6 {
        let _ = writeln!(s, "address6 = {}", q(&a.to_string()));
    }
    if b.masquerade {
        let _ = writeln!(s, "masquerade = true");
    }
    if let Some(u) = &b.uplink {
        let _ = writeln!(s, "uplink = {}", q(u));
    }
    if b.isolate {
        let _ = writeln!(s, "isolate = true");
    }
    if b.mtu != b.vxlan.as_ref().map_or(1500, |t| t.default_mtu()) {
        let _ = writeln!(s, "mtu = {}", b.mtu);
    }
    if let Some(m) = b.mac {
        let _ = writeln!(s, "mac = {}", q(&m.to_string()));
    }
    if !b.ports.is_empty() {
        let _ = writeln!(s, "ports = {}", list(&b.ports));
    }
    if let Some(t) = &b.vxlan {
        let _ = writeln!(s, "{}", t.line());
    }
}

fn namespace(s: &mut String, lab: &Lab, name: &str, n: &Ns) {
    let _ = writeln!(s, "\n[namespaces.{}]", key(name));
    let one = n.ifaces.len() == 1;
    if one {
        iface_keys(s, lab, &n.ifaces[0], true);
    }
    let first_bridge = n.ifaces.first().and_then(|i| lab.bridges.get(&i.bridge));
    if let Some(g) = n.gateway
        && first_bridge.and_then(|b| b.address).map(|a| a.ip()) != Some(g)
    {
        let _ = writeln!(s, "gateway = {}", q(&g.to_string()));
    }
    if let Some(g) = n.gateway6
        && first_bridge.and_then(|b| b.address6).map(|a| a.ip()) != Some(g)
    {
        let _ = writeln!(s, "gateway6 = {}", q(&g.to_string()));
    }
    if !n.routes.is_empty() {
        let r: Vec<String> = n
            .routes
            .iter()
            .map(|(to, via)| {
                format!(
                    "{{ to = {}, via = {} }}",
                    q(&to.to_string()),
                    q(&via.to_string())
                )
            })
            .collect();
        let _ = writeln!(s, "routes = [{}]", r.join(", "));
    }
    if !n.dns.is_empty() {
        let _ = writeln!(s, "dns = {}", list(&n.dns));
    }
    if !n.publish.is_empty() {
        let _ = writeln!(s, "publish = {}", list(&n.publish));
    }
    if !one {
        for i in &n.ifaces {
            let _ = writeln!(
                s,
                "\n[namespaces.{}.interfaces.{}]",
                key(name),
                key(&i.ifname)
            );
            iface_keys(s, lab, i, false);
        }
    }
}

fn iface_keys(s: &mut String, lab: &Lab, i: &super::lab::Iface, shorthand: bool) {
    let _ = writeln!(s, "bridge = {}", q(&i.bridge));
    if shorthand {
        let _ = writeln!(s, "ifname = {}", q(&i.ifname));
    }
    let _ = writeln!(s, "host_ifname = {}", q(&i.host_ifname));
    if let Some(a) = i.address {
        let _ = writeln!(s, "address = {}", q(&a.to_string()));
    }
    if let Some(a) = i.address6 {
        let _ = writeln!(s, "address6 = {}", q(&a.to_string()));
    }
    if let Some(m) = i.mac {
        let _ = writeln!(s, "mac = {}", q(&m.to_string()));
    }
    let bridge_mtu = lab.bridges.get(&i.bridge).map_or(1500, |b| b.mtu);
    if i.mtu != bridge_mtu {
        let _ = writeln!(s, "mtu = {}", i.mtu);
    }
}
