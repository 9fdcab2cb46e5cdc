//! The routed and the dual-stack labs, inside a sandbox: nsfw's cold apply, no-op apply and
//! flush, and the same lab built and torn down by hand.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::baselines::routed_files;
use crate::run::{Res, nsfw_bin, sh, timed};
use crate::topologies::{dual_topology, routed_topology, topology};

/// Router namespaces of the routed lab; each has `n / ROUTERS` namespaces behind it.
pub const ROUTERS: usize = 3;

fn out(label: &str, (ms, rss): (f64, u64)) {
    println!("{label} {ms:.3} {rss}");
}

/// The routed lab is really routed: a namespace behind the last router reaches one behind the
/// first (through both routers and the core bridge). Untimed; a lab that does not work would
/// make its times meaningless.
fn check_routed(routers: usize) -> Res<()> {
    sh(&format!(
        "ip netns exec s{}x0 ping -c1 -W2 10.100.0.2 >/dev/null",
        routers - 1
    ))
}

/// `kind`: `routed` (nsfw's routed lab), `flat` (nsfw, the same namespaces on `ROUTERS`
/// masquerading bridges, no routers), `hand` (the routed lab by `ip -batch` + `nft -f`).
/// Prints `{kind}_cold`, `{kind}_noop` (not for `hand`) and `{kind}_flush`.
pub fn routed(kind: &str, n: usize, dir: &Path) -> Res<()> {
    let per = n / ROUTERS;
    let nsfw = nsfw_bin();
    let f = dir.join("routed.toml");
    match kind {
        "routed" | "flat" => {
            let text = if kind == "routed" {
                routed_topology(ROUTERS, per)
            } else {
                topology(ROUTERS, per + 1)
            };
            std::fs::write(&f, text)?;
            out(
                &format!("{kind}_cold"),
                timed(Command::new(&nsfw).arg("apply").arg(&f))?,
            );
            if kind == "routed" {
                check_routed(ROUTERS)?;
            }
            out(
                &format!("{kind}_noop"),
                timed(Command::new(&nsfw).arg("apply").arg(&f))?,
            );
            out(
                &format!("{kind}_flush"),
                timed(Command::new(&nsfw).arg("flush").arg(&f))?,
            );
        }
        "hand" => {
            let routers = routed_files(dir, ROUTERS, per)?;
            let t = Instant::now();
            timed(Command::new("ip").arg("-batch").arg(dir.join("host.batch")))?;
            for r in &routers {
                timed(
                    Command::new("ip")
                        .args(["-n", r, "-batch"])
                        .arg(dir.join(format!("{r}.batch"))),
                )?;
                timed(Command::new("ip").args([
                    "netns",
                    "exec",
                    r,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ]))?;
            }
            for r in 0..ROUTERS {
                for i in 0..per {
                    timed(
                        Command::new("ip")
                            .args(["-n", &format!("s{r}x{i}"), "-batch"])
                            .arg(dir.join(format!("s{r}x{i}.batch"))),
                    )?;
                }
            }
            timed(Command::new("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
            timed(Command::new("nft").arg("-f").arg(dir.join("host.nft")))?;
            out("hand_cold", (t.elapsed().as_secs_f64() * 1000.0, 0));
            check_routed(ROUTERS)?;
            let t = Instant::now();
            timed(
                Command::new("ip")
                    .arg("-batch")
                    .arg(dir.join("teardown.batch")),
            )?;
            timed(Command::new("nft").args(["delete", "table", "inet", "lab"]))?;
            out("hand_flush", (t.elapsed().as_secs_f64() * 1000.0, 0));
        }
        _ => return Err(format!("unknown routed trial {kind}").into()),
    }
    Ok(())
}

/// `n` namespaces on one bridge, dual-stack (`v6`) or IPv4 only: prints `dual6_cold`,
/// `dual6_noop` or `dual4_cold`, `dual4_noop`.
pub fn dual(n: usize, v6: bool, dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("dual.toml");
    std::fs::write(&f, dual_topology(n, v6))?;
    let p = if v6 { "dual6" } else { "dual4" };
    out(
        &format!("{p}_cold"),
        timed(Command::new(&nsfw).arg("apply").arg(&f))?,
    );
    if v6 {
        // Dual-stack for real: the last namespace reaches the first over IPv6. Untimed.
        sh(&format!(
            "ip netns exec ns0x{} ping -6 -c1 -W2 fd00:100::2 >/dev/null",
            n - 1
        ))?;
    }
    out(
        &format!("{p}_noop"),
        timed(Command::new(&nsfw).arg("apply").arg(&f))?,
    );
    Ok(())
}
