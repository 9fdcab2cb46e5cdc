//! Addresses: from the IPAM plugin `ipam.type` names (host-local, static, ...), executed from
//! `CNI_PATH` with the same environment and the whole configuration on stdin, as SPEC.md
//! section 4 requires — the one process nsfw ever spawns — or, with `subnet`, handed out by
//! nsfw itself from what the network's table holds (no lease file: the kernel is the state).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnetwork::Ipv4Network;
use serde_json::Value;

use super::config::{NetConf, semver};
use super::env::Env;
use super::error::{CniError, CniResult, code};

/// What the container gets: its address (with the subnet's prefix), gateway, routes, DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Lease {
    pub addr: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// (destination, gateway): None routes through the lease's gateway.
    pub routes: Vec<(Ipv4Network, Option<Ipv4Addr>)>,
    pub dns: Option<Value>,
}

impl Lease {
    /// The subnet the address is in.
    pub(super) fn subnet(&self) -> Ipv4Network {
        Ipv4Network::new(self.addr.network(), self.addr.prefix()).unwrap_or(self.addr)
    }

    /// The host's address on the bridge: the gateway with the subnet's prefix.
    pub(super) fn gateway_net(&self) -> Ipv4Network {
        Ipv4Network::new(self.gateway, self.addr.prefix()).unwrap_or(self.addr)
    }
}

fn plugin_path(env: &Env, name: &str) -> CniResult<PathBuf> {
    for dir in &env.path {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(CniError::config(format!(
        "ipam.type = {name:?}: no such plugin in CNI_PATH ({})",
        env.path.join(":")
    )))
}

/// Runs the IPAM plugin with `command`; `attachment` overrides CNI_CONTAINERID and
/// CNI_IFNAME (GC releases the leases of other containers than the caller's). Its stderr is
/// nsfw's; its result or error object comes back parsed.
///
/// A 1.1.0 configuration an older plugin refuses as an incompatible version (Debian 12's
/// host-local speaks up to 1.0.0) is given again as 1.0.0 for ADD, DEL and CHECK: those and
/// their results are the same in both, and a network needs 1.1.0 for GC and STATUS.
pub(super) fn exec(
    c: &NetConf,
    env: &Env,
    command: &str,
    attachment: Option<(&str, &str)>,
    stdin: &[u8],
) -> CniResult<Option<Value>> {
    match exec_once(c, env, command, attachment, stdin) {
        Err(e)
            if e.code == code::INCOMPATIBLE_VERSION
                && c.version == "1.1.0"
                && matches!(command, "ADD" | "DEL" | "CHECK") =>
        {
            let mut v: Value = serde_json::from_slice(stdin).map_err(|_| e.clone())?;
            v["cniVersion"] = Value::String("1.0.0".into());
            let older = v.to_string();
            let mut r = exec_once(c, env, command, attachment, older.as_bytes())?;
            if let Some(Value::Object(o)) = &mut r {
                o.insert("cniVersion".into(), Value::String(c.version.clone()));
            }
            Ok(r)
        }
        r => r,
    }
}

fn exec_once(
    c: &NetConf,
    env: &Env,
    command: &str,
    attachment: Option<(&str, &str)>,
    stdin: &[u8],
) -> CniResult<Option<Value>> {
    let Some(name) = &c.ipam else {
        return Ok(None);
    };
    let path = plugin_path(env, name)?;
    let mut cmd = Command::new(&path);
    cmd.env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some((ct, ifname)) = attachment {
        cmd.env("CNI_CONTAINERID", ct)
            .env("CNI_IFNAME", ifname)
            .env_remove("CNI_NETNS");
    }
    let fail = |e: std::io::Error| {
        CniError::new(
            code::IPAM,
            format!("cannot run the IPAM plugin {}: {e}", path.display()),
        )
    };
    let mut child = cmd.spawn().map_err(fail)?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that exits without reading its input closes the pipe: its exit status
        // says what happened.
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(fail)?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let (c, msg, details) = match &parsed {
            Some(v) => (
                v["code"].as_u64().and_then(|c| u32::try_from(c).ok()),
                v["msg"].as_str().unwrap_or("").to_string(),
                v["details"].as_str().unwrap_or("").to_string(),
            ),
            None => (
                None,
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                String::new(),
            ),
        };
        return Err(CniError::new(
            c.unwrap_or(code::IPAM),
            format!("IPAM plugin {name} ({command}): {msg}"),
        )
        .with_details(details));
    }
    Ok(parsed)
}

/// The IPAM plugin's ADD result as a lease. IPv6 addresses are refused (nsfw's CNI mode is
/// IPv4): the caller releases the lease.
pub(super) fn lease_of(c: &NetConf, v: &Value) -> CniResult<Lease> {
    let bad = |why: String| CniError::new(code::IPAM, why).with_details(v.to_string());
    let ips = v["ips"].as_array().cloned().unwrap_or_default();
    let mut found: Option<(Ipv4Network, Option<Ipv4Addr>)> = None;
    for ip in &ips {
        let a = ip["address"].as_str().unwrap_or_default();
        match a.parse::<ipnetwork::IpNetwork>() {
            Ok(ipnetwork::IpNetwork::V4(n)) if found.is_none() => {
                let gw = ip["gateway"].as_str().and_then(|g| g.parse().ok());
                found = Some((n, gw));
            }
            Ok(ipnetwork::IpNetwork::V4(n)) => {
                return Err(bad(format!(
                    "the IPAM plugin gave a second IPv4 address ({n}); nsfw gives a container one"
                )));
            }
            Ok(ipnetwork::IpNetwork::V6(n)) => {
                return Err(CniError::config(format!(
                    "the IPAM plugin gave IPv6 address {n}: nsfw's CNI mode is IPv4 only; drop the IPv6 range from ipam"
                )));
            }
            Err(_) => return Err(bad(format!("an address nsfw cannot read: {a:?}"))),
        }
    }
    let Some((addr, gw)) = found else {
        return Err(bad("the IPAM plugin gave no IPv4 address".into()));
    };
    let subnet = Ipv4Network::new(addr.network(), addr.prefix()).map_err(|e| bad(e.to_string()))?;
    let gateway = c
        .gateway
        .or(gw)
        .or_else(|| subnet.nth(1))
        .ok_or_else(|| bad(format!("no gateway in {subnet}")))?;
    let mut routes = Vec::new();
    for r in v["routes"].as_array().cloned().unwrap_or_default() {
        match r["dst"]
            .as_str()
            .and_then(|d| d.parse::<ipnetwork::IpNetwork>().ok())
        {
            Some(ipnetwork::IpNetwork::V4(d)) => {
                let gw = r["gw"].as_str().and_then(|g| g.parse().ok());
                routes.push((d, gw));
            }
            // IPv6 routes have no IPv6 address to go with.
            Some(ipnetwork::IpNetwork::V6(_)) => {}
            None => return Err(bad(format!("a route nsfw cannot read: {r}"))),
        }
    }
    if routes.is_empty() {
        routes.push((default_net(), None));
    }
    let dns = v
        .get("dns")
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()));
    Ok(Lease {
        addr,
        gateway,
        routes,
        dns: dns.cloned().or_else(|| c.dns.clone()),
    })
}

/// 0.0.0.0/0 (a prefix of 0 is always valid; the fallback only satisfies the type).
fn default_net() -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or(Ipv4Network::from(Ipv4Addr::UNSPECIFIED))
}

/// nsfw's own allocation from `subnet`: an address asked for (`ips`), or the lowest one that
/// is neither the network, the gateway, the broadcast address nor in `used` (the addresses
/// the network's table holds: the attached containers'). Runs under the lock.
pub(super) fn allocate(c: &NetConf, subnet: Ipv4Network, used: &[Ipv4Addr]) -> CniResult<Lease> {
    let gateway = c
        .gateway
        .or_else(|| subnet.nth(1))
        .ok_or_else(|| CniError::config(format!("subnet {subnet} has no room for a gateway")))?;
    if !subnet.contains(gateway) {
        return Err(CniError::config(format!(
            "gateway {gateway} is not in subnet {subnet}"
        )));
    }
    let usable = |a: Ipv4Addr| {
        a != subnet.network() && a != subnet.broadcast() && a != gateway && subnet.contains(a)
    };
    let addr = if let Some(want) = c.ips.first() {
        if !usable(*want) {
            return Err(CniError::config(format!(
                "the address asked for, {want}, is not a usable address of subnet {subnet} (gateway {gateway})"
            )));
        }
        if used.contains(want) {
            return Err(CniError::new(
                code::CONFLICT,
                format!("the address asked for, {want}, is taken by another container"),
            ));
        }
        *want
    } else {
        let taken: std::collections::BTreeSet<u32> = used.iter().map(|a| u32::from(*a)).collect();
        let (lo, hi) = (u32::from(subnet.network()), u32::from(subnet.broadcast()));
        (lo + 1..hi)
            .map(Ipv4Addr::from)
            .find(|a| usable(*a) && !taken.contains(&u32::from(*a)))
            .ok_or_else(|| {
                CniError::new(
                    code::TRY_AGAIN,
                    format!("no free address left in subnet {subnet}"),
                )
            })?
    };
    Ok(Lease {
        addr: Ipv4Network::new(addr, subnet.prefix())
            .map_err(|e| CniError::config(e.to_string()))?,
        gateway,
        routes: vec![(default_net(), None)],
        dns: c.dns.clone(),
    })
}

/// Whether the IPAM plugin speaks `version` (asked with VERSION), for commands only newer
/// plugins know (GC, STATUS).
pub(super) fn speaks(c: &NetConf, env: &Env, version: &str) -> bool {
    let Some(want) = semver(version) else {
        return false;
    };
    let probe = serde_json::json!({"cniVersion": c.version}).to_string();
    match exec(c, env, "VERSION", None, probe.as_bytes()) {
        Ok(Some(v)) => v["supportedVersions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s.as_str().and_then(semver) == Some(want))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: &str) -> NetConf {
        super::super::config::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n","subnet":"10.88.0.0/29"{extra}}}"#)
                .as_bytes(),
            &[],
        )
        .expect("valid test input")
    }

    #[test]
    fn allocation_skips_the_taken_and_the_reserved() {
        let c = conf("");
        let s = c.subnet.expect("valid test input");
        let l = allocate(&c, s, &[]).expect("valid test input");
        assert_eq!(l.addr.to_string(), "10.88.0.2/29");
        assert_eq!(l.gateway, Ipv4Addr::new(10, 88, 0, 1));
        let used: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 88, 0, i)).collect();
        assert_eq!(allocate(&c, s, &used).unwrap_err().code, code::TRY_AGAIN);
        let asked = conf(r#","runtimeConfig":{"ips":["10.88.0.5/29"]}"#);
        assert_eq!(
            allocate(&asked, s, &[])
                .expect("valid test input")
                .addr
                .to_string(),
            "10.88.0.5/29"
        );
        assert_eq!(
            allocate(&asked, s, &[Ipv4Addr::new(10, 88, 0, 5)])
                .unwrap_err()
                .code,
            code::CONFLICT
        );
    }

    #[test]
    fn ipam_results_become_leases() {
        let c = conf("");
        let v: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.89.0.7/24","gateway":"10.89.0.1"}],
                "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        )
        .expect("valid test input");
        let l = lease_of(&c, &v).expect("valid test input");
        assert_eq!(l.gateway_net().to_string(), "10.89.0.1/24");
        assert_eq!(l.subnet().to_string(), "10.89.0.0/24");
        assert_eq!(l.routes, vec![(default_net(), None)]);
        let v6: Value = serde_json::from_str(r#"{"ips":[{"address":"fd00::2/64"}]}"#)
            .expect("valid test input");
        assert_eq!(lease_of(&c, &v6).unwrap_err().code, code::INVALID_CONFIG);
    }
}
