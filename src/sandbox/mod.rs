//! The throwaway sandbox behind `nsfw try` and the tests: a child process in a fresh network
//! and mount namespace, with private tmpfs mounts over /run/netns and /etc/netns, so that
//! nothing it builds reaches the host and everything dies with it.
//!
//! A process can unshare its mount namespace only while it has a single thread, so the sandbox
//! is a re-executed child that unshares between fork and exec, before any thread starts.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ipnetwork::IpNetwork;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::plumbing::{Conn, msgs, netns};
use crate::probe;
use crate::resources::RouteSpec;
use crate::topology::Topology;

pub(crate) mod lan;
pub(crate) mod uplink;

/// The port of the source-echo server on the simulated internet, and of the listeners that
/// stand in every namespace for "a service someone might try to reach from outside".
pub(crate) const ECHO_PORT: u16 = 8000;
pub(crate) const LISTEN_PORT: u16 = 9000;

/// Set in the child's environment: the process is inside its sandbox.
pub(crate) const ENV: &str = "NSFW_SANDBOXED";

/// The simulated upstream: the sandbox's `uplink` leads to namespace `wan`.
pub(crate) const WAN_NS: &str = "wan";
pub(crate) const UPLINK: &str = "uplink";

/// The name of the sandbox's uplink for `t`: the first interface a bridge's `egress_via`
/// names, so that the simulated world is where the file lets its namespaces out; else
/// `uplink`.
pub(crate) fn uplink_name(t: &Topology) -> String {
    t.bridges
        .iter()
        .find_map(|b| b.egress_via.first().cloned())
        .unwrap_or_else(|| UPLINK.to_string())
}
pub(crate) const UPLINK_ADDR: &str = "198.51.100.1/24";
pub(crate) const WAN_ADDR: &str = "198.51.100.2/24";
/// An "internet" server address, on the `wan` namespace's loopback.
pub(crate) const INTERNET_ADDR: &str = "203.0.113.10/32";
/// The same three over IPv6 (documentation range 2001:db8::/32), and the link-local
/// addresses of the uplink pair: the host forwards the namespaces' IPv6 out of the uplink, and
/// a router resolves its next hop from a link-local source.
pub(crate) const UPLINK_ADDR6: &str = "2001:db8:100::1/64";
pub(crate) const WAN_ADDR6: &str = "2001:db8:100::2/64";
pub(crate) const INTERNET_ADDR6: &str = "2001:db8:113::10/128";
const UPLINK_LL: &str = "fe80::1/64";
const WAN_LL: &str = "fe80::2/64";

/// The directories that get a private tmpfs in the sandbox: namespaces, their files, and
/// nsfw's lock and record.
pub(crate) const SANDBOXED_DIRS: [&str; 3] =
    [netns::RUN_DIR, netns::ETC_DIR, crate::state::STATE_DIR];

/// Whether this process is the child `run` started: the environment says so, and the child
/// really lives in other network and mount namespaces than its parent. The variable alone is
/// not trusted (every shell under `nsfw sandbox` inherits it): `try` must never build its
/// upstream in the caller's own namespace.
pub(crate) fn inside() -> bool {
    if std::env::var_os(ENV).is_none() {
        return false;
    }
    let ppid = nix::unistd::getppid();
    let ns = |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
    ["net", "mnt"].iter().all(|k| {
        let (me, parent) = (ns("self", k), ns(&ppid.to_string(), k));
        me.is_some() && parent.is_some() && me != parent
    })
}

/// Runs `program args` inside a new sandbox and waits for it. Call it before starting any
/// thread (see the SAFETY note below). /run/netns, /etc/netns and /run/nsfw are
/// created first if missing (a tmpfs needs a mount point) and removed afterwards if this call
/// created them and they are empty again. Any program (`nsfw sandbox -- bash`): a stop asked
/// of this process is not passed on (Ctrl-C reaches an interactive shell by the terminal,
/// which ignores it, and must not be killed for it).
pub(crate) fn run(program: &Path, args: &[OsString]) -> Result<ExitStatus> {
    spawn_in(program, args, &[], false)
}

/// [`run`] for nsfw re-executing itself (`try`, `why`), with `env` added to the child's
/// environment: a stop asked of this process (SIGTERM, SIGINT, SIGHUP) is passed on, so that
/// the sandbox stops with it.
pub(crate) fn run_with(
    program: &Path,
    args: &[OsString],
    env: &[(&str, String)],
) -> Result<ExitStatus> {
    spawn_in(program, args, env, true)
}

#[allow(unsafe_code)]
fn spawn_in(
    program: &Path,
    args: &[OsString],
    env: &[(&str, String)],
    pass_stop: bool,
) -> Result<ExitStatus> {
    if pass_stop {
        // Told to stop before the sandbox exists: make none.
        crate::signals::check()?;
    }
    let mut created = Vec::new();
    for d in SANDBOXED_DIRS {
        if !Path::new(d).exists() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {d}"))?;
            created.push(d);
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args).env(ENV, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let parent = nix::unistd::getpid();
    // SAFETY: the hook runs in the child between fork and exec. It makes syscalls and lets nix
    // build C strings (allocation), which is sound because callers run this before the process
    // has started any thread (`try` and `sandbox` call it first thing): no lock can be held.
    unsafe {
        cmd.pre_exec(move || {
            let io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
            // A parent killed outright (kill -9) takes the sandbox with it; one that died
            // before this line is seen by its pid.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the parent has gone"));
            }
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(io)?;
            // Nothing mounted in here may propagate back to the host.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(io)?;
            for d in SANDBOXED_DIRS {
                mount(
                    Some("tmpfs"),
                    d,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("mode=0755"),
                )
                .map_err(io)?;
            }
            Ok(())
        });
    }
    let status = cmd
        .spawn()
        .with_context(|| format!("cannot start the sandbox ({})", program.display()))
        .and_then(|mut c| {
            match pass_stop {
                true => wait_passing_stop(c),
                false => c.wait(),
            }
            .context("cannot wait for the sandbox")
        });
    for d in created {
        let _ = std::fs::remove_dir(d);
    }
    status
}

/// How long a sandbox told to stop may take to end on its own before it is killed: it stops
/// at a safe point and says so, but a check under way may run for seconds; everything it made
/// dies with its namespaces either way.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Waits for the sandbox, passing a stop asked of this process (SIGTERM, SIGINT, SIGHUP: the
/// flag `signals` raises) on as SIGTERM, and a SIGKILL after [`STOP_GRACE`]. Polled: a stop
/// cannot fall between a check and a blocking wait.
fn wait_passing_stop(mut child: std::process::Child) -> std::io::Result<ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut told: Option<Instant> = None;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        match told {
            None if crate::signals::stopping() => {
                let _ = kill(pid, Signal::SIGTERM);
                told = Some(Instant::now());
            }
            Some(at) if at.elapsed() > STOP_GRACE => {
                let _ = child.kill();
                return child.wait();
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Inside the sandbox: brings `lo` up and builds the simulated upstream, `uplink`
/// (198.51.100.1, 2001:db8:100::1) ⇄ `wan` (198.51.100.2, 2001:db8:100::2, with 203.0.113.10
/// and 2001:db8:113::10 on its loopback), with the sandbox's default routes pointing at `wan`.
pub(crate) fn build_upstream(t: &Topology) -> Result<()> {
    let net = |s: &str| -> Result<IpNetwork> { s.parse().map_err(|e| anyhow!("{s}: {e}")) };
    let (wan_ip, uplink_ip, inet) = (net(WAN_ADDR)?, net(UPLINK_ADDR)?, net(INTERNET_ADDR)?);
    let (wan6, uplink6, inet6) = (net(WAN_ADDR6)?, net(UPLINK_ADDR6)?, net(INTERNET_ADDR6)?);
    let mut host = Conn::open("host")?;
    host.run_all(&[msgs::up("lo")])?;
    let each = |_: &str, c: &mut Conn| c.run_all(&[msgs::mark_lo("sandbox:wan")]);
    for r in netns::create_many(&[WAN_NS.to_string()], &each) {
        r?;
    }
    let fd = netns::open_ns(WAN_NS)?.ok_or_else(|| anyhow!("namespace wan vanished"))?;
    // The uplink is not on a bridge: a veth with no master.
    let up = uplink_name(t);
    let up = up.as_str();
    host.run_all(&[
        msgs::create_veth(up, None, 1500, None, "eth0", &fd, None),
        msgs::up(up),
    ])?;
    drop(fd);
    let i = index(&mut host, up)?;
    let (default, default6) = (net("0.0.0.0/0")?, net("::/0")?);
    host.run_all(&[
        msgs::add_addr(up, i, uplink_ip),
        msgs::add_addr(up, i, uplink6),
        msgs::add_addr(up, i, net(UPLINK_LL)?),
        msgs::replace_route(&RouteSpec::unicast(default, Some(wan_ip.ip()), up), i),
        msgs::replace_route(&RouteSpec::unicast(default6, Some(wan6.ip()), up), i),
    ])?;
    // The "internet" knows its way back to the bridges' subnets through the host, so only
    // nsfw's rules stand between it and the namespaces.
    let mut subnets: Vec<(IpNetwork, IpNetwork)> = Vec::new();
    for b in t.bridges.iter().filter(|b| !b.l2_only()) {
        for n in t.sources_via(&b.name, false) {
            subnets.push((n, uplink_ip));
        }
        for n in t.sources_via(&b.name, true) {
            subnets.push((n, uplink6));
        }
    }
    subnets.sort();
    subnets.dedup();
    netns::visit(&[WAN_NS.to_string()], &|_, c| {
        c.run_all(&[msgs::up("eth0")])?;
        let (e, lo) = (index(c, "eth0")?, index(c, "lo")?);
        let mut reqs = vec![
            msgs::add_addr("eth0", e, wan_ip),
            msgs::add_addr("eth0", e, wan6),
            msgs::add_addr("eth0", e, net(WAN_LL)?),
            msgs::add_addr("lo", lo, inet),
            msgs::add_addr("lo", lo, inet6),
        ];
        for (s, via) in &subnets {
            reqs.push(msgs::replace_route(
                &RouteSpec::unicast(*s, Some(via.ip()), "eth0"),
                e,
            ));
        }
        c.run_all(&reqs)
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| Ok(None))?
    .ok_or_else(|| anyhow!("namespace wan vanished"))
}

fn index(c: &mut Conn, name: &str) -> Result<u32> {
    let req = netlink_packet_route::RouteNetlinkMessage::GetLink(Default::default());
    c.dump(req, "interfaces")?
        .iter()
        .find_map(|m| match m {
            netlink_packet_route::RouteNetlinkMessage::NewLink(l) => {
                let l = crate::plumbing::links::parse_link(l);
                (l.name == name).then_some(l.index)
            }
            _ => None,
        })
        .ok_or_else(|| anyhow!("no interface {name} ({})", c.place()))
}

/// Starts the servers the upstream checks talk to: the source echo in `wan`, a listener in
/// every namespace (unless a published port's server already holds its port); both families.
pub(crate) fn start_servers(t: &Topology) -> Result<()> {
    probe::serve_source_echo(WAN_NS, ECHO_PORT)?;
    for n in &t.namespaces {
        match probe::serve_listener(&n.name, LISTEN_PORT) {
            Ok(()) => {}
            Err(e) if format!("{e:#}").contains("in use") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The simulated upstream as the checks see it.
pub(crate) fn world(t: &Topology) -> Result<probe::World> {
    let addr = |s: &str| -> Result<std::net::IpAddr> {
        let n: IpNetwork = s.parse().map_err(|e| anyhow!("{s}: {e}"))?;
        Ok(n.ip())
    };
    Ok(probe::World {
        ns: WAN_NS.to_string(),
        uplink: uplink_name(t),
        echo_port: ECHO_PORT,
        v4: probe::Side {
            addr: addr(WAN_ADDR)?,
            host_addr: addr(UPLINK_ADDR)?,
            server: addr(INTERNET_ADDR)?,
        },
        v6: Some(probe::Side {
            addr: addr(WAN_ADDR6)?,
            host_addr: addr(UPLINK_ADDR6)?,
            server: addr(INTERNET_ADDR6)?,
        }),
    })
}
