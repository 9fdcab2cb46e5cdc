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
    let t = load(file)?;
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
    let r = if follow {
        drops::follow(&t, &opts)
    } else {
        drops::counts(&t, json)
    };
    r.map_err(|e| read_error("drops", &e))?;
    Ok(OK)
}
