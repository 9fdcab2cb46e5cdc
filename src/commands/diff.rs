//! `nsfw diff`: the plan apply would carry out, read from the kernel's own state, under the
//! shared lock (never while a change runs).

use std::path::PathBuf;

use crate::engine::{self, Target};
use crate::output;
use crate::state::{self, Access, Record};
use crate::{error, say, warning};
use nft::socket::NftSocket;

use super::{ERR, Fail, OK, PENDING, load, report, require_root};

pub fn diff(file: Option<PathBuf>, json: bool, wait: bool) -> Result<u8, Fail> {
    let t = load(file)?;
    require_root("diff")?;
    let lock = state::acquire(Access::Shared, wait).map_err(|e| report(&e))?;
    let tg = Target::apply(&t);
    let rec = Record::load(lock.dir());
    let p = NftSocket::open()
        .and_then(|mut nft| engine::observe(&tg, &rec, &mut nft))
        .and_then(|o| engine::plan(&tg, &o, &rec))
        .map_err(|e| report(&e))?;
    drop(lock);
    if json {
        output::data(format_args!(
            "{}\n",
            p.to_json(&t.name, &t.source.display().to_string())
        ));
    }
    for w in &p.warnings {
        warning!("{w}");
    }
    if !p.conflicts.is_empty() || !p.unreachable.is_empty() {
        for c in p.conflicts.iter().chain(&p.unreachable) {
            error!("{c}");
        }
        return Err(Fail(ERR));
    }
    if json {
        // Already printed.
    } else if p.is_empty() {
        say!(
            "in sync: the host matches {} ({})",
            t.name,
            t.source.display()
        );
    } else {
        let text = p.to_string();
        for line in text.lines() {
            output::data(format_args!("{}\n", output::paint(line)));
        }
        say!("{}", p.summary());
        say!(
            "{} change(s) pending: `nsfw apply` carries them out",
            p.len()
        );
    }
    Ok(if p.is_empty() { OK } else { PENDING })
}
