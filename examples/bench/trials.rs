//! The trials, each run inside a fresh sandbox by `bench --inner KIND N DIR [BIN]`: they do
//! the kernel work and print `label value rss_kib` lines for the outer run to collect.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::baselines::{batch_files, classic_script};
use crate::run::{Res, nsfw_bin, sh, timed, timed_stderr};
use crate::topologies::{Ports, publish_topology, topology};
use crate::traffic::{dataplane, publish_dataplane};

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
        "publish" => publish(dir)?,
        "dataplane" => dataplane(dir)?,
        "pubdp" => publish_dataplane(dir)?,
        _ => return Err(format!("unknown trial {kind}").into()),
    }
    Ok(())
}

/// 10,000 published ports: full cold apply; the table alone by nsfw and by `nft -f` (A B B A);
/// no-op apply; one host port changed (four times, there and back).
fn publish(dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let f = dir.join("pub.toml");
    let moved = dir.join("pub-moved.toml");
    let nft_file = dir.join("pub.nft");
    std::fs::write(&f, publish_topology(Ports::All { moved: false }))?;
    std::fs::write(&moved, publish_topology(Ports::All { moved: true }))?;
    // Exactly the ruleset apply loads, in nft syntax: what `nft -f` is given.
    let show = Command::new(&nsfw).arg("show").arg(&f).output()?;
    if !show.status.success() {
        return Err(format!("nsfw show: {}", String::from_utf8_lossy(&show.stderr)).into());
    }
    std::fs::write(&nft_file, &show.stdout)?;

    let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    println!("pub_cold {ms:.3} {rss}");
    let drop_table = "nft delete table inet nsfw_bench";
    let mut checked = false;
    for by_nsfw in [true, false, false, true] {
        sh(drop_table)?;
        if by_nsfw {
            let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
            println!("pub_table_nsfw {ms:.3} {rss}");
        } else {
            let (ms, rss) = timed(Command::new("nft").arg("-f").arg(&nft_file))?;
            println!("pub_table_nft {ms:.3} {rss}");
            if !checked {
                // Both sides must leave the same kernel state: nsfw finds nothing to do after
                // nft -f (exit 0; 2 would mean changes pending).
                let st = Command::new(&nsfw)
                    .arg("diff")
                    .arg(&f)
                    .stdout(Stdio::null())
                    .status()?;
                if !st.success() {
                    return Err("after nft -f of nsfw show's output, nsfw diff is not clean".into());
                }
                checked = true;
            }
        }
    }
    // The loop ends on nsfw's side: the topology is applied.
    let (ms, rss) = timed(Command::new(&nsfw).arg("apply").arg(&f))?;
    println!("pub_noop {ms:.3} {rss}");
    for file in [&moved, &f, &moved, &f] {
        let (ms, rss, err) = timed_stderr(Command::new(&nsfw).args(["apply", "-v"]).arg(file))?;
        println!("pub_change {ms:.3} {rss}");
        // `timing: nft batch of N messages (B bytes): T`
        let (msgs, bytes) = err
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("timing: nft batch of ")?;
                let (m, rest) = rest.split_once(" messages (")?;
                let (b, _) = rest.split_once(" bytes)")?;
                Some((m.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            })
            .ok_or("apply -v printed no nft batch line")?;
        println!("pub_change_msgs {msgs} 0");
        println!("pub_change_bytes {bytes} 0");
    }
    Ok(())
}
