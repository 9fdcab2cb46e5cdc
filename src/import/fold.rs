//! The recognised firewall lines folded into the lab: a MASQUERADE of a bridge's subnet is
//! its `masquerade`, a DNAT to a namespace's address its `publish`, drops between namespaces
//! `[[deny]]` or `isolate`. A rule whose meaning finds no place in the lab (a subnet of no
//! bridge, an address of no namespace) stays a note. Pure.

use super::lab::Lab;
use super::rules::{Found, Meaning};

/// Folds `found` into `lab`; returns, for each rule, whether the file now says it (so that
/// `apply --adopt` may remove it).
pub(crate) fn fold(lab: &mut Lab, found: &[Found]) -> Vec<bool> {
    found.iter().map(|f| fold_one(lab, f)).collect()
}

fn bridge_of<'a>(lab: &'a Lab, what: &str) -> Option<&'a str> {
    if lab.bridges.contains_key(what) {
        return lab.bridges.get_key_value(what).map(|(k, _)| k.as_str());
    }
    let net: ipnetwork::IpNetwork = what.parse().ok()?;
    lab.bridges
        .iter()
        .find(|(_, b)| {
            b.address
                .is_some_and(|a| a.network() == net.network() && a.prefix() == net.prefix())
        })
        .map(|(k, _)| k.as_str())
}

fn ns_of(lab: &Lab, addr: &str) -> Option<String> {
    let ip: std::net::IpAddr = addr.parse().ok()?;
    lab.namespaces
        .iter()
        .find(|(_, n)| {
            n.ifaces
                .iter()
                .any(|i| i.address.is_some_and(|a| a.ip() == ip))
        })
        .map(|(k, _)| k.clone())
}

fn note(lab: &mut Lab, f: &Found, why: &str) -> bool {
    lab.notes.push(format!("{}: {} ({why})", f.at, f.text));
    false
}

fn fold_masquerade(
    lab: &mut Lab,
    f: &Found,
    subnet: &ipnetwork::IpNetwork,
    uplink: &Option<String>,
    not_out: &Option<String>,
    snat: &Option<String>,
) -> bool {
    let Some(b) = bridge_of(lab, &subnet.to_string()).map(str::to_string) else {
        return note(lab, f, "the subnet of no bridge imported");
    };
    // `oifname != "uplink"`: not what `masquerade` says (out of every way but the
    // bridges); only `!= <its own bridge>`, the guide's line, is.
    if not_out.as_ref().is_some_and(|o| *o != b) {
        return note(
            lab,
            f,
            "not translated: it masquerades out of all but one interface",
        );
    }
    if let Some(to) = snat {
        lab.remarks.push(format!(
            "{}: SNAT to {to} becomes masquerade (the address of the interface it leaves by)",
            f.at
        ));
    }
    if let Some(br) = lab.bridges.get_mut(&b) {
        br.masquerade = true;
        if uplink.is_some() {
            br.uplink.clone_from(uplink);
        }
    }
    true
}

fn fold_one(lab: &mut Lab, f: &Found) -> bool {
    let Some(m) = &f.meaning else {
        return note(lab, f, "not translated");
    };
    match m {
        Meaning::Masquerade {
            subnet,
            uplink,
            not_out,
            snat,
        } => fold_masquerade(lab, f, subnet, uplink, not_out, snat),
        Meaning::Stateful => true,
        Meaning::Egress { from } => {
            bridge_of(lab, from).is_some() || note(lab, f, "names no bridge imported")
        }
        Meaning::Inbound { to } => {
            if bridge_of(lab, to).is_none() {
                return note(lab, f, "names no bridge imported");
            }
            lab.remarks.push(format!(
                "{}: {}: accepted any forwarded traffic into {to}; nsfw accepts replies and published ports only",
                f.at, f.text
            ));
            true
        }
        Meaning::Publish {
            proto,
            host_addr,
            port,
            to,
            to_port,
        } => {
            let Some(ns) = ns_of(lab, &to.to_string()) else {
                return note(lab, f, "to an address of no namespace imported");
            };
            let addr = match host_addr {
                Some(std::net::IpAddr::V6(a)) => format!("[{a}]:"),
                Some(a) => format!("{a}:"),
                None => String::new(),
            };
            let entry = format!("{addr}{port}:{to_port}/{proto}");
            if let Some(n) = lab.namespaces.get_mut(&ns)
                && !n.publish.contains(&entry)
            {
                n.publish.push(entry);
            }
            true
        }
        Meaning::Drop { from, to } => {
            if from == to && bridge_of(lab, from).is_some() {
                if let Some(b) = lab.bridges.get_mut(from.as_str()) {
                    b.isolate = true;
                }
                return true;
            }
            match (ns_of(lab, from), ns_of(lab, to)) {
                (Some(a), Some(b)) => {
                    if !lab.denies.contains(&(a.clone(), b.clone())) {
                        lab.denies.push((a, b));
                    }
                    true
                }
                _ => note(lab, f, "between addresses of no namespace imported"),
            }
        }
    }
}
