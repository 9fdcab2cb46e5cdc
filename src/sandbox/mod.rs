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

use anyhow::{Context, Result, anyhow};
use ipnetwork::Ipv4Network;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use rtnetlink::LinkUnspec;

use crate::plumbing::{Kernel, netns};
use crate::probe::{self, Check, Probe};
use crate::topology::Topology;

/// The port of the source-echo server on the simulated internet, and of the listeners that
/// stand in every namespace for "a service someone might try to reach from outside".
pub const ECHO_PORT: u16 = 8000;
pub const LISTEN_PORT: u16 = 9000;

/// Set in the child's environment: the process is inside its sandbox.
pub const ENV: &str = "NSFW_SANDBOXED";

/// The simulated upstream: the sandbox's `uplink` leads to namespace `wan`.
pub const WAN_NS: &str = "wan";
pub const UPLINK: &str = "uplink";
pub const UPLINK_ADDR: &str = "198.51.100.1/24";
pub const WAN_ADDR: &str = "198.51.100.2/24";
/// An "internet" server address, on the `wan` namespace's loopback.
pub const INTERNET_ADDR: &str = "203.0.113.10/32";

pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

/// Runs `program args` inside a new sandbox and waits for it. Call it before starting any
/// thread (see the SAFETY note below). /run/netns and /etc/netns are
/// created first if missing (a tmpfs needs a mount point) and removed afterwards if this call
/// created them and they are empty again.
pub fn run(program: &Path, args: &[OsString]) -> Result<ExitStatus> {
    let mut created = Vec::new();
    for d in [netns::RUN_DIR, netns::ETC_DIR] {
        if !Path::new(d).exists() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {d}"))?;
            created.push(d);
        }
    }
    let mut cmd = Command::new(program);
    cmd.args(args).env(ENV, "1");
    // SAFETY: the hook runs in the child between fork and exec. It makes syscalls and lets nix
    // build C strings (allocation), which is sound because callers run this before the process
    // has started any thread (`try` and `sandbox` call it first thing): no lock can be held.
    unsafe {
        cmd.pre_exec(|| {
            let io = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
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
            for d in [netns::RUN_DIR, netns::ETC_DIR] {
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
        .status()
        .with_context(|| format!("cannot start the sandbox ({})", program.display()));
    for d in created {
        let _ = std::fs::remove_dir(d);
    }
    status
}

/// Inside the sandbox: brings `lo` up and builds the simulated upstream, `uplink`
/// (198.51.100.1) ⇄ `wan` (198.51.100.2, with 203.0.113.10 on its loopback), with the sandbox's
/// default route pointing at `wan`.
pub async fn build_upstream(k: &mut Kernel, t: &Topology) -> Result<()> {
    k.host
        .set(
            "cannot bring lo up",
            LinkUnspec::new_with_name("lo").up().build(),
        )
        .await?;
    let wan_ip: Ipv4Network = WAN_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    let uplink_ip: Ipv4Network = UPLINK_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    let inet: Ipv4Network = INTERNET_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    let wan_name = [WAN_NS.to_string()];
    for r in k.create_ns_many(&wan_name, Some("sandbox:wan")) {
        r?;
    }
    let fd = {
        let (fd, _) = k
            .ns(WAN_NS)?
            .ok_or_else(|| anyhow!("namespace wan vanished"))?;
        fd.try_clone()?
    };
    // The uplink is not on a bridge: a veth with no master.
    let msg = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(
        rtnetlink::packet_route::link::InfoKind::Veth,
    )
    .name(UPLINK.to_string())
    .up()
    .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
        rtnetlink::packet_route::link::InfoVeth::Peer(
            rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
                .name("eth0".to_string())
                .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .build(),
        ),
    ))
    .build();
    k.host
        .add_link("cannot create the uplink veth", msg)
        .await?;
    let i = k.host.index_of(UPLINK).await?;
    k.host.add_addr(UPLINK, i, uplink_ip).await?;
    k.host.add_default_route(wan_ip.ip(), i).await?;
    let (_, wan) = k
        .ns(WAN_NS)?
        .ok_or_else(|| anyhow!("namespace wan vanished"))?;
    wan.set(
        "cannot bring eth0 up",
        LinkUnspec::new_with_name("eth0").up().build(),
    )
    .await?;
    let we = wan.index_of("eth0").await?;
    wan.add_addr("eth0", we, wan_ip).await?;
    let lo = wan.index_of("lo").await?;
    wan.add_addr("lo", lo, inet).await?;
    // The "internet" knows its way back to the bridges' subnets through the host, so only
    // nsfw's rules stand between it and the namespaces.
    for b in &t.bridges {
        let msg = rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(b.subnet().network(), b.subnet().prefix())
            .gateway(uplink_ip.ip())
            .build();
        wan.add_route(msg, &format!("route to {} via the host", b.subnet()))
            .await?;
    }
    Ok(())
}

/// Starts the servers the upstream checks talk to: the source echo in `wan`, a listener in
/// every namespace.
pub fn start_servers(t: &Topology) -> Result<()> {
    let inet: Ipv4Network = INTERNET_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    probe::serve_source_echo(WAN_NS, std::net::SocketAddrV4::new(inet.ip(), ECHO_PORT))?;
    for n in &t.namespaces {
        probe::serve_listener(
            &n.name,
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, LISTEN_PORT),
        )?;
    }
    Ok(())
}

/// The checks that need the simulated upstream: every namespace reaches the internet (when
/// the host forwards), seen there as the uplink's address when its bridge masquerades out of
/// it (as itself otherwise); nothing from the internet reaches a namespace unasked.
pub fn upstream_checks(t: &Topology) -> Result<Vec<Check>> {
    let inet: Ipv4Network = INTERNET_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    let uplink: Ipv4Network = UPLINK_ADDR.parse().map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::new();
    // The sandbox starts with forwarding off: the namespaces reach out only if the file turns
    // it on (explicitly, or by masquerading).
    let forwarding = t.host.ip_forward == Some(true);
    for n in &t.namespaces {
        let Some(b) = t.bridge(&n.bridge) else {
            continue;
        };
        let natted = b.masquerade && b.uplink.as_deref().is_none_or(|u| u == UPLINK);
        let want = if natted { uplink.ip() } else { n.address.ip() };
        out.push(Check {
            from: n.name.clone(),
            to_label: "internet".into(),
            to: inet.ip(),
            probe: Probe::SourceSeen {
                port: ECHO_PORT,
                want,
            },
            expect: forwarding,
        });
    }
    for n in &t.namespaces {
        out.push(Check {
            from: WAN_NS.into(),
            to_label: n.name.clone(),
            to: n.address.ip(),
            probe: Probe::Tcp(LISTEN_PORT),
            expect: false,
        });
    }
    Ok(out)
}
