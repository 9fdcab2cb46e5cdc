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
