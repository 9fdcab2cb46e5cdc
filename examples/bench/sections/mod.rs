//! The outer run's sections: each starts its trials, takes the medians and writes its part of
//! the report (a table and the ratios that matter).

mod apply;
mod grow;
mod labs;
mod tables;
mod traffic;
mod watch;

use std::path::Path;
use std::time::Instant;

pub use apply::{apply, scale};
pub use grow::grow;
pub use labs::{adopt, dual, routed};
pub use tables::{policy, publish};
pub use traffic::{dataplane, policy_dataplane, publish_dataplane};
pub use watch::watch;

/// What every section needs: how many runs, the older binaries, the report so far.
pub struct Ctx<'a> {
    pub runs: usize,
    /// `--baseline`: cold and no-op apply beside nsfw's in the apply table.
    pub base: Option<&'a Path>,
    /// `--before`: the published-port trial beside nsfw's (the code before a change).
    pub before: Option<&'a Path>,
    pub report: String,
    pub started: Instant,
}

impl Ctx<'_> {
    /// Progress for the reader of stderr.
    fn done(&self, what: &str) {
        eprintln!(
            "{what} done after {:.0} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}
