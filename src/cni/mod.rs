//! CNI mode: when `CNI_COMMAND` is set, nsfw is a CNI plugin (SPEC.md 1.0.0 and 1.1.0; 0.4.0
//! configs accepted) over the same engine: the rtnetlink `Conn` and `msgs` for links, the nft
//! IR and one batch per change for the firewall, nsfw's lock to serialise runtimes' parallel
//! calls. One table per network, `inet nsfw_cni_<network>`, whose sets and maps hold the
//! containers (docs/cni.md).
//!
//! | file | concern |
//! |---|---|
//! | `env` | the CNI_* parameters |
//! | `config` | the network configuration on stdin |
//! | `error` | the error object and its codes |
//! | `names` | a container's host veth name and its links' MACs (the marks that make what a container owns findable from the kernel alone are `crate::owner`'s) |
//! | `ipam` | the IPAM plugin (executed), or nsfw's own allocation from `subnet` |
//! | `table` | the network's nft table and a container's elements |
//! | `ruleset` | reading the table, and the ops of one batch |
//! | `links` | bridge, veth pair, the container's address and routes |
//! | `netns` | `CNI_NETNS`, opened safely and checked to be another network namespace |
//! | `forwarding` | IPv4 forwarding, recorded |
//! | `leftovers` | the write-ahead record of the links an ADD makes, and the sweep of what a killed one left |
//! | `validate` | the subnet and gateway, checked against the reserved ranges and the host before ADD changes anything |
//! | `result` | the ADD result, and prevResult for CHECK |
//! | `add`, `del` (and GC), `check`, `status` | the commands |

mod add;
mod check;
pub(crate) mod config;
mod del;
pub(crate) mod env;
pub(crate) mod error;
mod forwarding;
mod ipam;
mod leftovers;
mod links;
pub(crate) mod names;
mod netns;
mod result;
mod ruleset;
mod status;
pub(crate) mod table;
mod validate;

use std::io::{Read, Write};

use serde_json::{Value, json};

use config::{SUPPORTED, at_least};
use env::{Command, Env};
use error::{CniError, CniResult, code};

/// How long a command waits for another nsfw (an apply, another container's ADD) before it
/// answers "try again later" (11): runtimes have their own timeouts, and a plugin that hangs
/// past them leaves them guessing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// nsfw's lock, or error 11.
fn lock(access: crate::state::Access) -> CniResult<crate::state::Lock> {
    crate::state::acquire_within(access, LOCK_WAIT)?.ok_or_else(|| {
        CniError::new(
            code::TRY_AGAIN,
            format!(
                "another nsfw held {}/lock for {}s",
                crate::state::STATE_DIR,
                LOCK_WAIT.as_secs()
            ),
        )
    })
}

/// Whether this process was started as a CNI plugin.
pub fn invoked() -> bool {
    std::env::var_os("CNI_COMMAND").is_some()
}

fn print(v: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

/// Whether stdout can carry a result. A closed fd 1 is reopened by Rust's runtime, before
/// main, as /dev/null read-write — a shell's `>/dev/null` is write-only — and every write
/// there would "succeed": an ADD whose result nobody can read must not happen.
fn stdout_open() -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsFd;
    let out = std::io::stdout();
    let Ok(flags) = fcntl(out.as_fd(), FcntlArg::F_GETFL) else {
        return false;
    };
    let rdwr = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_RDWR;
    let null = nix::sys::stat::fstat(out.as_fd()).is_ok_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
    });
    !(rdwr && null)
}

/// Runs the command `CNI_COMMAND` names and returns the exit status: 0 on success (the result
/// on stdout), 1 with the error object on stdout (and a line on stderr for logs). An ADD whose
/// result cannot be written is undone (the runtime never learns of it, and would not DEL it)
/// and fails.
pub fn main() -> u8 {
    if std::env::var("CNI_COMMAND").as_deref() == Ok("ADD") && !stdout_open() {
        crate::output::err(format_args!(
            "nsfw (CNI): error: stdout is closed: the ADD's result could not be given; nothing done"
        ));
        return 1;
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = config::version_of(&stdin)
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let r = match read {
        Ok(_) => run(&stdin),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("cannot read the network configuration from stdin: {e}"),
        )),
    };
    match r {
        Ok(Some(v)) => match print(&v) {
            Ok(()) => 0,
            Err(e) => {
                crate::output::err(format_args!(
                    "nsfw (CNI): error: cannot write the result to stdout: {e}"
                ));
                if std::env::var("CNI_COMMAND").as_deref() == Ok("ADD") {
                    undo_add(&stdin);
                }
                1
            }
        },
        Ok(None) => 0,
        Err(e) => {
            crate::output::err(format_args!("nsfw (CNI): error: {e}"));
            // Nowhere to say it but stderr when stdout fails too.
            let _ = print(&e.to_json(&version));
            1
        }
    }
}

/// A DEL of the ADD just made (its result could not be given to the runtime).
fn undo_add(stdin: &[u8]) {
    let undone = Env::read(Command::Add)
        .and_then(|env| config::parse(stdin, &env.args).and_then(|c| del::del(&env, &c)));
    if let Err(e) = undone {
        crate::output::err(format_args!("nsfw (CNI): undoing the ADD failed too: {e}"));
    }
}

fn run(stdin: &[u8]) -> CniResult<Option<Value>> {
    let name = std::env::var("CNI_COMMAND").unwrap_or_default();
    let cmd = Command::parse(&name).ok_or_else(|| {
        CniError::env(format!(
            "CNI_COMMAND={name:?}: not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
        ))
    })?;
    if cmd == Command::Version {
        return Ok(Some(version(stdin)));
    }
    let env = Env::read(cmd)?;
    let c = config::parse(stdin, &env.args)?;
    let need = |min: &str, what: &str| -> CniResult<()> {
        if at_least(&c.version, min) {
            Ok(())
        } else {
            Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "{what} needs cniVersion {min} or later; the configuration says {}",
                    c.version
                ),
            ))
        }
    };
    match cmd {
        Command::Add => add::add(&env, &c).map(Some),
        Command::Del => del::del(&env, &c).map(|()| None),
        Command::Check => check::check(&env, &c).map(|()| None),
        Command::Gc => {
            need("1.1.0", "GC")?;
            del::gc(&env, &c).map(|()| None)
        }
        Command::Status => {
            need("1.1.0", "STATUS")?;
            status::status(&env, &c).map(|()| None)
        }
        Command::Version => Ok(Some(version(stdin))),
    }
}

/// VERSION: the versions nsfw speaks, in the version asked with (1.1.0 when none or an
/// unknown one is given).
fn version(stdin: &[u8]) -> Value {
    let asked = config::version_of(stdin).unwrap_or_else(|| "1.1.0".into());
    json!({"cniVersion": asked, "supportedVersions": SUPPORTED})
}
