//! `nsfw try` (the topology in a throwaway sandbox, checked), `nsfw verify` (the checks
//! against the live topology) and the hidden `nsfw sandbox` the tests use.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::probe;
use crate::sandbox;
use crate::state::{self, Access};
use crate::topology::{self, Topology};
use crate::{error, say};

use super::{ERR, Fail, OK, load, report, require_root};

/// The lab `nsfw try` builds when given no file.
pub(super) const EMBEDDED_LAB: &str = include_str!("../../rulesets/lab.toml");
const EMBEDDED_LAB_NAME: &str = "rulesets/lab.toml (embedded)";

/// Why a check from a namespace that should have got through did not, as `nsfw doctor` reads
/// the other tables: the rules that drop it. Empty when it passed, or nothing was found.
fn diagnose(
    t: &Topology,
    d: &mut Option<anyhow::Result<crate::doctor::Diagnosis>>,
    o: &probe::Outcome,
) -> Vec<String> {
    let c = &o.check;
    let (probe::Origin::Ns(ns), true, Ok(false)) = (&c.from, c.expect, &o.got) else {
        return Vec::new();
    };
    let Some(i) = t
        .namespaces
        .iter()
        .find(|n| &n.name == ns)
        .and_then(|n| n.primary())
    else {
        return Vec::new();
    };
    let from = match c.to {
        std::net::IpAddr::V4(_) => Some(std::net::IpAddr::V4(i.address.ip())),
        std::net::IpAddr::V6(_) => i.address6.map(|a| std::net::IpAddr::V6(a.ip())),
    };
    let Some(from) = from else {
        return Vec::new();
    };
    let l4 = match &c.probe {
        probe::Probe::Ping if c.to.is_ipv6() => (58, 0),
        probe::Probe::Ping | probe::Probe::Slow(_) | probe::Probe::Full(_) => (1, 0),
        probe::Probe::Tcp(p) | probe::Probe::Connect(p) => (6, *p),
        probe::Probe::Rate(_, p) => (6, p.ports.first().copied().unwrap_or(0)),
        probe::Probe::Seen { proto, port, .. } => (proto.number(), *port),
    };
    // The ruleset is read once, at the first failure.
    match d.get_or_insert_with(crate::doctor::Diagnosis::read) {
        Ok(d) => d.why(t, &i.bridge, from, c.to, l4),
        Err(e) => vec![format!("cannot read the other tables to say why: {e:#}")],
    }
}

fn run_checks(t: &Topology, checks: &[probe::Check], json: bool, live: bool) -> u8 {
    let routers: std::collections::BTreeSet<String> = t
        .namespaces
        .iter()
        .filter(|n| n.forward)
        .map(|n| n.name.clone())
        .collect();
    let outcomes = probe::run(checks, &routers);
    if crate::signals::stopping() {
        // Every probe has a deadline and the transfers stop at once: what ran is not the answer.
        error!("{}", crate::signals::INTERRUPTED);
        return ERR;
    }
    let live = live.then_some(t);
    let mut d = None;
    let whys: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| live.map(|t| diagnose(t, &mut d, o)).unwrap_or_default())
        .collect();
    if json {
        let mut v = probe::to_json(&outcomes);
        if let Some(list) = v["checks"].as_array_mut() {
            for (c, w) in list.iter_mut().zip(&whys) {
                c["why"] = w.clone().into();
            }
        }
        crate::output::data(format_args!("{v}\n"));
    } else if crate::output::level() == crate::output::Level::Quiet {
        // -q: errors only, and a check that did not go as expected is one.
        for o in outcomes.iter().filter(|o| !o.passed()) {
            let c = &o.check;
            let expected = if c.expect { "reach" } else { "blocked" };
            let got = match &o.got {
                Ok(true) => "reached".to_string(),
                Ok(false) => "blocked".to_string(),
                Err(e) => format!("could not run: {e}"),
            };
            error!(
                "check {} → {} {} {}: expected {expected}, {got}",
                c.from,
                c.to_label,
                c.to,
                c.probe.port()
            );
        }
    } else {
        say!("{}", probe::Table(&outcomes));
        for (o, w) in outcomes.iter().zip(&whys) {
            let failed_out = live.is_some()
                && !o.passed()
                && o.check.expect
                && matches!(o.check.from, probe::Origin::Ns(_));
            if !failed_out {
                continue;
            }
            let what = format!(
                "{} → {} {} {}",
                o.check.from,
                o.check.to_label,
                o.check.to,
                o.check.probe.port()
            );
            if w.is_empty() {
                say!(
                    "why {what} failed: no other table's rule drops it (`nsfw doctor` looks further)"
                );
            } else {
                say!("why {what} failed: {}", w.join("; "));
            }
        }
    }
    if outcomes.iter().all(|o| o.passed()) {
        OK
    } else {
        ERR
    }
}

pub fn verify(file: Option<PathBuf>, json: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    super::quiet_for_json(json);
    require_root("verify")?;
    let servers = probe::publish_servers(&t).map_err(|e| report(&e))?;
    let mut checks = probe::checks(&t, None);
    checks.extend(probe::publish_checks(&t, &servers, None));
    checks.extend(probe::target_checks(&t));
    if t.verify.targets.is_empty() {
        // Out of the host, NATed: to the default gateway, unless targets say where to.
        match probe::default_gateway() {
            Ok(Some(gw)) if !probe::gateway_answers(&gw).unwrap_or(true) => crate::warning!(
                "default gateway {} ({}) does not answer ping (from the host either): egress and NAT are not checked (name a service in [verify] targets)",
                gw.addr,
                gw.dev
            ),
            Ok(Some(gw)) => {
                for w in crate::firewall::default_left_out(&t, &gw.dev) {
                    crate::warning!("{w}");
                }
                checks.extend(probe::gateway_checks(&t, &gw))
            }
            Ok(None) => crate::warning!(
                "the host has no IPv4 default route with a gateway: egress and NAT are not checked (name a service in [verify] targets)"
            ),
            Err(e) => crate::warning!(
                "cannot read the host's default route ({e:#}): egress and NAT are not checked"
            ),
        }
    }
    checks.extend(probe::full_size_checks(&t));
    checks.extend(probe::remote_checks(&t));
    checks.extend(probe::uplink_checks(&t));
    let code = run_checks(&t, &checks, json, true);
    // One MTU per segment: the ports' MTUs as the host has them.
    let mut mixed: Vec<String> = crate::doctor::mtu::read(&t)
        .map_err(|e| report(&e))?
        .iter()
        .map(|f| format!("{}: {} ({})", f.object, f.what, f.fix))
        .collect();
    // Segments that span hosts: addresses two machines claim.
    mixed.extend(probe::duplicates(&t).map_err(|e| report(&e))?);
    for f in &mixed {
        error!("{f}");
    }
    Ok(if mixed.is_empty() { code } else { ERR })
}

fn load_try(file: &Option<PathBuf>) -> Result<Topology, Fail> {
    let t = match file {
        Some(f) => topology::load(f).map_err(|errs| {
            for e in errs.0 {
                error!("{e}");
            }
            Fail(ERR)
        })?,
        None => topology::parse(EMBEDDED_LAB, Path::new(EMBEDDED_LAB_NAME)).map_err(|e| {
            error!("{e}");
            Fail(ERR)
        })?,
    };
    if let Some(n) = t.namespaces.iter().find(|n| n.name == sandbox::WAN_NS) {
        error!(
            "{}: namespaces.{}: `try` keeps this name for its simulated upstream; rename the namespace",
            t.source.display(),
            n.name
        );
        return Err(Fail(ERR));
    }
    Ok(t)
}

/// `nsfw try`: re-executes itself inside a sandbox; in there, builds the upstream, applies,
/// checks. Everything it made dies with the sandbox's namespaces.
pub fn try_(file: Option<PathBuf>, json: bool) -> Result<u8, Fail> {
    let t = load_try(&file)?;
    require_root("try")?;
    super::quiet_for_json(json);
    if !sandbox::inside() {
        // The child prints what this one would: -q and -v go with it.
        let mut args: Vec<OsString> = match crate::output::level() {
            crate::output::Level::Quiet if !json => vec!["-q".into()],
            crate::output::Level::Verbose => vec!["-v".into()],
            _ => Vec::new(),
        };
        args.push("try".into());
        if json {
            args.push("--json".into());
        }
        if let Some(f) = file {
            args.push(f.into_os_string());
        }
        // The ports the file names, as this host has them: the sandbox's stand-ins copy them.
        let mut env = Vec::new();
        if t.bridges.iter().any(|b| !b.ports.is_empty()) {
            let real = sandbox::lan::read_host(&t).map_err(|e| report(&e))?;
            env.push((sandbox::lan::ENV_PORTS, real));
        }
        let r = sandbox::run_with(Path::new("/proc/self/exe"), &args, &env);
        if let Ok(s) = &r {
            // The child printed the command's output (or its JSON failure) itself, unless
            // it was killed, told to stop, after its grace.
            crate::output::data_written_elsewhere();
            if s.code().is_none() && crate::signals::stopping() {
                error!(
                    "{}: the sandbox ended by a signal (killed if it had not stopped within 2 s); nothing it made outlives it",
                    crate::signals::INTERRUPTED
                );
            }
        }
        return match r {
            Ok(s) => Ok(s.code().map(|c| c as u8).unwrap_or(ERR)),
            Err(e) => Err(report(&e)),
        };
    }
    say!(
        "nsfw try: {} ({}) in a throwaway sandbox",
        t.name,
        t.source.display()
    );
    let mut t = t;
    sandbox::lan::forwarding_premise(&mut t);
    sandbox::build_upstream(&t).map_err(|e| report(&e))?;
    let mut lan_checks = sandbox::lan::build(&t, sandbox::INTERNET_ADDR).map_err(|e| report(&e))?;
    lan_checks.extend(sandbox::uplink::build(&t).map_err(|e| report(&e))?);
    let lock = state::acquire(Access::Exclusive, true).map_err(|e| report(&e))?;
    super::apply::converge(&t, &lock, super::Printing::default())?;
    drop(lock);
    let servers = probe::publish_servers(&t).map_err(|e| report(&e))?;
    sandbox::start_servers(&t).map_err(|e| report(&e))?;
    let world = sandbox::world(&t).map_err(|e| report(&e))?;
    let mut checks = probe::checks(&t, Some(&world));
    checks.extend(probe::publish_checks(&t, &servers, Some(&world)));
    checks.extend(lan_checks);
    let code = run_checks(&t, &checks, json, false);
    say!("sandbox torn down: nothing was left on the host");
    Ok(code)
}

pub fn sandbox(command: Vec<OsString>) -> Result<u8, Fail> {
    let Some((prog, args)) = command.split_first() else {
        error!("nsfw sandbox needs a command");
        return Err(Fail(ERR));
    };
    match sandbox::run(Path::new(prog), args) {
        Ok(s) => Ok(s.code().map(|c| c as u8).unwrap_or(ERR)),
        Err(e) => Err(report(&e)),
    }
}
