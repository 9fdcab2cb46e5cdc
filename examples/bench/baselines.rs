//! The hand-written ways nsfw is measured against: the classic one-process-per-step script and
//! the fastest stock-tool path (`ip -batch` + `nft -f`).

use std::fmt::Write as _;
use std::path::Path;

use crate::run::Res;

/// The classic script, generalised to N namespaces on br0: one process per step.
pub fn classic_script(n: usize) -> String {
    let mut s = String::from("set -euo pipefail\n");
    for i in 0..n {
        writeln!(s, "ip netns add ns{i}").ok();
    }
    s.push_str(
        "ip link add br0 type bridge\nip addr add 10.100.0.1/24 dev br0\nip link set br0 up\n",
    );
    for i in 0..n {
        writeln!(
            s,
            "ip link add veth-ns{i} type veth peer name eth0-ns{i}\nip link set eth0-ns{i} netns ns{i}\nip link set veth-ns{i} master br0\nip link set veth-ns{i} up"
        )
        .ok();
    }
    for i in 0..n {
        let a = i + 2;
        writeln!(
            s,
            "ip netns exec ns{i} ip addr add 10.100.0.{a}/24 dev eth0-ns{i}\nip netns exec ns{i} ip link set eth0-ns{i} up\nip netns exec ns{i} ip link set lo up\nip netns exec ns{i} ip route add default via 10.100.0.1"
        )
        .ok();
    }
    s.push_str(CLASSIC_RULES);
    s
}

/// The guide's NAT line plus its "production" stateful FORWARD rules, scoped to the bridge.
pub const CLASSIC_RULES: &str = "sysctl -qw net.ipv4.ip_forward=1
iptables -t nat -A POSTROUTING -s 10.100.0.0/24 ! -o br0 -j MASQUERADE
iptables -A FORWARD -i br0 -m conntrack --ctstate INVALID -j DROP
iptables -A FORWARD -i br0 -j ACCEPT
iptables -A FORWARD -o br0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -o br0 -j DROP
";

/// The fastest stock-tool path: batch files for ip and nft.
pub fn batch_files(dir: &Path, n: usize) -> Res<()> {
    let mut host = String::new();
    for i in 0..n {
        writeln!(host, "netns add ns{i}").ok();
    }
    host.push_str("link add br0 type bridge\naddr add 10.100.0.1/24 dev br0\nlink set br0 up\n");
    for i in 0..n {
        writeln!(
            host,
            "link add veth-ns{i} master br0 up type veth peer name eth0 netns ns{i}"
        )
        .ok();
    }
    std::fs::write(dir.join("host.batch"), host)?;
    for i in 0..n {
        let a = i + 2;
        std::fs::write(
            dir.join(format!("ns{i}.batch")),
            format!(
                "addr add 10.100.0.{a}/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 10.100.0.1\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("rules.nft"),
        "table inet lab {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname \"br0\" jump from_br0
    oifname \"br0\" jump to_br0
  }
  chain from_br0 {
    ct state invalid drop
    oifname \"br0\" accept
    accept
  }
  chain to_br0 {
    ct state established,related accept
    drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.100.0.0/24 oifname != \"br0\" masquerade
  }
}
",
    )?;
    Ok(())
}
