//! The topology files nsfw is given: N namespaces on bridges, and the published-port lab.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The data-plane trials' server in `wan`.
pub const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 10), 5201);
/// The sandbox host's uplink address, where `wan` reaches published ports.
pub const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The topology file for `bridges` × `per` namespaces.
pub fn topology(bridges: usize, per: usize) -> String {
    let mut s = String::from("name = \"bench\"\n");
    for b in 0..bridges {
        writeln!(
            s,
            "[bridges.br{b}]\naddress = \"10.{}.0.1/24\"\nmasquerade = true",
            100 + b
        )
        .ok();
    }
    for b in 0..bridges {
        for i in 0..per {
            writeln!(
                s,
                "[namespaces.ns{b}x{i}]\nbridge = \"br{b}\"\naddress = \"10.{}.{}.{}/24\"",
                100 + b,
                0,
                i + 2
            )
            .ok();
        }
    }
    s
}

/// The published-port topology: `PUB_NS` namespaces on one bridge.
pub const PUB_NS: usize = 100;
/// Ports each namespace publishes (host ports `20000 + 100 i ..`, namespace ports 8000..8099).
pub const PUB_PER: u16 = 100;
/// The namespace and host port the data-plane trial connects through, and where it lands.
pub const PROBE_NS: usize = 42;
pub const PROBE_HOST_PORT: u16 = 20000 + PROBE_NS as u16 * PUB_PER + 42;
pub const PROBE_NS_PORT: u16 = 8042;
/// What the published-port topology publishes.
#[derive(Clone, Copy)]
pub enum Ports {
    /// `PUB_NS × PUB_PER` ports; `moved`: ns0's first port on host port 30000 instead of 20000.
    All { moved: bool },
    /// Only the probed port.
    One,
}

/// 100 namespaces on one /22, publishing 10,000 ports or just the probed one. ns0's first
/// port is an entry of its own, so that one host port can change by editing one entry.
pub fn publish_topology(ports: Ports) -> String {
    let mut s = String::from(
        "name = \"bench\"\n[bridges.br0]\naddress = \"10.200.0.1/22\"\nmasquerade = true\n",
    );
    for i in 0..PUB_NS {
        let a = i + 2;
        writeln!(
            s,
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.200.{}.{}/22\"",
            a / 256,
            a % 256
        )
        .ok();
        let h = 20000 + i as u16 * PUB_PER;
        let (hl, nl) = (h + PUB_PER - 1, 8000 + PUB_PER - 1);
        let publish = match ports {
            Ports::All { moved } if i == 0 => {
                let first = if moved { 30000 } else { h };
                format!("[\"{first}:8000\", \"{}-{hl}:8001-{nl}\"]", h + 1)
            }
            Ports::All { .. } => format!("[\"{h}-{hl}:8000-{nl}\"]"),
            Ports::One if i == PROBE_NS => format!("[\"{PROBE_HOST_PORT}:{PROBE_NS_PORT}\"]"),
            Ports::One => continue,
        };
        writeln!(s, "publish = {publish}").ok();
    }
    s
}

/// The routed lab: `routers` router namespaces on the host's `core` bridge (10.99.0.0/24, the
/// host its gateway and NAT), each the gateway of its own L2-only bridge `seg{r}`
/// (10.{100+r}.0.0/24, no host address) with `per` namespaces; the host routes each segment
/// through its router.
pub fn routed_topology(routers: usize, per: usize) -> String {
    let mut s = String::from("name = \"bench\"\n[host]\nroutes = [");
    for r in 0..routers {
        let sep = if r == 0 { "" } else { ", " };
        write!(
            s,
            "{sep}{{ to = \"10.{}.0.0/24\", via = \"10.99.0.{}\" }}",
            100 + r,
            r + 2
        )
        .ok();
    }
    s.push_str("]\n[bridges.core]\naddress = \"10.99.0.1/24\"\nmasquerade = true\n");
    for r in 0..routers {
        writeln!(s, "[bridges.seg{r}]").ok();
    }
    for r in 0..routers {
        writeln!(
            s,
            "[namespaces.r{r}]\nforward = true\nroutes = [{{ to = \"0.0.0.0/0\", via = \"10.99.0.1\" }}]
[namespaces.r{r}.interfaces.eth0]\nbridge = \"core\"\naddress = \"10.99.0.{}/24\"
[namespaces.r{r}.interfaces.eth1]\nbridge = \"seg{r}\"\naddress = \"10.{}.0.1/24\"",
            r + 2,
            100 + r
        )
        .ok();
        for i in 0..per {
            writeln!(
                s,
                "[namespaces.s{r}x{i}]\nbridge = \"seg{r}\"\naddress = \"10.{}.0.{}/24\"\ngateway = \"10.{}.0.1\"",
                100 + r,
                i + 2,
                100 + r
            )
            .ok();
        }
    }
    s
}

/// `topology(1, n)`, and with `v6` every namespace and the bridge also get an IPv6 address
/// (a ULA /64: the namespaces' own addresses, not an upstream's).
pub fn dual_topology(n: usize, v6: bool) -> String {
    let t = topology(1, n);
    if !v6 {
        return t;
    }
    let mut s = String::new();
    for line in t.lines() {
        writeln!(s, "{line}").ok();
        if line == "address = \"10.100.0.1/24\"" {
            writeln!(s, "address6 = \"fd00:100::1/64\"").ok();
        } else if let Some(host) = line
            .strip_prefix("address = \"10.100.0.")
            .and_then(|r| r.strip_suffix("/24\""))
        {
            writeln!(s, "address6 = \"fd00:100::{host}/64\"").ok();
        }
    }
    s
}

/// Namespaces of the policy lab, on one egress-denied bridge.
pub const POLICY_NS: usize = 10;
/// The small policy the data-plane trial compares the big one with.
pub const POLICY_FEW: usize = 10;

/// The policy lab: `POLICY_NS` namespaces on an `egress = "deny"` bridge and `entries`
/// `[[allow]]` entries, so a new connection out is judged by the allow set. The first entry
/// is what the data-plane trial uses (ns0 → the server in `wan`); the others are distinct
/// (namespace, 203.0.113.x, tcp port ≥ 10000) triples, none overlapping it.
pub fn policy_topology(entries: usize) -> String {
    let mut s = String::from(
        "name = \"bench\"\n[bridges.br0]\naddress = \"10.100.0.1/24\"\nmasquerade = true\negress = \"deny\"\n",
    );
    for i in 0..POLICY_NS {
        writeln!(
            s,
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.100.0.{}/24\"",
            i + 2
        )
        .ok();
    }
    writeln!(
        s,
        "[[allow]]\nfrom = \"ns0\"\nto = \"{}/32\"\nports = [\"tcp/{}\"]",
        SERVER.0, SERVER.1
    )
    .ok();
    // e ↦ (e % 10, (e / 10) % 250, e / 2500) is one-to-one, so no two entries are the same.
    for e in 1..entries {
        writeln!(
            s,
            "[[allow]]\nfrom = \"ns{}\"\nto = \"203.0.113.{}/32\"\nports = [\"tcp/{}\"]",
            e % POLICY_NS,
            (e / POLICY_NS) % 250 + 1,
            10000 + e / (POLICY_NS * 250)
        )
        .ok();
    }
    s
}

/// The policy lab with no two entries neighbours (every address and port of an entry but the
/// first is even), so none join into a run: the pipapo set holds `entries` elements, and the kernel's
/// cost of inserting them is what is measured.
pub fn policy_sparse_topology(entries: usize) -> String {
    let mut s = String::from(
        "name = \"bench\"\n[bridges.br0]\naddress = \"10.100.0.1/24\"\nmasquerade = true\negress = \"deny\"\n",
    );
    for i in 0..POLICY_NS {
        writeln!(
            s,
            "[namespaces.ns{i}]\nbridge = \"br0\"\naddress = \"10.100.0.{}/24\"",
            2 * i + 2
        )
        .ok();
    }
    // The data-plane trial's entry first, as in `policy_topology` (its port is odd).
    writeln!(
        s,
        "[[allow]]\nfrom = \"ns0\"\nto = \"{}/32\"\nports = [\"tcp/{}\"]",
        SERVER.0, SERVER.1
    )
    .ok();
    // e ↦ (e % 10, (e / 10) % 125, e / 1250) is one-to-one.
    for e in 1..entries {
        writeln!(
            s,
            "[[allow]]\nfrom = \"ns{}\"\nto = \"203.0.113.{}/32\"\nports = [\"tcp/{}\"]",
            e % POLICY_NS,
            2 * ((e / POLICY_NS) % 125) + 2,
            10000 + 2 * (e / (POLICY_NS * 125))
        )
        .ok();
    }
    s
}
