//! The network configuration on stdin (SPEC.md section 1 and 3): nsfw's keys, the reference
//! `bridge` plugin's keys it accepts so that a conflist can swap one for the other, the
//! capabilities (`runtimeConfig`: portMappings, ips, mac), `prevResult` and GC's
//! `cni.dev/valid-attachments`. Undecodable JSON is error 6, a wrong value error 7, an
//! unknown key error 2, a version nsfw does not speak error 1.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde_json::{Map, Value};

use super::error::{CniError, CniResult, code};
use crate::topology::Mac;

/// The versions nsfw speaks, oldest first. 0.4.0 configs are accepted (results carry the
/// `version` of each IP, as 0.4.0 wants); GC and STATUS need 1.1.0.
pub(crate) const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// Keys of the reference `bridge` plugin nsfw accepts and ignores (what they ask for is what
/// nsfw does anyway, or does not apply): a conflist can replace `bridge` by `nsfw` unchanged.
const BRIDGE_KEYS: [&str; 9] = [
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "hairpinMode",
    "promiscMode",
    "enabledad",
    "macspoofchk",
    "ipMasqBackend",
    "vlan",
];

/// A published port: `hostIP:hostPort → containerPort/protocol`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortMap {
    /// IP protocol number: tcp 6, udp 17, sctp 132.
    pub proto: u8,
    pub host_port: u16,
    pub container_port: u16,
    /// Only on this host address (None: every address of the host).
    pub host_ip: Option<Ipv4Addr>,
}

/// One attachment GC must keep.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Clone, Debug)]
pub(crate) struct NetConf {
    pub version: String,
    pub name: String,
    pub bridge: String,
    /// nsfw hands out addresses of this subnet itself (no IPAM plugin).
    pub subnet: Option<Ipv4Network>,
    /// The IPAM plugin's name (`ipam.type`), when addresses come from one.
    pub ipam: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    pub masquerade: bool,
    pub isolate: bool,
    pub mtu: u32,
    /// `dns`, passed on into the result when the IPAM plugin gives none.
    pub dns: Option<Value>,
    pub ports: Vec<PortMap>,
    /// Addresses asked for (`runtimeConfig.ips`, `args.cni.ips`, CNI_ARGS `IP`).
    pub ips: Vec<Ipv4Addr>,
    pub mac: Option<Mac>,
    pub prev_result: Option<Value>,
    /// `capabilities` exactly `{"ips": true}` and an address asked for in `CNI_ARGS`: what
    /// podman 4 sends with `--ip` to a first plugin that does not declare `ips` — it replaces
    /// the plugin's own capabilities, so `portMappings` is no longer declared and libcni drops
    /// the mappings on the way.
    pub caps_replaced: bool,
    /// GC only.
    pub valid: Vec<Attachment>,
    /// The bytes as they came, for the IPAM plugin (it gets the whole configuration).
    pub raw: Vec<u8>,
}

/// (major, minor, patch) of a version string; None when it is not one.
pub(crate) fn semver(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
    let v = (it.next()??, it.next()??, it.next().unwrap_or(Some(0))?);
    it.next().is_none().then_some(v)
}

/// Whether `v` is at least `min`.
pub(crate) fn at_least(v: &str, min: &str) -> bool {
    matches!((semver(v), semver(min)), (Some(a), Some(b)) if a >= b)
}

/// The `cniVersion` of a document, when it has one (for the error object's own version).
pub(crate) fn version_of(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// A network name: alphanumeric first, then alphanumerics, `_`, `.`, `-` (the spec's rule). nsfw
/// bounds the length so that `nsfw_cni_<name>` stays a short table name.
pub(crate) fn valid_network_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.len() <= 64
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

fn bad(key: &str, v: &Value, why: &str) -> CniError {
    CniError::config(format!("{key} = {v}: {why}"))
}

fn string(key: &str, v: &Value) -> CniResult<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(key, v, "must be a string"))
}

fn boolean(key: &str, v: &Value) -> CniResult<bool> {
    v.as_bool()
        .ok_or_else(|| bad(key, v, "must be true or false"))
}

fn ipv4(key: &str, v: &Value) -> CniResult<Ipv4Addr> {
    string(key, v)?
        .parse()
        .map_err(|_| bad(key, v, "must be an IPv4 address"))
}

/// An address, with or without a prefix length (`10.88.0.5/16` or `10.88.0.5`).
fn ipv4_maybe_prefix(key: &str, v: &Value) -> CniResult<Ipv4Addr> {
    let s = string(key, v)?;
    let a = s.split('/').next().unwrap_or_default();
    a.parse().map_err(|_| {
        bad(
            key,
            v,
            "must be an IPv4 address (nsfw's CNI mode is IPv4 only)",
        )
    })
}

fn port(key: &str, v: &Value) -> CniResult<u16> {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| bad(key, v, "must be a port, 1-65535"))
}

fn port_maps(v: &Value) -> CniResult<Vec<PortMap>> {
    let key = "runtimeConfig.portMappings";
    let list = v.as_array().ok_or_else(|| bad(key, v, "must be a list"))?;
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let k = |f: &str| format!("{key}[{i}].{f}");
        let proto = match m
            .get("protocol")
            .map(|p| string(&k("protocol"), p))
            .transpose()?
        {
            None => 6,
            Some(p) => match p.to_ascii_lowercase().as_str() {
                "" | "tcp" => 6,
                "udp" => 17,
                "sctp" => 132,
                _ => return Err(bad(&k("protocol"), &m["protocol"], "tcp, udp or sctp")),
            },
        };
        let host_ip = match m.get("hostIP").and_then(Value::as_str) {
            None | Some("") | Some("0.0.0.0") => None,
            Some(s) => match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => Some(a),
                // IPv6 host addresses (Kubernetes sends both families): nsfw publishes
                // IPv4 only, so the IPv6 half is left out rather than failing the pod.
                Ok(std::net::IpAddr::V6(_)) => continue,
                Err(_) => return Err(bad(&k("hostIP"), &m["hostIP"], "not an address")),
            },
        };
        out.push(PortMap {
            proto,
            host_port: port(&k("hostPort"), m.get("hostPort").unwrap_or(&Value::Null))?,
            container_port: port(
                &k("containerPort"),
                m.get("containerPort").unwrap_or(&Value::Null),
            )?,
            host_ip,
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn attachments(v: &Value) -> CniResult<Vec<Attachment>> {
    let key = "cni.dev/valid-attachments";
    let list = v.as_array().ok_or_else(|| bad(key, v, "must be a list"))?;
    list.iter()
        .map(|a| {
            let get = |f: &str| {
                a.get(f)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| bad(key, a, &format!("each entry needs a string {f}")))
            };
            Ok(Attachment {
                container_id: get("containerID")?,
                ifname: get("ifname")?,
            })
        })
        .collect()
}

/// Reads and checks the whole configuration. `cni_args` is CNI_ARGS (its `IP` and `MAC`).
pub(crate) fn parse(bytes: &[u8], cni_args: &[(String, String)]) -> CniResult<NetConf> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            code::DECODING,
            format!("the network configuration on stdin is not JSON: {e}"),
        )
    })?;
    let Some(o) = v.as_object() else {
        return Err(CniError::new(
            code::DECODING,
            "the network configuration on stdin is not a JSON object",
        ));
    };
    let version = match o.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(CniError::config("cniVersion is missing or not a string")),
    };
    if !SUPPORTED.contains(&version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("nsfw does not speak CNI {version}"),
        )
        .with_details(format!("supported versions: {}", SUPPORTED.join(", "))));
    }
    parse_object(o, version, bytes, cni_args)
}

fn parse_object(
    o: &Map<String, Value>,
    version: String,
    bytes: &[u8],
    cni_args: &[(String, String)],
) -> CniResult<NetConf> {
    let name = match o.get("name") {
        Some(n) => string("name", n)?,
        None => return Err(CniError::config("name is missing")),
    };
    if !valid_network_name(&name) {
        return Err(bad(
            "name",
            &o["name"],
            "1-64 of alphanumerics, '_', '.', '-', starting with an alphanumeric",
        ));
    }
    let mut c = NetConf {
        version,
        bridge: String::new(),
        name,
        subnet: None,
        ipam: None,
        gateway: None,
        masquerade: true,
        isolate: false,
        mtu: 1500,
        dns: None,
        ports: Vec::new(),
        ips: Vec::new(),
        mac: None,
        prev_result: None,
        caps_replaced: false,
        valid: Vec::new(),
        raw: bytes.to_vec(),
    };
    let mut masq: Option<bool> = None;
    let mut ip_masq: Option<bool> = None;
    for (k, v) in o {
        match k.as_str() {
            "cniVersion" | "name" | "type" | "capabilities" | "cniVersions" => {}
            "bridge" => {
                let b = string(k, v)?;
                crate::topology::check_ifname(&b).map_err(|why| bad(k, v, &why))?;
                c.bridge = b;
            }
            "subnet" => c.subnet = Some(subnet(k, v)?),
            "ipam" => c.ipam = ipam(k, v)?,
            "gateway" => c.gateway = Some(ipv4(k, v)?),
            "masquerade" => masq = Some(boolean(k, v)?),
            "ipMasq" => ip_masq = Some(boolean(k, v)?),
            "isolate" | "portIsolation" => c.isolate |= boolean(k, v)?,
            "mtu" => {
                c.mtu = v
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| bad(k, v, "must be 68-65535"))?
            }
            "dns" => c.dns = Some(v.clone()),
            "prevResult" => c.prev_result = Some(v.clone()),
            "cni.dev/valid-attachments" => c.valid = attachments(v)?,
            "runtimeConfig" => runtime_config(&mut c, v)?,
            "args" => args(&mut c, v)?,
            k if BRIDGE_KEYS.contains(&k) || k.starts_with("cni.dev/") => {}
            _ => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    format!("unsupported field {k} = {v} in the network configuration"),
                )
                .with_details("docs/cni.md lists the keys nsfw reads"));
            }
        }
    }
    c.masquerade = masq.or(ip_masq).unwrap_or(true);
    from_cni_args(&mut c, cni_args)?;
    c.caps_replaced = caps_replaced(o, cni_args) && c.ports.is_empty();
    if c.bridge.is_empty() {
        let b = format!("nsfw-{}", c.name);
        if crate::topology::check_ifname(&b).is_err() {
            return Err(CniError::config(format!(
                "bridge is not set and the default {b:?} is not an interface name; set bridge"
            )));
        }
        c.bridge = b;
    }
    Ok(c)
}

/// Whether the capabilities are podman's replacement (see `NetConf::caps_replaced`).
fn caps_replaced(o: &Map<String, Value>, cni_args: &[(String, String)]) -> bool {
    let only_ips = o
        .get("capabilities")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() == 1 && m.get("ips") == Some(&Value::Bool(true)));
    only_ips && cni_args.iter().any(|(k, _)| k == "IP")
}

/// `subnet`: an IPv4 network of at least 4 addresses, normalised.
fn subnet(k: &str, v: &Value) -> CniResult<Ipv4Network> {
    let s = string(k, v)?;
    let n: Ipv4Network = s
        .parse()
        .map_err(|_| bad(k, v, "must be an IPv4 network (10.88.0.0/16)"))?;
    if n.prefix() > 30 {
        return Err(bad(k, v, "too small: at most /30"));
    }
    Ipv4Network::new(n.network(), n.prefix()).map_err(|e| bad(k, v, &e.to_string()))
}

/// `ipam`: the plugin's type (None: no plugin).
fn ipam(k: &str, v: &Value) -> CniResult<Option<String>> {
    let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
    // An empty ipam object is what some tools write for "none".
    if !t.is_empty() {
        if t.contains('/') {
            return Err(bad("ipam.type", &v["type"], "a plugin name, not a path"));
        }
        return Ok(Some(t.to_string()));
    }
    if v.as_object().is_some_and(|m| !m.is_empty()) {
        return Err(bad(k, v, "needs a type (host-local, static, ...)"));
    }
    Ok(None)
}

/// `args.cni`: the addresses and MAC a runtime asks for.
fn args(c: &mut NetConf, v: &Value) -> CniResult<()> {
    if let Some(cni) = v.get("cni") {
        if let Some(ips) = cni.get("ips").and_then(Value::as_array) {
            for i in ips {
                c.ips.push(ipv4_maybe_prefix("args.cni.ips", i)?);
            }
        }
        if let Some(m) = cni.get("mac") {
            c.mac = Some(mac("args.cni.mac", m)?);
        }
    }
    Ok(())
}

/// `CNI_ARGS`' IP and MAC.
fn from_cni_args(c: &mut NetConf, cni_args: &[(String, String)]) -> CniResult<()> {
    for (k, v) in cni_args {
        match k.as_str() {
            "IP" => c
                .ips
                .push(ipv4_maybe_prefix("CNI_ARGS IP", &Value::String(v.clone()))?),
            "MAC" => c.mac = Some(mac("CNI_ARGS MAC", &Value::String(v.clone()))?),
            _ => {}
        }
    }
    Ok(())
}

fn mac(key: &str, v: &Value) -> CniResult<Mac> {
    let s = string(key, v)?;
    crate::topology::parse_mac(&s).map_err(|why| bad(key, v, &why))
}

fn runtime_config(c: &mut NetConf, v: &Value) -> CniResult<()> {
    let Some(o) = v.as_object() else {
        return Err(bad("runtimeConfig", v, "must be an object"));
    };
    for (k, v) in o {
        match k.as_str() {
            "portMappings" => c.ports = port_maps(v)?,
            "ips" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| bad("runtimeConfig.ips", v, "must be a list"))?;
                for i in list {
                    c.ips.push(ipv4_maybe_prefix("runtimeConfig.ips", i)?);
                }
            }
            "mac" => c.mac = Some(mac("runtimeConfig.mac", v)?),
            // Other capabilities nsfw did not declare: the runtime should not send them,
            // and they change nothing here.
            _ => {}
        }
    }
    Ok(())
}

impl NetConf {
    /// Checks what an address-handing command (ADD) needs.
    pub(crate) fn need_addresses(&self) -> CniResult<()> {
        if self.caps_replaced {
            return Err(CniError::config(
                "capabilities = {\"ips\": true} alone, with CNI_ARGS IP: podman replaces the capabilities of a conflist's first plugin so when a container has --ip and the plugin does not declare ips, and any port mappings (-p) are lost on the way; declare \"capabilities\": {\"portMappings\": true, \"ips\": true} in the conflist (docs/cni.md)",
            ));
        }
        match (&self.subnet, &self.ipam) {
            (Some(_), Some(_)) => Err(CniError::config(
                "subnet and ipam are both set: nsfw hands out addresses of subnet itself, or asks the IPAM plugin; pick one",
            )),
            (None, None) => Err(CniError::config(
                "neither subnet nor ipam is set: nsfw needs one to give the container an address",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CniResult<NetConf> {
        parse(s.as_bytes(), &[])
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        assert_eq!(p("{not json").unwrap_err().code, code::DECODING);
        assert_eq!(
            p(r#"{"cniVersion":"9.9.9","name":"n"}"#).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            p(r#"{"cniVersion":"1.0.0","name":"n","mtu":5}"#)
                .unwrap_err()
                .code,
            code::INVALID_CONFIG
        );
        let e = p(r#"{"cniVersion":"1.0.0","name":"n","frobnicate":1}"#).unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert!(e.msg.contains("frobnicate"), "{e}");
    }

    #[test]
    fn bridge_keys_and_capabilities_are_read() {
        let c = p(
            r#"{"cniVersion":"1.1.0","name":"lab.net","type":"nsfw","isGateway":true,
            "ipMasq":false,"ipam":{"type":"host-local"},
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                {"hostPort":80,"containerPort":80,"hostIP":"::1"}],
                "mac":"02:00:00:00:00:09","ips":["10.88.0.9/16"]}}"#,
        )
        .expect("valid test input");
        assert_eq!(c.bridge, "nsfw-lab.net");
        assert!(!c.masquerade);
        assert_eq!(c.ipam.as_deref(), Some("host-local"));
        assert_eq!(c.ports.len(), 2, "the IPv6 mapping is left out");
        assert_eq!(c.ips, vec![Ipv4Addr::new(10, 88, 0, 9)]);
        assert!(c.mac.is_some());
    }

    #[test]
    fn podmans_replaced_capabilities_are_refused() {
        let with = |caps: &str, args: &[(String, String)]| {
            parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"n","subnet":"10.1.0.0/24","capabilities":{caps}}}"#)
                    .as_bytes(),
                args,
            )
            .expect("valid test input")
        };
        let ip = [("IP".to_string(), "10.1.0.7".to_string())];
        let e = with(r#"{"ips":true}"#, &ip).need_addresses().unwrap_err();
        assert!(e.msg.contains("portMappings"), "{e}");
        assert!(
            with(r#"{"ips":true,"portMappings":true}"#, &ip)
                .need_addresses()
                .is_ok()
        );
        assert!(with(r#"{"ips":true}"#, &[]).need_addresses().is_ok());
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert!(at_least("1.1.0", "1.1.0"));
        assert!(at_least("1.10.0", "1.2.0"));
        assert!(!at_least("0.4.0", "1.0.0"));
        assert!(!at_least("x", "1.0.0"));
    }
}
