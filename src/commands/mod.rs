//! The commands of the CLI: thin modules over the library's operations. Each returns its exit
//! status in the error type ([`Fail`]), so that `main` only maps it to the process's.

mod apply;
mod completions;
mod diff;
mod doctor;
mod drops;
mod early;
mod exec;
mod graph;
mod import;
mod man;
mod print;
mod show;
mod status;
mod systemd;
mod try_;
mod watch;
mod why;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use apply::{FlushWhat, Taking, apply, flush};
pub use completions::completions;
pub use diff::{diff, dry_run};
pub use doctor::doctor;
pub use drops::drops;
pub use exec::exec;
pub use graph::graph;
pub use import::import;
pub use man::man;
pub use print::Printing;
pub use show::show;
pub use status::{list, status};
pub use systemd::systemd;
pub use try_::{sandbox, try_, verify};
pub use watch::watch;
pub use why::{WhyArgs, why};

use crate::topology::{self, Topology};

/// The exit statuses every command keeps to (README.md's table of commands, docs/json.md).
pub(crate) const OK: u8 = 0;
pub(crate) const ERR: u8 = 1;
pub(crate) const PENDING: u8 = 2;
/// `apply`: everything applied but objects in the way that it names (a hand-edited
/// resolv.conf).
pub(crate) const PARTIAL: u8 = 4;

/// A command's outcome other than success: its exit status, the message already printed.
#[derive(Debug)]
pub struct Fail(pub u8);

/// Prints an error (every line of it) and makes it the command's failure.
pub(crate) fn report(e: &anyhow::Error) -> Fail {
    crate::error!("{e:#}");
    Fail(ERR)
}

/// `./nsfw.toml` is taken by default only when the caller owns it and nobody else can write
/// it: a file someone else can edit must not decide what a root command does to the host.
fn trusted_default(p: &Path) -> Result<bool, String> {
    let md = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(false),
    };
    let me = nix::unistd::geteuid().as_raw();
    if !md.file_type().is_file() {
        return Err(format!("{} is not a regular file", p.display()));
    }
    if md.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to you",
            p.display(),
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "others can write {} (mode {:o})",
            p.display(),
            md.mode() & 0o777
        ));
    }
    Ok(true)
}

/// FILE, else ./nsfw.toml (when the caller owns it and nobody else can write it), else
/// /etc/nsfw/nsfw.toml.
pub(crate) fn resolve_path(file: Option<PathBuf>) -> Result<PathBuf, Fail> {
    if let Some(f) = file {
        return Ok(f);
    }
    let local = Path::new("nsfw.toml");
    match trusted_default(local) {
        Ok(true) => return Ok(local.to_path_buf()),
        Ok(false) => {}
        Err(why) => crate::warning!("not using ./nsfw.toml by default: {why}; name it to use it"),
    }
    let etc = Path::new("/etc/nsfw/nsfw.toml");
    if etc.exists() {
        return Ok(etc.to_path_buf());
    }
    crate::error!("no topology file: name one, or create ./nsfw.toml or /etc/nsfw/nsfw.toml");
    Err(Fail(ERR))
}

/// Loads and validates, printing every error.
pub(crate) fn load(file: Option<PathBuf>) -> Result<Topology, Fail> {
    let path = resolve_path(file)?;
    parse(&read(&path)?, &path)
}

/// The topology file's text, the error printed.
fn read(path: &Path) -> Result<String, Fail> {
    topology::read(path).map_err(said)
}

/// [`load`] of text already read from `path`.
fn parse(text: &str, path: &Path) -> Result<Topology, Fail> {
    let t = topology::parse(text, path).map_err(said)?;
    for w in &t.warnings {
        crate::warning!("{w}");
    }
    Ok(t)
}

fn said(errs: topology::Errors) -> Fail {
    for e in errs.0 {
        crate::error!("{e}");
    }
    Fail(ERR)
}

/// Commands that change the host need root. (Read-only ones need none: they read what the
/// kernel lets them, and say what it refused; see [`read_error`].)
pub(crate) fn require_root(cmd: &str) -> Result<(), Fail> {
    if !nix::unistd::geteuid().is_root() {
        crate::error!(
            "nsfw {cmd} needs root (it changes network namespaces and nftables): run it with sudo"
        );
        return Err(Fail(ERR));
    }
    Ok(())
}

/// An error of a read-only command: when the kernel refused to let a user without the
/// capabilities read something, says which ones it takes.
pub(crate) fn read_error(cmd: &str, e: &anyhow::Error) -> Fail {
    let denied = e.chain().any(|c| {
        let s = c.to_string();
        s.contains("EPERM")
            || s.contains("Operation not permitted")
            || s.contains("EACCES")
            || s.contains("Permission denied")
    });
    if denied && !nix::unistd::geteuid().is_root() {
        // One line: what was refused, and what would let it read.
        let what = format!("{e:#}").replace('\n', "; ");
        crate::error!(
            "nsfw {cmd} may not read what it needs ({what}): reading nftables takes CAP_NET_ADMIN and the inside of network namespaces CAP_SYS_ADMIN; run it as root, or with those capabilities"
        );
        return Fail(ERR);
    }
    report(e)
}

/// With `--json`, stdout carries the JSON document alone: the usual lines are left out
/// (errors still go to stderr).
pub(crate) fn quiet_for_json(json: bool) {
    if json {
        crate::output::set_level(crate::output::Level::Quiet);
    }
}
