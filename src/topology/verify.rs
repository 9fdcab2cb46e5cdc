//! `[verify] targets = ["203.0.113.10:443", "[2001:db8::10]:443"]`: services out in the world
//! that `nsfw verify` connects to (TCP) from the namespaces, to check egress on a live host.
//! No default: nsfw never picks an outside address of its own.

use std::net::{IpAddr, SocketAddr};

use toml::Table;

use super::syntax::{Ctx, join};

/// What `[verify]` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verify {
    /// TCP services the namespaces should reach (or not, as the policy says).
    pub targets: Vec<SocketAddr>,
}

fn parse_target(s: &str) -> Result<SocketAddr, String> {
    let usage = "a target is ADDRESS:PORT, an IPv6 address in brackets ([2001:db8::1]:443)";
    let a: SocketAddr = s.parse().map_err(|_| usage.to_string())?;
    if a.port() == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    let ip = a.ip();
    let unusable = match ip {
        IpAddr::V4(v) => v.is_unspecified() || v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
    };
    if unusable {
        return Err(format!("{ip} is not an address a connection can go to"));
    }
    Ok(a)
}

/// Reads `[verify]` (absent: no targets).
pub(super) fn read(cx: &mut Ctx, root: &Table) -> Verify {
    let mut v = Verify::default();
    let Some(t) = cx.table(root, "", "verify") else {
        return v;
    };
    cx.unknown_keys(t, "verify", &["targets"]);
    for (s, item) in cx.strings(t, "verify", "targets") {
        match parse_target(&s) {
            Ok(a) if v.targets.contains(&a) => {
                cx.err(&join("verify", "targets"), Some(item), "named twice");
            }
            Ok(a) => v.targets.push(a),
            Err(why) => cx.err(&join("verify", "targets"), Some(item), why),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn errs(text: &str) -> Vec<String> {
        match crate::topology::parse(text, Path::new("t.toml")) {
            Ok(_) => vec![],
            Err(e) => e.0,
        }
    }

    #[test]
    fn targets_are_address_and_port() {
        let t = crate::topology::parse(
            "name='x'\n[verify]\ntargets=['203.0.113.10:443', '[2001:db8::10]:80']\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        assert_eq!(t.verify.targets.len(), 2);
        assert_eq!(t.verify.targets[1].port(), 80);
        let e = errs("name='x'\n[verify]\ntargets=['203.0.113.10', '0.0.0.0:1']\nbogus=1\n");
        assert!(
            e.iter()
                .any(|m| m.contains("verify.targets = \"203.0.113.10\": a target is ADDRESS:PORT")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("\"0.0.0.0:1\"")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("t.toml: verify.bogus = 1: unknown key")),
            "{e:?}"
        );
    }
}
