//! The CNI parameters, from the environment (SPEC.md, "Parameters"): which of them each command
//! requires, and their syntax. A missing or malformed one is error 4 naming it.

use super::error::{CniError, CniResult};

/// The CNI commands nsfw speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub(crate) fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

/// The parameters of one invocation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    pub container_id: String,
    /// A path to the container's network namespace (`/run/netns/x`, `/proc/PID/ns/net`).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`, `K=V;K=V`.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`: where the IPAM plugin is looked for.
    pub path: Vec<String>,
}

/// A container ID, per the spec: alphanumeric first, then alphanumerics, `_`, `.`, `-`.
/// nsfw also bounds its length: it travels in link aliases and element comments.
pub(crate) fn valid_container_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.len() <= 128
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '_' | '.' | '-'))
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Env {
    /// Reads the parameters `cmd` needs; every missing or malformed one is named in one error.
    pub(crate) fn read(cmd: Command) -> CniResult<Env> {
        let mut bad: Vec<String> = Vec::new();
        let attachment = matches!(cmd, Command::Add | Command::Del | Command::Check);
        let need = |n: &str, required: bool, bad: &mut Vec<String>| -> String {
            match var(n) {
                Some(v) => v,
                None => {
                    if required {
                        bad.push(format!("{n} (missing)"));
                    }
                    String::new()
                }
            }
        };
        let container_id = need("CNI_CONTAINERID", attachment, &mut bad);
        if !container_id.is_empty() && !valid_container_id(&container_id) {
            bad.push(format!(
                "CNI_CONTAINERID={container_id:?} (alphanumerics, '_', '.', '-', starting with an alphanumeric, at most 128)"
            ));
        }
        // DEL may come after the namespace is gone: CNI_NETNS is optional there.
        let netns = need(
            "CNI_NETNS",
            matches!(cmd, Command::Add | Command::Check),
            &mut bad,
        );
        let ifname = need("CNI_IFNAME", attachment, &mut bad);
        if !ifname.is_empty()
            && let Err(why) = crate::topology::check_ifname(&ifname)
        {
            bad.push(format!("CNI_IFNAME={ifname:?} ({why})"));
        }
        let path = need("CNI_PATH", cmd == Command::Gc, &mut bad);
        let mut args = Vec::new();
        if let Some(a) = var("CNI_ARGS") {
            for kv in a.split(';').filter(|s| !s.is_empty()) {
                match kv.split_once('=') {
                    Some((k, v)) => args.push((k.to_string(), v.to_string())),
                    None => bad.push(format!("CNI_ARGS: {kv:?} is not KEY=VALUE")),
                }
            }
        }
        if !bad.is_empty() {
            return Err(CniError::env(format!(
                "invalid environment variables: {}",
                bad.join(", ")
            )));
        }
        Ok(Env {
            container_id,
            netns,
            ifname,
            args,
            path: path
                .split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}
