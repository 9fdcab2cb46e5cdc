//! The grow trial (issue 21): N namespaces on 4 bridges applied, then what one namespace
//! more or less costs — nsfw's apply of the file with one more, the apply back, a no-op
//! apply and diff — beside the imperative way of adding one in the same sandbox with the N
//! there: `ip netns add` and one ADD of the reference CNI `bridge` plugin (host-local IPAM)
//! onto br0. And the cold apply by the binary before the change (`--before`), alone in its
//! own sandbox.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::run::{Res, median, nsfw_bin, timed};

/// How many times each one-namespace change is repeated inside a trial (the median is kept).
const REPEAT: usize = 5;

/// `n` namespaces on 4 bridges (a /21 each, room for 2,000); with `extra`, one more on br0.
pub fn topology(n: usize, extra: bool) -> String {
    let mut s = String::from("name = \"bench\"\n");
    for b in 0..4 {
        s.push_str(&format!(
            "[bridges.br{b}]\naddress = \"10.{}.0.1/21\"\nmasquerade = true\n",
            100 + 8 * b
        ));
    }
    for i in 0..n {
        let (b, a) = (i % 4, i / 4 + 2);
        s.push_str(&format!(
            "[namespaces.ns{i}]\nbridge = \"br{b}\"\naddress = \"10.{}.{}.{}/21\"\n",
            100 + 8 * b,
            a / 256,
            a % 256
        ));
    }
    if extra {
        s.push_str("[namespaces.extra]\nbridge = \"br0\"\naddress = \"10.100.7.250/21\"\n");
    }
    s
}

fn out(label: &str, ms: f64, rss: u64) {
    println!("{label} {ms:.3} {rss}");
}

/// One reference ADD: `ip netns add` and the `bridge` plugin onto br0 (no gateway address of
/// its own: br0 has nsfw's), timed together.
fn cni_add(dir: &Path, k: usize) -> Res<f64> {
    let id = format!("cni{k}");
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","name":"grow","type":"bridge","bridge":"br0","isGateway":false,"ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.100.0.0/21","rangeStart":"10.100.7.100","rangeEnd":"10.100.7.200","gateway":"10.100.0.1"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        dir.join("ipam").display()
    );
    let t = Instant::now();
    timed(Command::new("ip").args(["netns", "add", &id]))?;
    let mut c = Command::new("/usr/lib/cni/bridge")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &id)
        .env("CNI_NETNS", format!("/run/netns/{id}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin.take().ok_or("stdin")?.write_all(conf.as_bytes())?;
    let o = c.wait_with_output()?;
    if !o.status.success() {
        return Err(format!("bridge ADD: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// nsfw's figures at `n`, and the reference beside them.
pub fn grow(n: usize, dir: &Path) -> Res<()> {
    let nsfw = nsfw_bin();
    let a = dir.join("a.toml");
    let b = dir.join("b.toml");
    std::fs::write(&a, topology(n, false))?;
    std::fs::write(&b, topology(n, true))?;
    let (cold, rss) = timed(Command::new(&nsfw).arg("apply").arg(&a))?;
    out("grow_cold", cold, rss);
    let mut s: [Vec<f64>; 4] = Default::default();
    let mut peak = 0;
    for _ in 0..REPEAT {
        for (i, (cmd, f)) in [("apply", &a), ("diff", &a), ("apply", &b), ("apply", &a)]
            .into_iter()
            .enumerate()
        {
            let (ms, kib) = timed(Command::new(&nsfw).arg(cmd).arg(f))?;
            s[i].push(ms);
            peak = peak.max(kib);
        }
    }
    for (label, v) in ["grow_noop", "grow_diff", "grow_add", "grow_remove"]
        .into_iter()
        .zip(s)
    {
        out(label, median(v), peak);
    }
    // watch's memory may not be served at every size (its answer has 100 ms to come): the
    // row then says so rather than the whole part failing.
    if let Err(e) = beside_watch(n, dir, &nsfw) {
        eprintln!("grow N={n} beside watch: {e}");
        out("grow_watch_unserved", 1.0, 0);
    }
    let mut cni = Vec::new();
    for k in 0..REPEAT {
        cni.push(cni_add(dir, k)?);
    }
    out("grow_cni", median(cni), 0);
    Ok(())
}

/// Waits until the watch of `f` vouches for at least `n` namespaces (its check after the
/// last change done), at most 30 s.
fn settled(nsfw: &Path, f: &Path, n: usize) -> Res<()> {
    // Past watch's debounce (200 ms): its check of the last change has begun or is done.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let t = Instant::now();
    while t.elapsed().as_secs() < 30 {
        // The file may hold a change not applied yet: diff then exits 2, and still says
        // what watch's memory vouched for.
        let o = Command::new(nsfw)
            .env("NSFW_WATCH_MEMORY", "1")
            .env("NSFW_TIMING", "1")
            .arg("diff")
            .arg(f)
            .output()?;
        if !matches!(o.status.code(), Some(0 | 2)) {
            return Err(format!(
                "diff {} failed: {}",
                f.display(),
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
        let err = String::from_utf8_lossy(&o.stderr);
        // "memory: K namespace(s) from watch's memory, ..." (other "memory:" lines say more).
        let k = err
            .lines()
            .filter_map(|l| l.strip_prefix("memory: "))
            .find_map(|l| l.split(' ').next().and_then(|k| k.parse::<usize>().ok()));
        if k.is_some_and(|k| k >= n) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(format!("watch never vouched for {n} namespaces").into())
}

/// The same changes with `nsfw watch` running beside (its memory served to apply and diff),
/// settled before each edit and each timed run. The file is edited in place, as a user would:
/// watch follows it.
fn beside_watch(n: usize, dir: &Path, nsfw: &Path) -> Res<()> {
    let f = dir.join("w.toml");
    let (a, b) = (topology(n, false), topology(n, true));
    std::fs::write(&f, &a)?;
    timed(Command::new(nsfw).arg("apply").arg(&f))?;
    let mut w = Command::new(nsfw)
        .arg("watch")
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut s: [Vec<f64>; 4] = Default::default();
    let mut run = || -> Res<()> {
        for _ in 0..REPEAT {
            for (i, (cmd, text)) in [("apply", &a), ("diff", &a), ("apply", &b), ("apply", &a)]
                .into_iter()
                .enumerate()
            {
                // The last run's own check done first, then the edit (which watch follows
                // at once, without repairing): else that check could find the edit and carry
                // it out itself, leaving the timed run nothing to do.
                settled(nsfw, &f, n)?;
                std::fs::write(&f, text)?;
                settled(nsfw, &f, n)?;
                let (ms, _) = timed(
                    Command::new(nsfw)
                        .env("NSFW_WATCH_MEMORY", "1")
                        .arg(cmd)
                        .arg(&f),
                )?;
                s[i].push(ms);
            }
        }
        Ok(())
    };
    let r = run();
    let _ = w.kill();
    let _ = w.wait();
    r?;
    for (label, v) in [
        "grow_watch_noop",
        "grow_watch_diff",
        "grow_watch_add",
        "grow_watch_remove",
    ]
    .into_iter()
    .zip(s)
    {
        out(label, median(v), 0);
    }
    Ok(())
}

/// The cold apply of `n` by the binary before the change.
pub fn cold_before(n: usize, dir: &Path, bin: &Path) -> Res<()> {
    let a = dir.join("a.toml");
    std::fs::write(&a, topology(n, false))?;
    let (ms, rss) = timed(Command::new(bin).arg("apply").arg(&a))?;
    out("grow_before_cold", ms, rss);
    Ok(())
}
