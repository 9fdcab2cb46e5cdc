//! `nsfw why FROM TO [PROTO/PORT]`: the file's answer and one traced packet's, on the live
//! topology or (`--sandbox`) in a throwaway copy of it as `try` builds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::state::{self, Access};
use crate::{error, sandbox, say, why as w};

use super::{ERR, Fail, OK, load, report, require_root};

/// The command line of `nsfw why`.
pub struct WhyArgs {
    pub from: String,
    pub to: String,
    pub l4: String,
    pub file: Option<PathBuf>,
    pub ipv6: bool,
    pub sandbox: bool,
    pub json: bool,
}

/// The same question asked again inside the sandbox.
fn sandbox_args(a: &WhyArgs) -> Vec<OsString> {
    // The child prints what this one would: -q and -v go with it.
    let mut args: Vec<OsString> = match crate::output::level() {
        crate::output::Level::Quiet if !a.json => vec!["-q".into()],
        crate::output::Level::Verbose => vec!["-v".into()],
        _ => Vec::new(),
    };
    args.extend(["why".into(), a.from.clone().into(), a.to.clone().into()]);
    args.push(a.l4.clone().into());
    if let Some(f) = &a.file {
        args.push("--file".into());
        args.push(f.clone().into_os_string());
    }
    for (on, flag) in [(a.ipv6, "-6"), (a.json, "--json"), (true, "--sandbox")] {
        if on {
            args.push(flag.into());
        }
    }
    args
}

pub fn why(a: WhyArgs) -> Result<u8, Fail> {
    let t = load(a.file.clone())?;
    super::quiet_for_json(a.json);
    let (proto, port) = w::parse_l4(Some(&a.l4)).map_err(|e| {
        error!("{e}");
        Fail(ERR)
    })?;
    require_root("why")?;
    let v6 = a.ipv6
        || [&a.from, &a.to]
            .iter()
            .any(|s| s.parse::<std::net::IpAddr>().is_ok_and(|i| i.is_ipv6()));
    let q = w::Question {
        from: a.from.clone(),
        to: a.to.clone(),
        proto,
        port,
        v6,
    };
    let world = if a.sandbox {
        if !sandbox::inside() {
            let r = sandbox::run_with(Path::new("/proc/self/exe"), &sandbox_args(&a), &[]);
            if r.is_ok() {
                crate::output::data_written_elsewhere();
            }
            return match r {
                Ok(s) => Ok(s.code().map(|c| c as u8).unwrap_or(ERR)),
                Err(e) => Err(report(&e)),
            };
        }
        let mut t2 = t.clone();
        sandbox::lan::forwarding_premise(&mut t2);
        sandbox::build_upstream(&t2).map_err(|e| report(&e))?;
        // The copy is built quietly: the answer is what was asked for.
        let level = crate::output::level();
        crate::output::set_level(crate::output::Level::Quiet);
        let lock = state::acquire(Access::Exclusive, true).map_err(|e| report(&e))?;
        let built = super::apply::converge(&t2, &lock, super::Printing::default());
        crate::output::set_level(level);
        built?;
        drop(lock);
        // The servers `try` talks to: what answers tells the packet's real fate.
        crate::probe::publish_servers(&t2).map_err(|e| report(&e))?;
        sandbox::start_servers(&t2).map_err(|e| report(&e))?;
        Some(sandbox::world(&t2).map_err(|e| report(&e))?)
    } else {
        None
    };
    let answer = w::ask(&t, &q, world.as_ref()).map_err(|e| report(&e))?;
    if a.json {
        crate::output::data(format_args!("{}\n", w::to_json(&answer)));
    } else {
        say!("{}", w::text(&answer).trim_end());
    }
    Ok(if answer.disagreement.is_empty() {
        OK
    } else {
        ERR
    })
}
