//! `nsfw drops`: what nsfw's table drops, in the file's terms (src/drops).

use std::path::PathBuf;
use std::time::SystemTime;

use crate::drops::{self, Options};

use super::{Fail, OK, load, read_error};

pub fn drops(
    file: Option<PathBuf>,
    json: bool,
    follow: bool,
    since: Option<String>,
) -> Result<u8, Fail> {
    let since = match since {
        Some(s) => match drops::parse_since(&s, SystemTime::now()) {
            Ok(t) => Some(t),
            Err(e) => {
                crate::error!("{e}");
                return Err(Fail(super::ERR));
            }
        },
        None => None,
    };
    let opts = Options { json, since };
    if !follow {
        let t = load(file)?;
        drops::counts(&t, json).map_err(|e| read_error("drops", &e))?;
        return Ok(OK);
    }
    // The group first: the kernel queues what is logged while a large file loads.
    let (log, base) = drops::bind().map_err(|e| read_error("drops", &e))?;
    // Without FILE, every topology of the host (one reader serves them all), the default
    // file's with its entries and lines.
    let all = file.is_none();
    let default = ["nsfw.toml", "/etc/nsfw/nsfw.toml"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    let t = if all && !default {
        None
    } else {
        Some(load(file)?)
    };
    drops::follow(log, base, t.as_ref(), all, &opts).map_err(|e| read_error("drops", &e))?;
    Ok(OK)
}
