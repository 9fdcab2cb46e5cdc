//! The commands of the CLI: each loads its input, talks to the kernel through the modules, and
//! returns the process exit status (DESIGN.md's contract).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::firewall;
use crate::nft::socket::NftSocket;
use crate::plan::{self, Plan};
use crate::plumbing::{self, Kernel, Observed};
use crate::probe;
use crate::sandbox;
use crate::topology::{self, Topology};

/// The lab `nsfw try` builds when given no file.
pub const EMBEDDED_LAB: &str = include_str!("../rulesets/lab.toml");
const EMBEDDED_LAB_NAME: &str = "rulesets/lab.toml (embedded)";

const OK: u8 = 0;
const ERR: u8 = 1;
const PENDING: u8 = 2;

fn report(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

/// FILE, else ./nsfw.toml, else /etc/nsfw/nsfw.toml.
fn resolve_path(file: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(f) = file {
        return Ok(f);
    }
    for p in ["nsfw.toml", "/etc/nsfw/nsfw.toml"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no topology file: name one, or create ./nsfw.toml or /etc/nsfw/nsfw.toml")
}

/// Loads and validates, printing every error; `Err(1)` when anything is wrong.
fn load(file: Option<PathBuf>) -> Result<Topology, u8> {
    let path = resolve_path(file).map_err(|e| {
        report(&e);
        ERR
    })?;
    topology::load(&path).map_err(|errs| {
        for e in errs.0 {
            eprintln!("error: {e}");
        }
        ERR
    })
}

fn require_root(cmd: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "nsfw {cmd} needs root (it changes network namespaces and nftables): run it with sudo"
        );
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))
}

/// Runs `f` on a fresh single-threaded runtime with a [`Kernel`] open.
fn with_kernel<T>(f: impl AsyncFnOnce(&mut Kernel) -> Result<T>) -> Result<T> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut k = Kernel::open()?;
        f(&mut k).await
    })
}

async fn observe_for(k: &mut Kernel, nft: &mut NftSocket, t: &Topology) -> Result<Observed> {
    let mark = t.owner_mark();
    let names: Vec<String> = t.namespaces.iter().map(|n| n.name.clone()).collect();
    let deep = move |name: &str, owner: Option<&str>| {
        owner == Some(mark.as_str()) || names.iter().any(|n| n == name)
    };
    let t0 = std::time::Instant::now();
    let mut o = plumbing::observe(k, &deep).await?;
    timing("observed the links", t0);
    o.nft = firewall::observe(nft)?;
    timing("observed nftables", t0);
    Ok(o)
}

/// Carries a plan out: the plumbing changes in order, then the one nftables batch.
async fn carry_out(k: &mut Kernel, nft: &mut NftSocket, mark: &str, p: &Plan) -> Result<()> {
    plan::execute(k, mark, &p.changes, &mut |c| println!("  {c}")).await?;
    if !p.nft.ops.is_empty() {
        firewall::execute(nft, &p.nft.ops)?;
        for l in &p.nft.lines {
            println!("  {l}");
        }
    }
    Ok(())
}

/// With NSFW_TIMING set, prints how long since `t0` (a profiling aid for the benchmarks).
fn timing(what: &str, t0: std::time::Instant) {
    if std::env::var_os("NSFW_TIMING").is_some() {
        eprintln!("timing: {what} after {:?}", t0.elapsed());
    }
}

/// Observes, plans, and carries the plan out, printing each change as it is made. Afterwards
/// observes again: anything still pending is an error.
async fn converge(k: &mut Kernel, t: &Topology) -> Result<usize> {
    let t0 = std::time::Instant::now();
    let mut nft = NftSocket::open()?;
    let o = observe_for(k, &mut nft, t).await?;
    timing("observed", t0);
    let p = plan::diff(t, &o)?;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    if !p.conflicts.is_empty() {
        bail!("{}\nnothing was changed", p.conflicts.join("\nerror: "));
    }
    if t.host.br_netfilter == crate::topology::BrNetfilter::Auto {
        println!("{}", firewall::br_nf_report(&o.nft));
    }
    if p.is_empty() {
        println!(
            "nothing to do: the host already matches {} ({})",
            t.name,
            t.source.display()
        );
        return Ok(0);
    }
    println!("applying {} ({}):", t.name, t.source.display());
    carry_out(k, &mut nft, &t.owner_mark(), &p).await?;
    timing("carried out", t0);
    let o = observe_for(k, &mut nft, t).await?;
    timing("observed again", t0);
    let left = plan::diff(t, &o)?;
    if !left.is_empty() || !left.conflicts.is_empty() {
        bail!(
            "apply finished but the host still differs from the file; pending:\n{left}{}",
            left.conflicts.join("\n")
        );
    }
    let n = p.changes.len() + p.nft.lines.len();
    println!("done: {n} change(s)");
    Ok(n)
}

pub fn apply(file: Option<PathBuf>) -> u8 {
    let t = match load(file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    match require_root("apply").and_then(|()| with_kernel(async |k| converge(k, &t).await)) {
        Ok(_) => OK,
        Err(e) => {
            report(&e);
            ERR
        }
    }
}

pub fn diff(file: Option<PathBuf>, json: bool) -> u8 {
    let t = match load(file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let p: Result<Plan> = require_root("diff").and_then(|()| {
        with_kernel(async |k| {
            let t0 = std::time::Instant::now();
            let mut nft = NftSocket::open()?;
            let o = observe_for(k, &mut nft, &t).await?;
            let p = plan::diff(&t, &o);
            timing("planned", t0);
            p
        })
    });
    match p {
        Err(e) => {
            report(&e);
            ERR
        }
        Ok(p) => {
            if json {
                println!("{}", p.to_json(&t.name, &t.source.display().to_string()));
            }
            for w in &p.warnings {
                eprintln!("warning: {w}");
            }
            if !p.conflicts.is_empty() {
                for c in &p.conflicts {
                    eprintln!("error: {c}");
                }
                return ERR;
            }
            if json {
                // Already printed.
            } else if p.is_empty() {
                println!(
                    "in sync: the host matches {} ({})",
                    t.name,
                    t.source.display()
                );
            } else {
                print!("{p}");
                println!(
                    "{} change(s) pending: `nsfw apply` carries them out",
                    p.len()
                );
            }
            if p.is_empty() { OK } else { PENDING }
        }
    }
}

/// `nsfw show`: the ruleset nsfw would load, in `nft` syntax.
pub fn show(file: Option<PathBuf>) -> u8 {
    match load(file) {
        Ok(t) => {
            print!("{}", firewall::table(&t));
            OK
        }
        Err(c) => c,
    }
}

pub fn flush(file: Option<PathBuf>, all: bool) -> u8 {
    let owners = if all {
        None
    } else {
        match load(file) {
            Ok(t) => Some(vec![t.name]),
            Err(c) => return c,
        }
    };
    let r = require_root("flush").and_then(|()| {
        with_kernel(async |k| {
            let mut nft = NftSocket::open()?;
            let mut o = plumbing::observe(k, &|_, _| false).await?;
            o.nft = firewall::observe(&mut nft)?;
            let p = plan::flush(owners.as_deref(), &o);
            if p.is_empty() {
                println!("nothing to flush");
                return Ok(());
            }
            println!("flushing:");
            carry_out(k, &mut nft, "", &p).await?;
            println!("done: {} change(s)", p.changes.len() + p.nft.lines.len());
            Ok(())
        })
    });
    match r {
        Ok(()) => OK,
        Err(e) => {
            report(&e);
            ERR
        }
    }
}

fn run_checks(checks: &[probe::Check]) -> u8 {
    let outcomes = probe::run(checks);
    println!("{}", probe::Table(&outcomes));
    if outcomes.iter().all(|o| o.passed()) {
        OK
    } else {
        ERR
    }
}

pub fn verify(file: Option<PathBuf>) -> u8 {
    let t = match load(file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    if let Err(e) = require_root("verify") {
        report(&e);
        return ERR;
    }
    run_checks(&probe::checks(&t))
}

/// `nsfw try`: re-executes itself inside a sandbox; in there, builds the upstream, applies,
/// checks. Everything it made dies with the sandbox's namespaces.
pub fn try_(file: Option<PathBuf>) -> u8 {
    let t = match &file {
        Some(f) => match topology::load(f) {
            Ok(t) => t,
            Err(errs) => {
                for e in errs.0 {
                    eprintln!("error: {e}");
                }
                return ERR;
            }
        },
        None => match topology::parse(EMBEDDED_LAB, Path::new(EMBEDDED_LAB_NAME)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ERR;
            }
        },
    };
    if let Some(n) = t.namespaces.iter().find(|n| n.name == sandbox::WAN_NS) {
        eprintln!(
            "error: {}: namespaces.{}: `try` keeps this name for its simulated upstream; rename the namespace",
            t.source.display(),
            n.name
        );
        return ERR;
    }
    if let Err(e) = require_root("try") {
        report(&e);
        return ERR;
    }
    if !sandbox::inside() {
        let mut args: Vec<OsString> = vec!["try".into()];
        if let Some(f) = file {
            args.push(f.into_os_string());
        }
        return match sandbox::run(Path::new("/proc/self/exe"), &args) {
            Ok(s) => s.code().map(|c| c as u8).unwrap_or(ERR),
            Err(e) => {
                report(&e);
                ERR
            }
        };
    }
    println!(
        "nsfw try: {} ({}) in a throwaway sandbox",
        t.name,
        t.source.display()
    );
    let built = with_kernel(async |k| {
        sandbox::build_upstream(k, &t).await?;
        converge(k, &t).await?;
        sandbox::start_servers(&t)?;
        let mut checks = probe::checks(&t);
        checks.extend(sandbox::upstream_checks(&t)?);
        Ok(checks)
    });
    let checks = match built {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ERR;
        }
    };
    let code = run_checks(&checks);
    println!("sandbox torn down: nothing was left on the host");
    code
}

pub fn sandbox(command: Vec<OsString>) -> u8 {
    let Some((prog, args)) = command.split_first() else {
        eprintln!("error: nsfw sandbox needs a command");
        return ERR;
    };
    match sandbox::run(Path::new(prog), args) {
        Ok(s) => s.code().map(|c| c as u8).unwrap_or(ERR),
        Err(e) => {
            report(&e);
            ERR
        }
    }
}
