//! A namespace interface on a host uplink: `macvlan = "UPLINK"` (or `macvtap = "UPLINK"`) with
//! `mode`, its own MAC and addresses on the uplink's LAN, no bridge and no NAT. The host
//! reaches its own children only through a shim (`host_shim = true`): a macvlan of its own on
//! the uplink, in bridge mode, with a route to each child.
//!
//! A kind of uplink interface is one table here (`UPLINK_KINDS`): ipvlan (`ipvlan = "UPLINK"`,
//! modes l2/l3/l3s) would be one more row and its own mode names.

use std::fmt;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use toml::{Table, Value};

use super::addr::{V4, V6, check_host_address, parse_cidr};
use super::names::{derived_mac, fnv64};
use super::syntax::{Ctx, join};
use super::{Bridge, Mac};

/// The keys that put an interface on an uplink instead of a bridge, with whether it is a tap
/// (macvtap: the same device with a character device, /dev/tapN, for a VM).
pub(super) const UPLINK_KINDS: [(&str, bool); 2] = [("macvlan", false), ("macvtap", true)];

/// The keys of an interface on an uplink (in the shorthand, also `ifname`), and the keys of
/// an interface on a bridge that `read` refuses there with its reason (not as unknown).
pub(super) const UPLINK_KEYS: [&str; 11] = [
    "bridge",
    "host_ifname",
    "host_mac",
    "macvlan",
    "macvtap",
    "mode",
    "address",
    "address6",
    "mac",
    "mtu",
    "host_shim",
];

/// How children of one uplink reach each other (IFLA_MACVLAN_MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MacvlanMode {
    /// Children of one uplink talk to each other directly, inside the host.
    Bridge,
    /// No frame passes between children of the uplink, not even through the LAN.
    Private,
    /// Every frame goes out the uplink; children meet only through a hairpinning switch.
    Vepa,
    /// The one child takes over the uplink (its MAC, promiscuity).
    Passthru,
}

impl MacvlanMode {
    pub(crate) const ALL: [MacvlanMode; 4] = [
        MacvlanMode::Bridge,
        MacvlanMode::Private,
        MacvlanMode::Vepa,
        MacvlanMode::Passthru,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }

    /// MACVLAN_MODE_* (linux/if_link.h).
    pub(crate) fn number(self) -> u32 {
        match self {
            MacvlanMode::Private => 1,
            MacvlanMode::Vepa => 2,
            MacvlanMode::Bridge => 4,
            MacvlanMode::Passthru => 8,
        }
    }
}

impl fmt::Display for MacvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespace interface on a host uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Macvlan {
    /// Where its keys are: `namespaces.m1` or `namespaces.r.interfaces.eth1`.
    pub key: String,
    pub ifname: String,
    /// The host's interface it is a child of (not nsfw's).
    pub uplink: String,
    pub mode: MacvlanMode,
    /// `macvtap`: the same, with a tap character device.
    pub tap: bool,
    /// On the uplink's LAN, with its prefix (nsfw hands out no addresses there: the LAN is
    /// not its own). DHCP is out of scope.
    pub address: Ipv4Network,
    pub address6: Option<Ipv6Network>,
    /// Given, or derived from the names (stable across re-creation, for the LAN's ARP caches).
    pub mac: Mac,
    /// None: the kernel's (the uplink's).
    pub mtu: Option<u32>,
    /// The host reaches this child through the uplink's shim.
    pub host_shim: bool,
}

impl Macvlan {
    /// The kind of link, as the kernel names it.
    pub(crate) fn kind(&self) -> &'static str {
        if self.tap { "macvtap" } else { "macvlan" }
    }
}

/// The host's shim on `uplink`: its name (derived; 12 bytes) and MAC.
pub(crate) fn shim(topology: &str, uplink: &str) -> (String, Mac) {
    let h = fnv64(&["nsfw-shim", topology, uplink]) as u32;
    (
        format!("mvs-{h:08x}"),
        derived_mac(topology, "shim", uplink),
    )
}

/// Whether the interface's table puts it on an uplink.
pub(super) fn on_uplink(t: &Table) -> bool {
    UPLINK_KINDS.iter().any(|(k, _)| t.contains_key(*k))
}

/// `mtu`, refused below IPv6's minimum on a child with `address6`: the kernel would turn
/// IPv6 off on it and refuse the address part-way through an apply.
fn mtu(cx: &mut Ctx, t: &Table, prefix: &str, v6: bool) -> Option<u32> {
    let mtu = cx.mtu(t, prefix);
    if v6 && let Some(m) = mtu.filter(|m| *m < 1280) {
        cx.err(
            &join(prefix, "mtu"),
            t.get("mtu"),
            format!("{m} is below 1280, IPv6's minimum: the kernel turns IPv6 off on the interface, so its address6 could not be set"),
        );
    }
    mtu
}

/// Reads one interface on an uplink; `prefix` is where its keys are, `seed` what derived
/// names come from. Every error is reported with its key.
pub(super) fn read(
    cx: &mut Ctx,
    topology: &str,
    t: &Table,
    prefix: &str,
    (ifname, seed): (&str, &str),
    bridges: &[Bridge],
) -> Option<Macvlan> {
    let given: Vec<(&str, bool)> = UPLINK_KINDS
        .into_iter()
        .filter(|(k, _)| t.contains_key(*k))
        .collect();
    if given.len() > 1 {
        cx.err(
            &join(prefix, "macvtap"),
            t.get("macvtap"),
            "an interface is a macvlan or a macvtap, not both",
        );
        return None;
    }
    let (key, tap) = *given.first()?;
    for other in ["bridge", "host_ifname", "host_mac"] {
        if let Some(v) = t.get(other) {
            cx.err(
                &join(prefix, other),
                Some(v),
                format!("an interface on an uplink ({key}) has no bridge and no host end"),
            );
        }
    }
    let uplink = uplink(cx, t, prefix, key, bridges);
    let mode = mode(cx, t, prefix);
    let address6 = lan_address(cx, t, prefix, true);
    let address = lan_address(cx, t, prefix, false);
    let mac = cx.mac(t, prefix);
    if mode == Some(MacvlanMode::Passthru)
        && let Some(v) = t.get("mac")
    {
        cx.err(
            &join(prefix, "mac"),
            Some(v),
            "a passthru child's MAC is the uplink's: setting it would change the uplink's own",
        );
    }
    let mtu = mtu(cx, t, prefix, address6.is_some());
    let host_shim = cx.boolean(t, prefix, "host_shim").unwrap_or(false);
    if host_shim && mode.is_some_and(|m| m != MacvlanMode::Bridge) {
        cx.err(
            &join(prefix, "host_shim"),
            t.get("host_shim"),
            "the shim is a sibling on the uplink: only a child in mode = \"bridge\" talks to it",
        );
    }
    let address = match address {
        Some(IpNetwork::V4(a)) => Some(a),
        _ => {
            if !t.contains_key("address") {
                cx.err(
                    &join(prefix, "address"),
                    None,
                    "missing: an interface on an uplink needs its address on the LAN, with its prefix (like 192.0.2.21/24); nsfw hands out none there, and DHCP is not supported",
                );
            }
            None
        }
    };
    let address6 = match address6 {
        Some(IpNetwork::V6(a)) => Some(a),
        _ => None,
    };
    Some(Macvlan {
        key: prefix.to_string(),
        ifname: ifname.to_string(),
        uplink: uplink?,
        mode: mode?,
        tap,
        address: address?,
        address6,
        mac: mac.unwrap_or_else(|| derived_mac(topology, key, seed)),
        mtu,
        host_shim,
    })
}

/// The uplink: an interface name, and not one of the file's bridges or their ports (nsfw's
/// own, or taken by a bridge: a macvlan child of either bypasses the bridge's firewall).
fn uplink(cx: &mut Ctx, t: &Table, prefix: &str, key: &str, bridges: &[Bridge]) -> Option<String> {
    let u = cx.ifname(t, prefix, key)?;
    let why = if let Some(b) = bridges.iter().find(|b| b.name == u) {
        Some(format!(
            "{} is a bridge of this file ([bridges.{}]): a macvlan's uplink is a host interface nsfw does not own; put the namespace on the bridge with `bridge = \"{}\"`",
            u, b.name, b.name
        ))
    } else {
        bridges
            .iter()
            .find(|b| b.ports.contains(&u))
            .map(|b| format!("{u} is a port of bridge {} in this file: its frames belong to the bridge; use the bridge (`bridge = \"{}\"`) or give the port up", b.name, b.name))
    };
    match why {
        Some(why) => {
            cx.err(&join(prefix, key), t.get(key), why);
            None
        }
        None => Some(u),
    }
}

/// `mode`: bridge by default.
fn mode(cx: &mut Ctx, t: &Table, prefix: &str) -> Option<MacvlanMode> {
    let Some(s) = cx.string(t, prefix, "mode") else {
        return (!t.contains_key("mode")).then_some(MacvlanMode::Bridge);
    };
    let m = MacvlanMode::ALL.into_iter().find(|m| m.as_str() == s);
    if m.is_none() {
        let names: Vec<&str> = MacvlanMode::ALL.iter().map(|m| m.as_str()).collect();
        cx.err(
            &join(prefix, "mode"),
            t.get("mode"),
            format!("unknown mode (expected one of: {})", names.join(", ")),
        );
    }
    m
}

/// An address on the LAN, with its prefix (there is no bridge to take one from).
fn lan_address(cx: &mut Ctx, t: &Table, prefix: &str, v6: bool) -> Option<IpNetwork> {
    let f = if v6 { V6 } else { V4 };
    let s = cx.string(t, prefix, f.key)?;
    let key = join(prefix, f.key);
    let checked = parse_cidr(&s, None, f).and_then(|a| check_host_address(&a).map(|()| a));
    match checked {
        Ok(a) => Some(a),
        Err(why) => {
            cx.err(&key, t.get(f.key), why);
            None
        }
    }
}

/// Checks across the file: a passthru child is its uplink's only one, and no shim may
/// share an uplink with it; an interface name appears once per namespace.
pub(super) fn check_uplinks(cx: &mut Ctx, all: &[(&str, &Macvlan)]) {
    // Two children of one uplink with one MAC: the kernel refuses the second one up.
    for (i, (ns, m)) in all.iter().enumerate() {
        let twin = all[..i].iter().find(|(_, o)| {
            o.uplink == m.uplink && o.mac == m.mac && m.mode != MacvlanMode::Passthru
        });
        if let Some((other, _)) = twin {
            let v = Value::String(m.mac.to_string());
            cx.err(
                &join(&m.key, "mac"),
                Some(&v),
                format!(
                    "namespace {other} has this MAC on uplink {} too (namespace {ns})",
                    m.uplink
                ),
            );
        }
    }
    for (_, m) in all.iter().filter(|(_, m)| m.mode == MacvlanMode::Passthru) {
        let others = all
            .iter()
            .filter(|(_, o)| o.uplink == m.uplink && o.key != m.key)
            .count();
        if others > 0 {
            let v = Value::String("passthru".into());
            cx.err(
                &join(&m.key, "mode"),
                Some(&v),
                format!(
                    "a passthru child takes uplink {} over: it must be the uplink's only macvlan ({others} other(s) in the file)",
                    m.uplink
                ),
            );
        }
    }
}

/// Warnings for the `[[allow]]` entries that name a namespace the host cannot reach: one
/// whose only interfaces are macvlan children without `host_shim`. The host's own frames on
/// the uplink never reach its children (the driver hands a child's to the LAN or a sibling,
/// and the uplink's to the wire), so the entry matters only where a LAN router sends that
/// traffic back through the host.
pub(super) fn lint(
    file: &str,
    namespaces: &[super::Namespace],
    policy: &[super::PolicyRule],
) -> Vec<String> {
    let unreachable = |e: &super::Endpoint| match e {
        super::Endpoint::Ns(n) => namespaces.iter().find(|x| &x.name == n).filter(|x| {
            x.ifaces.is_empty() && !x.macvlans.is_empty() && x.macvlans.iter().all(|m| !m.host_shim)
        }),
        _ => None,
    };
    let mut out = Vec::new();
    for r in policy.iter().filter(|r| r.action == super::Action::Allow) {
        if let Some(n) = unreachable(&r.from).or_else(|| unreachable(&r.to)) {
            out.push(format!(
                "{file}: {}: from = \"{}\", to = \"{}\": namespace {} is only on a host uplink (macvlan) without host_shim = true: the host cannot reach it, and the entry matters only if a router on the LAN sends that traffic back through the host; give it host_shim = true",
                r.key, r.from, r.to, n.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod lint_tests {
    /// An `[[allow]]` naming a child the host cannot reach is warned about; with a shim, not.
    #[test]
    fn an_allow_naming_a_child_without_a_shim_is_warned_about() {
        for (shim, warned) in [(false, true), (true, false)] {
            let t = crate::testdata::topology(
                "ml",
                &format!(
                    "name = 'ml'\n[bridges.br0]\naddress = '10.0.0.1/24'\n[namespaces.b]\nbridge = 'br0'\n[namespaces.m]\nmacvlan = 'up0'\naddress = '192.0.2.31/24'\nhost_shim = {shim}\n[[allow]]\nfrom = 'b'\nto = 'm'\n"
                ),
            );
            let w = t
                .warnings
                .iter()
                .any(|w| w.contains("allow[0]") && w.contains("host_shim"));
            assert_eq!(w, warned, "host_shim = {shim}: {:?}", t.warnings);
        }
    }
}
