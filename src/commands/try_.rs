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
pub const EMBEDDED_LAB: &str = include_str!("../../rulesets/lab.toml");
const EMBEDDED_LAB_NAME: &str = "rulesets/lab.toml (embedded)";

fn run_checks(checks: &[probe::Check], json: bool) -> u8 {
    let outcomes = probe::run(checks);
    if json {
        crate::output::data(format_args!("{}\n", probe::to_json(&outcomes)));
    } else {
        say!("{}", probe::Table(&outcomes));
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
    Ok(run_checks(&checks, json))
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
        let mut args: Vec<OsString> = vec!["try".into()];
        if json {
            args.push("--json".into());
        }
        if let Some(f) = file {
            args.push(f.into_os_string());
        }
        return match sandbox::run(Path::new("/proc/self/exe"), &args) {
            Ok(s) => Ok(s.code().map(|c| c as u8).unwrap_or(ERR)),
            Err(e) => Err(report(&e)),
        };
    }
    say!(
        "nsfw try: {} ({}) in a throwaway sandbox",
        t.name,
        t.source.display()
    );
    sandbox::build_upstream(&t).map_err(|e| report(&e))?;
    let lock = state::acquire(Access::Exclusive, true).map_err(|e| report(&e))?;
    super::apply::converge(&t, &lock)?;
    drop(lock);
    let servers = probe::publish_servers(&t).map_err(|e| report(&e))?;
    sandbox::start_servers(&t).map_err(|e| report(&e))?;
    let world = sandbox::world().map_err(|e| report(&e))?;
    let mut checks = probe::checks(&t, Some(&world));
    checks.extend(probe::publish_checks(&t, &servers, Some(&world)));
    let code = run_checks(&checks, json);
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
