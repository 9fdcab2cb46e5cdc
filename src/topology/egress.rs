//! `egress_via = ["up0"]` on a bridge: the interfaces of the host its namespaces' new
//! connections may leave through. Without it, anything the host routes to is "the world"
//! (a LAN on a second NIC included); with it, only what lies behind these interfaces is.

use toml::{Table, Value};

use super::Bridge;
use super::names::check_ifname;
use super::syntax::{Ctx, join};

/// The bridge's `egress_via`, each a valid interface name; empty when the key is absent.
pub(super) fn read(cx: &mut Ctx, b: &Table, prefix: &str) -> Vec<String> {
    let key = join(prefix, "egress_via");
    if let Some(v) = b.get("egress_via")
        && v.as_array().is_some_and(|a| a.is_empty())
    {
        cx.err(
            &key,
            Some(v),
            "names no interface: omit it (egress out of any interface) or say egress = \"deny\" (none)",
        );
    }
    cx.strings(b, prefix, "egress_via")
        .into_iter()
        .filter_map(|(p, v)| match check_ifname(&p) {
            Ok(()) => Some(p),
            Err(why) => {
                cx.err(&key, Some(v), why);
                None
            }
        })
        .collect()
}

/// `egress_via` against the other bridges: an L2-only bridge routes nothing through the host;
/// a bridge or a bridge's port is no way out; `uplink` (where the bridge masquerades) must be
/// one of the ways out, or what it masquerades could never leave.
pub(super) fn check(cx: &mut Ctx, out: &[Bridge]) {
    for b in out.iter().filter(|b| !b.egress_via.is_empty()) {
        let key = join(&join("bridges", &b.name), "egress_via");
        if b.l2_only() {
            cx.err(
                &key,
                None,
                "an L2-only bridge (no address) routes nothing through the host: confine egress in its router namespace",
            );
        }
        for via in &b.egress_via {
            let v = Value::String(via.clone());
            if out.iter().any(|x| &x.name == via) {
                cx.err(
                    &key,
                    Some(&v),
                    "that is a bridge of this file: between bridges the policy decides",
                );
            } else if let Some(x) = out.iter().find(|x| x.ports.contains(via)) {
                cx.err(
                    &key,
                    Some(&v),
                    format!(
                        "that is a port of bridge {}, not a way out of the host",
                        x.name
                    ),
                );
            }
        }
        if let Some(u) = &b.uplink
            && !b.egress_via.contains(u)
        {
            let v = Value::String(u.clone());
            cx.err(
                &join(&join("bridges", &b.name), "uplink"),
                Some(&v),
                format!(
                    "the bridge masquerades out of {u}, but egress_via lets its namespaces out only through {}: add {u} to egress_via",
                    b.egress_via.join(", ")
                ),
            );
        }
    }
}
