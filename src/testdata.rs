//! What the unit tests share: the shipped rulesets and a few more files (routed, dual-stack,
//! published, policy, impaired), parsed as `nsfw` parses them; golden files under
//! tests/golden (their values are the behaviour they were written from); a scratch directory
//! for the write-ahead record.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::topology::{self, Topology};

/// Every file of rulesets/, by name.
pub(crate) const RULESETS: [(&str, &str); 5] = [
    (
        "egress-sandbox",
        include_str!("../rulesets/egress-sandbox.toml"),
    ),
    ("lab", include_str!("../rulesets/lab.toml")),
    ("publish", include_str!("../rulesets/publish.toml")),
    ("router", include_str!("../rulesets/router.toml")),
    (
        "two-segments",
        include_str!("../rulesets/two-segments.toml"),
    ),
];

/// Routed: a router namespace with static routes on both sides, a gateway that is not the
/// bridge, `[host] routes`, forwarding.
pub(crate) const ROUTED: &str = r#"
name = "routed"
[host]
routes = [{ to = "10.30.0.0/24", via = "10.10.0.254" }, { to = "10.31.0.0/24", via = "10.10.0.254" }]
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
[bridges.br1]
address = "10.20.0.1/24"
[namespaces.edge]
forward = true
masquerade = "eth0"
routes = [{ to = "10.30.0.0/23", via = "10.20.0.9" }]
[namespaces.edge.interfaces.eth0]
bridge = "br0"
address = "10.10.0.254/24"
[namespaces.edge.interfaces.eth1]
bridge = "br1"
address = "10.20.0.254/24"
[namespaces.inner]
bridge = "br1"
address = "10.20.0.9/24"
gateway = "10.20.0.254"
"#;

/// Dual stack: IPv4 and IPv6 on one bridge, NAT66, one namespace given its addresses and one
/// handed them.
pub(crate) const DUAL: &str = r#"
name = "dual"
[bridges.br0]
address = "10.10.0.1/24"
address6 = "fd00:10::1/64"
masquerade = true
masquerade6 = true
[namespaces.ns1]
bridge = "br0"
address = "10.10.0.2/24"
address6 = "fd00:10::2/64"
[namespaces.ns2]
bridge = "br0"
"#;

/// Published ports of both families, a range, a restricted address, UDP.
pub(crate) const PUBLISH: &str = r#"
name = "pub"
[bridges.br0]
address = "10.10.0.1/24"
address6 = "fd00:10::1/64"
masquerade = true
[namespaces.web]
bridge = "br0"
publish = ["8080:80/tcp", "127.0.0.1:8443:443/tcp", "[::]:8081:80", "9000-9002:9000-9002/udp"]
[namespaces.dns]
bridge = "br0"
dns = ["192.0.2.53", "2001:db8::53"]
publish = ["5353:53/udp"]
"#;

/// Policy: isolation within a bridge, egress deny, host protection, allows and a deny.
pub(crate) const POLICY: &str = r#"
name = "pol"
[host]
protect = true
br_netfilter = "on"
[bridges.br0]
address = "10.10.0.1/24"
masquerade = true
isolate = true
egress = "deny"
[namespaces.app]
bridge = "br0"
[namespaces.db]
bridge = "br0"
[namespaces.tool]
bridge = "br0"
[[allow]]
from = "app"
to = "db"
ports = ["tcp/5432"]
[[allow]]
from = "br0"
to = "203.0.113.0/24"
ports = ["tcp/443", "icmp"]
[[allow]]
from = "tool"
to = "host"
ports = ["tcp/22"]
[[deny]]
from = "tool"
to = "db"
"#;

/// An impaired link.
pub(crate) const IMPAIRED: &str = r#"
name = "slow"
[bridges.br0]
address = "10.10.0.1/24"
[namespaces.far]
bridge = "br0"
latency = "20ms"
loss = "1%"
"#;

/// The files beside the shipped rulesets, by name.
pub(crate) const MORE: [(&str, &str); 5] = [
    ("routed", ROUTED),
    ("dual", DUAL),
    ("pub", PUBLISH),
    ("pol", POLICY),
    ("slow", IMPAIRED),
];

/// The topology of `text`, as if read from NAME.toml.
pub(crate) fn topology(name: &str, text: &str) -> Topology {
    topology::parse(text, Path::new(&format!("{name}.toml")))
        .unwrap_or_else(|e| panic!("{name}.toml does not parse: {e}"))
}

/// A shipped ruleset's topology.
pub(crate) fn ruleset(name: &str) -> Topology {
    let text = RULESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no ruleset {name}"));
    topology(name, text)
}

fn golden_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(rel)
}

/// `actual` must equal the golden file tests/golden/`rel`. With NSFW_BLESS=1 in the
/// environment the file is written instead: review its diff before committing it.
pub(crate) fn golden(rel: &str, actual: &str) {
    let path = golden_path(rel);
    if std::env::var_os("NSFW_BLESS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("golden dir");
        }
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (NSFW_BLESS=1 writes it)", path.display()));
    if want != actual {
        let (w, a): (Vec<&str>, Vec<&str>) = (want.lines().collect(), actual.lines().collect());
        let at = w
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(w.len().min(a.len()));
        panic!(
            "{} differs at line {}:\n  golden: {:?}\n  now:    {:?}\n--- now, whole:\n{actual}",
            path.display(),
            at + 1,
            w.get(at),
            a.get(at)
        );
    }
}

/// A directory of its own for one test's record, removed with it.
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
    pub(crate) fd: OwnedFd,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("nsfw-unit-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        let fd = OwnedFd::from(std::fs::File::open(&path).expect("open scratch dir"));
        Scratch { path, fd }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A table as a dump would give it back: rules as nft's encoding of them raises again,
/// elements in canonical kernel form (`Dumped::of`).
pub(crate) fn read_back(t: &nft::Table) -> anyhow::Result<nft::dump::Dumped> {
    let mut t = t.clone();
    let sets = t.sets.clone();
    for c in &mut t.chains {
        for r in &mut c.rules {
            *r = nft::diff::canonical_rule(r, t.family, &sets);
        }
    }
    nft::dump::Dumped::of(t).map_err(|e| anyhow::anyhow!("{e}"))
}
