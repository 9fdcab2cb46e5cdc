//! The watch fight trial, inside a fresh sandbox: `nsfw watch` against another manager
//! that undoes its work every 100 ms for `secs` seconds (deleting nsfw's table, then one
//! element of a set), while `wan` — the world — sends a new UDP flow to a namespace every
//! 20 ms. What it prints for each agent: the share of probes kept out (the firewall up), the
//! share of a core watch used, and the gaps between each deletion and its repair as
//! nf_tables' own notifications time them (tests/tools/nftgap.py).

use std::path::Path;
use std::process::Command;

use crate::run::{Res, nsfw_bin};

/// The agents, by the label their figures carry.
pub const AGENTS: [(&str, &str); 2] = [
    ("table", "nft delete table inet nsfw_lab"),
    (
        "element",
        "nft delete element inet nsfw_lab bridges '{ \"br0\" }'",
    ),
];

const LAB: &str = r#"name = "lab"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
[namespaces.ns2]
bridge = "br0"
address = "10.10.0.3/24"
"#;

/// One fight of `secs` seconds against `agent`; prints `label value 0` lines.
const FIGHT: &str = r#"
set -e
c0=$(awk '{print $14+$15}' /proc/$WP/stat); t0=$(date +%s.%N)
chrt -f 50 python3 $TOOLS/nftgap.py nsfw_lab $SECS > $D/gap 2>/dev/null &
GP=$!
sleep 0.2
( end=$((SECONDS+SECS)); while [ $SECONDS -lt $end ]; do eval "$AGENT" 2>/dev/null || true; sleep 0.1; done ) &
FP=$!
in0=$(cat $D/in)
sent=$(ip netns exec wan python3 $TOOLS/probe.py send 10.10.0.2 9100 $SECS 20)
wait $FP
c1=$(awk '{print $14+$15}' /proc/$WP/stat); t1=$(date +%s.%N)
sleep 0.5; wait $GP || true
got=$(( $(cat $D/in) - in0 ))
python3 - "$LABEL" "$got" "$sent" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" "$D/gap" <<'PY'
import json, sys
l, got, sent, c0, c1, t0, t1, hz, gap = sys.argv[1:]
g = json.load(open(gap))
print(f"watch_{l}_up {100 * (1 - float(got) / float(sent)):.2f} 0")
print(f"watch_{l}_cpu {100 * (float(c1) - float(c0)) / float(hz) / (float(t1) - float(t0)):.2f} 0")
for k in ("median_ms", "p90_ms", "max_ms"):
    print(f"watch_{l}_gap_{k[:-3]} {g[k] or 0:.2f} 0")
print(f"watch_{l}_gaps {g['gaps']} 0")
PY
# The fight's end, before the next one.
sleep 2
"#;

/// The trial: the lab applied, watch started, one fight per agent; the log must name them.
pub fn watch(secs: usize, dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("lab.toml");
    std::fs::write(&f, LAB)?;
    let tools = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools");
    let setup = format!(
        "set -e
         ip netns add wan
         ip link add uplink type veth peer name eth0 netns wan
         ip addr add 198.51.100.1/24 dev uplink; ip link set uplink up
         ip -n wan link set lo up; ip -n wan link set eth0 up
         ip -n wan addr add 198.51.100.2/24 dev eth0
         ip route add default via 198.51.100.2
         ip -n wan route add 10.10.0.0/24 via 198.51.100.1
         {nsfw} apply {f} > /dev/null
         {nsfw} watch {f} > {d}/watch.log 2>&1 &
         echo $! > {d}/watch.pid
         ip netns exec ns1 python3 {tools}/probe.py listen 9100 {d}/in > /dev/null 2>&1 &
         sleep 1",
        nsfw = nsfw.display(),
        f = f.display(),
        d = dir.display(),
    );
    crate::run::sh(&setup)?;
    let wp = std::fs::read_to_string(dir.join("watch.pid"))?;
    for (label, agent) in AGENTS {
        let o = Command::new("bash")
            .args(["-c", FIGHT])
            .env("WP", wp.trim())
            .env("D", dir)
            .env("TOOLS", tools)
            .env("SECS", secs.to_string())
            .env("AGENT", agent)
            .env("LABEL", label)
            .output()?;
        if !o.status.success() {
            return Err(format!("fight {label}: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        print!("{}", String::from_utf8_lossy(&o.stdout));
    }
    let log = std::fs::read_to_string(dir.join("watch.log"))?;
    let named = log.lines().any(|l| l.contains("fighting nft (pid "));
    println!("watch_named {} 0", u8::from(named));
    Ok(())
}
