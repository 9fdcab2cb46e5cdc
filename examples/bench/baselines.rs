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

/// The routed lab of `routed_topology` by hand: one `ip -batch` for the host (namespaces,
/// bridges, veths with their peers in place, the routes to the segments), one
/// `ip -n R -batch` per router and per namespace, a sysctl per router and one `nft -f` for the host (nsfw
/// loads nothing into a router that only forwards). Files into `dir`; `teardown.batch` undoes it all. Returns the router names.
pub fn routed_files(dir: &Path, routers: usize, per: usize) -> Res<Vec<String>> {
    let mut host = String::new();
    let mut down = String::new();
    for r in 0..routers {
        writeln!(host, "netns add r{r}").ok();
        writeln!(down, "netns del r{r}").ok();
        for i in 0..per {
            writeln!(host, "netns add s{r}x{i}").ok();
            writeln!(down, "netns del s{r}x{i}").ok();
        }
    }
    host.push_str("link add core type bridge\naddr add 10.99.0.1/24 dev core\nlink set core up\n");
    down.push_str("link del core\n");
    for r in 0..routers {
        let seg = 100 + r;
        writeln!(
            host,
            "link add seg{r} type bridge\nlink set seg{r} up
link add veth-r{r}-0 master core up type veth peer name eth0 netns r{r}
link add veth-r{r}-1 master seg{r} up type veth peer name eth1 netns r{r}"
        )
        .ok();
        writeln!(down, "link del seg{r}").ok();
        for i in 0..per {
            writeln!(
                host,
                "link add veth-s{r}x{i} master seg{r} up type veth peer name eth0 netns s{r}x{i}"
            )
            .ok();
            std::fs::write(
                dir.join(format!("s{r}x{i}.batch")),
                format!(
                    "addr add 10.{seg}.0.{}/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 10.{seg}.0.1\n",
                    i + 2
                ),
            )?;
        }
        writeln!(host, "route add 10.{seg}.0.0/24 via 10.99.0.{}", r + 2).ok();
        std::fs::write(
            dir.join(format!("r{r}.batch")),
            format!(
                "addr add 10.99.0.{}/24 dev eth0\naddr add 10.{seg}.0.1/24 dev eth1
link set lo up\nlink set eth0 up\nlink set eth1 up\nroute add default via 10.99.0.1\n",
                r + 2
            ),
        )?;
    }
    std::fs::write(dir.join("host.batch"), host)?;
    std::fs::write(dir.join("teardown.batch"), down)?;
    routed_nft(dir, routers)?;
    Ok((0..routers).map(|r| format!("r{r}")).collect())
}

/// The routed lab's `host.nft`: nsfw's judge, by hand: stateful, open within a bridge and out,
/// nothing new in; the segments' bridged traffic in a conntrack zone of its own, as nsfw does.
fn routed_nft(dir: &Path, routers: usize) -> Res<()> {
    let segs = (0..routers)
        .map(|r| format!("10.{}.0.0/24", 100 + r))
        .collect::<Vec<_>>()
        .join(", ");
    let same = (0..routers)
        .map(|r| format!("\"seg{r}\" . \"seg{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let bridges = std::iter::once("\"core\"".to_string())
        .chain((0..routers).map(|r| format!("\"seg{r}\"")))
        .collect::<Vec<_>>()
        .join(", ");
    let l2only = (0..routers)
        .map(|r| format!("\"seg{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("host.nft"),
        format!(
            "table inet lab {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname {{ {bridges} }} goto judge
    oifname {{ {bridges} }} goto judge
  }}
  chain judge {{
    ct state established,related accept
    ct state invalid drop
    iifname \"core\" ip saddr != {{ 10.99.0.0/24, {segs} }} drop
    iifname . oifname {{ \"core\" . \"core\", {same} }} accept
    oifname {{ {bridges} }} drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {{ 10.99.0.0/24, {segs} }} oifname != {{ {bridges} }} masquerade
  }}
  chain bridged {{
    type filter hook prerouting priority raw; policy accept;
    iifname {{ {l2only} }} ct zone set 1
  }}
}}
"
        ),
    )?;
    Ok(())
}
