//! `nsfw watch`: keeps the topology of FILE whole until stopped (src/watch).

use std::path::PathBuf;
use std::time::Duration;

use crate::watch::{self, Options};

use super::{Fail, OK, report, require_root, resolve_path};

pub fn watch(
    file: Option<PathBuf>,
    max_repairs: usize,
    pause: u64,
    metrics: Option<String>,
    metrics_public: bool,
) -> Result<u8, Fail> {
    let path = resolve_path(file)?;
    if path == std::path::Path::new("-") {
        crate::error!(
            "nsfw watch reads FILE again at every check: give it a file, not standard input"
        );
        return Err(Fail(super::ERR));
    }
    // The file is read (and its errors reported) before anything else.
    super::load(Some(path.clone()))?;
    require_root("watch")?;
    // Bound before anything else: an address refused or taken is an error at once.
    let listener = match metrics {
        Some(a) => match crate::metrics::http::bind(&a, metrics_public) {
            Ok(l) => Some(l),
            Err(e) => {
                crate::error!("{e}");
                return Err(Fail(super::ERR));
            }
        },
        None => None,
    };
    let opts = Options {
        max_repairs: max_repairs.max(1),
        pause: Duration::from_secs(pause.max(1)),
        // NSFW_WATCH_DEBOUNCE_MS: how long a burst may last (docs/watch.md).
        debounce: std::env::var("NSFW_WATCH_DEBOUNCE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Options::default().debounce, Duration::from_millis),
    };
    watch::run(&path, opts, listener).map_err(|e| report(&e))?;
    Ok(OK)
}
