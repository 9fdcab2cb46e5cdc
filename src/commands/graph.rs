//! `nsfw graph`: the picture of FILE (src/graph), with the kernel's state over it when asked
//! (`--live`) or, as root, when the topology is on the host. Drawing FILE alone needs no
//! privilege and touches nothing.

use crate::cli::{GraphArgs, GraphFormat};
use crate::graph::{self, Format, Live};
use crate::output;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use super::{Fail, OK, load, report};

/// The kernel's state for the picture, when wanted and available.
fn live_of(t: &crate::topology::Topology, live: bool, no_live: bool) -> Result<Option<Live>, Fail> {
    if no_live {
        return Ok(None);
    }
    if !nix::unistd::geteuid().is_root() {
        if live {
            crate::warning!(
                "--live needs root (it reads the kernel's namespaces and nftables): drawing {} alone",
                t.source.display()
            );
        }
        return Ok(None);
    }
    match graph::live::gather(t) {
        // By default only a topology that is on the host: the picture of a file not applied
        // is the file's.
        Ok(l) if live || l.status.is_some() => Ok(Some(l)),
        Ok(_) => Ok(None),
        Err(e) if live => Err(report(&e)),
        Err(e) => {
            crate::warning!("cannot read the kernel's state ({e:#}): drawing the file alone");
            Ok(None)
        }
    }
}

pub fn graph(a: GraphArgs) -> Result<u8, Fail> {
    let t = load(a.file)?;
    let l = live_of(&t, a.live, a.no_live)?;
    let format = match a.format {
        GraphFormat::Svg => Format::Svg,
        GraphFormat::Dot => Format::Dot,
        GraphFormat::Mermaid => Format::Mermaid,
    };
    let text = graph::draw(&t, l.as_ref(), format);
    match a.output {
        None => output::data(format_args!("{text}")),
        Some(p) => {
            // Never through a symlink someone planted at the path.
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&p)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if let Err(e) = written {
                crate::error!("{}: cannot write the picture: {e}", p.display());
                return Err(Fail(super::ERR));
            }
        }
    }
    Ok(OK)
}
