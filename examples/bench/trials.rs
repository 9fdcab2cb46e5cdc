//! The trials, each run inside a fresh sandbox by `bench --inner KIND N DIR [BIN]`: they do
//! the kernel work and print `label value rss_kib` lines for the outer run to collect.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::baselines::{batch_files, classic_script};
use crate::run::{Res, nsfw_bin, timed};
use crate::topologies::topology;
use crate::traffic::{dataplane, policy_dataplane, publish_dataplane};
use crate::{labs, tables};

/// One trial, inside a fresh sandbox: prints `label value rss_kib` lines. `bin` is the
/// baseline binary of the `base` trial.
pub fn inner(kind: &str, n: usize, dir: &Path, bin: Option<&Path>) -> Res<()> {
    let nsfw = nsfw_bin();
    let out = |label: &str, (ms, rss): (f64, u64)| println!("{label} {ms:.3} {rss}");
    match kind {
        "classic" => {
            let f = dir.join("classic.sh");
            std::fs::write(&f, classic_script(n))?;
            out("classic", timed(Command::new("bash").arg(&f))?);
        }
        "batch" => {
            batch_files(dir, n)?;
            let t = Instant::now();
            let (floor, _) = timed(Command::new("ip").arg("-batch").arg(dir.join("host.batch")))?;
            for i in 0..n {
                timed(
                    Command::new("ip")
                        .args(["-n", &format!("ns{i}"), "-batch"])
                        .arg(dir.join(format!("ns{i}.batch"))),
                )?;
            }
            timed(Command::new("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
            timed(Command::new("nft").arg("-f").arg(dir.join("rules.nft")))?;
            out("batch", (t.elapsed().as_secs_f64() * 1000.0, 0));
            out("floor", (floor, 0));
        }
        "nsfw" | "scale" => {
            let (b, per) = if kind == "scale" { (4, n / 4) } else { (1, n) };
            let f = dir.join("bench.toml");
            std::fs::write(&f, topology(b, per))?;
            out(
                "apply_cold",
                timed(Command::new(&nsfw).arg("apply").arg(&f))?,
            );
            if kind == "nsfw" {
                out(
                    "apply_noop",
                    timed(Command::new(&nsfw).arg("apply").arg(&f))?,
                );
                out("diff", timed(Command::new(&nsfw).arg("diff").arg(&f))?);
                out("flush", timed(Command::new(&nsfw).arg("flush").arg(&f))?);
            }
        }
        "base" => {
            // The same file and the same two steps as the `nsfw` trial, by the older binary.
            let bin = bin.ok_or("the base trial needs the baseline binary")?;
            let f = dir.join("bench.toml");
            std::fs::write(&f, topology(1, n))?;
            out("base_cold", timed(Command::new(bin).arg("apply").arg(&f))?);
            out("base_noop", timed(Command::new(bin).arg("apply").arg(&f))?);
        }
        "publish" => tables::publish(dir, bin)?,
        "policy" => tables::policy(dir)?,
        "routed" | "flat" | "hand" => labs::routed(kind, n, dir)?,
        "dual6" | "dual4" => labs::dual(n, kind == "dual6", dir)?,
        "dp" => dataplane(dir)?,
        "pubdp" => publish_dataplane(dir)?,
        "poldp" => policy_dataplane(dir)?,
        "watch" => crate::fight::watch(n, dir)?,
        "grow" => crate::grow::grow(n, dir)?,
        "grow_before" => {
            crate::grow::cold_before(n, dir, bin.ok_or("grow_before needs --before")?)?
        }
        "adopt" => adopt(&nsfw, n, dir, &out)?,
        _ => return Err(format!("unknown trial {kind}").into()),
    }
    Ok(())
}

/// The classic script's lab of `n` namespaces built by hand, imported, and adopted; then
/// flushed, and the same file applied to the empty host: adopt against a cold apply.
fn adopt(nsfw: &Path, n: usize, dir: &Path, out: &dyn Fn(&str, (f64, u64))) -> Res<()> {
    let f = dir.join("classic.sh");
    std::fs::write(&f, classic_script(n))?;
    timed(Command::new("bash").arg(&f))?;
    let lab = dir.join("lab.toml");
    let t = Instant::now();
    let o = Command::new(nsfw).arg("import").output()?;
    out("import", (t.elapsed().as_secs_f64() * 1000.0, 0));
    if !o.status.success() {
        return Err(format!("import: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    std::fs::write(&lab, &o.stdout)?;
    out(
        "adopt",
        timed(Command::new(nsfw).args(["apply", "--adopt"]).arg(&lab))?,
    );
    timed(Command::new(nsfw).arg("flush").arg(&lab))?;
    out(
        "adopt_cold",
        timed(Command::new(nsfw).arg("apply").arg(&lab))?,
    );
    Ok(())
}
