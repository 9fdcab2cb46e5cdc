//! `nsfw doctor`: what on this host will break or weaken the topology of FILE. Read only.

use std::path::PathBuf;

use crate::doctor::{self, Severity};
use crate::output;

use super::{Fail, OK, load, quiet_for_json, read_error};

/// Exit status when doctor found something.
pub(crate) const FOUND: u8 = 3;

pub fn doctor(file: Option<PathBuf>, json: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    quiet_for_json(json);
    let found = doctor::examine(&t).map_err(|e| read_error("doctor", &e))?;
    if json {
        output::data(format_args!("{}\n", doctor::to_json(&t, &found)));
    } else {
        let problems = found
            .iter()
            .filter(|f| f.severity == Severity::Problem)
            .count();
        for f in &found {
            output::data(format_args!("{f}\n"));
        }
        if found.is_empty() {
            crate::say!(
                "doctor: nothing on this host stands in the way of {} ({})",
                t.name,
                t.source.display()
            );
        } else {
            crate::say!(
                "doctor: {} ({}): {problems} problem(s), {} warning(s)",
                t.name,
                t.source.display(),
                found.len() - problems
            );
        }
    }
    Ok(if found.is_empty() { OK } else { FOUND })
}
