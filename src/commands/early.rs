//! The lock taken, and watch's memory asked for, before the file is parsed. At 1,000
//! namespaces parsing the file takes ~10 ms and watch's answer ~20: asked only once the file
//! was parsed, that answer was the run's critical path. It is done only as root, with the
//! memory wanted, a watch's socket there for the topology the file names, and the lock free
//! at once; otherwise the run goes as before (parse, then lock). What it changes: the lock is
//! held while the file is parsed, a file that does not parse included (a few milliseconds, in
//! which another run waits, or fails with `--no-wait`; the exclusive lock's file then names
//! this run's pid). Such a file lets the lock go with nothing asked of the kernel.

use std::path::PathBuf;

use super::Fail;
use crate::plumbing::memory::{self, Asking};
use crate::state::{self, Access, Lock};
use crate::topology::Topology;

/// The file loaded as `super::load` does, with the lock (`access`) and watch's answer under
/// way where they could be had before it was parsed.
pub(super) fn load(
    file: Option<PathBuf>,
    access: Access,
) -> Result<(Topology, Option<(Lock, Asking)>), Fail> {
    let path = super::resolve_path(file)?;
    let text = super::read(&path)?;
    let early = start(&text, access);
    let t = super::parse(&text, &path)?;
    let early = early.and_then(|e| e.of(&t.name));
    Ok((t, early))
}

/// The lock, and the ask started for topology `name`.
pub(super) struct Early {
    lock: Lock,
    asking: Asking,
    name: String,
}

/// The early lock and ask for the file `text`, where they can be had (see the module).
fn start(text: &str, access: Access) -> Option<Early> {
    if !nix::unistd::geteuid().is_root() || !memory::wanted() {
        return None;
    }
    let name = peek_name(text)?;
    if !memory::served(name) {
        return None;
    }
    let lock = state::acquire_within(access, std::time::Duration::ZERO).ok()??;
    crate::detail!("memory: the lock taken and watch asked before the file was parsed");
    Some(Early {
        lock,
        asking: Asking::start(name),
        name: name.to_string(),
    })
}

impl Early {
    /// The lock and the ask, when the file turned out to be topology `name`'s (else both are
    /// let go: the lock released, the answer never read).
    fn of(self, name: &str) -> Option<(Lock, Asking)> {
        (self.name == name).then_some((self.lock, self.asking))
    }
}

/// The topology's name, when the file says it plainly: `name = "..."` on a line of its own
/// before the first table (where TOML's top-level keys are), of the characters a name may
/// have. Anything else (no such line, quotes of another kind, a table first): None, and the
/// run parses first. A wrong guess costs only the early ask: the parsed name decides.
fn peek_name(text: &str) -> Option<&str> {
    for line in text.lines().take(200) {
        let l = line.trim();
        if l.starts_with('[') {
            return None;
        }
        let Some(rest) = l.strip_prefix("name") else {
            continue;
        };
        let Some(v) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let v = v.trim_start().strip_prefix('"')?;
        let (name, tail) = v.split_once('"')?;
        let tail = tail.trim_start();
        let ok = crate::topology::check_topology_name(name).is_ok()
            && (tail.is_empty() || tail.starts_with('#'));
        return ok.then_some(name);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::peek_name;

    #[test]
    fn the_name_is_read_only_where_toml_says_it_plainly() {
        assert_eq!(
            peek_name("# lab\nname = \"bench\"\n[bridges.br0]\n"),
            Some("bench")
        );
        assert_eq!(peek_name("name=\"a_1\" # x\n"), Some("a_1"));
        // A table first, another key's value, odd quoting, a bad name: not guessed.
        assert_eq!(peek_name("[bridges.br0]\nname = \"x\"\n"), None);
        assert_eq!(peek_name("named = \"x\"\nname = \"y\""), Some("y"));
        assert_eq!(peek_name("name = 'x'\n"), None);
        assert_eq!(peek_name("name = \"x\" junk\n"), None);
        assert_eq!(peek_name("name = \"Big\"\n"), None);
        assert_eq!(peek_name("name = \"\"\"x\"\"\"\n"), None);
    }
}
