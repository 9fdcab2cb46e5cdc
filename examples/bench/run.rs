//! Running things: whole commands timed with their peak RSS, one trial in a fresh sandbox,
//! and the samples those trials print.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub fn nsfw_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/release/examples/bench → target/release/nsfw
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("nsfw"))
        .expect("nsfw binary")
}

/// Runs a command to completion; returns (wall ms, peak RSS KiB).
pub fn timed(cmd: &mut Command) -> Res<(f64, u64)> {
    timed_stderr(cmd).map(|(ms, rss, _)| (ms, rss))
}

/// `timed`, also returning what the command wrote on stderr (it must be small: it is read
/// only once the command has ended).
pub fn timed_stderr(cmd: &mut Command) -> Res<(f64, u64, String)> {
    let t = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; `child` is not waited on elsewhere.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if r < 0 {
        return Err("wait4 failed".into());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr {
        let _ = e.read_to_string(&mut err);
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("{cmd:?} failed: {err}").into());
    }
    Ok((ms, ru.ru_maxrss as u64, err))
}

pub fn sh(script: &str) -> Res<()> {
    let o = Command::new("bash").args(["-c", script]).output()?;
    if !o.status.success() {
        return Err(format!("`{script}` failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    Ok(())
}

/// Runs one trial in a fresh sandbox and collects its numbers.
pub fn trial(kind: &str, n: usize, bin: Option<&Path>) -> Res<Vec<(String, (f64, u64))>> {
    let n = if kind == "dp" { 2 } else { n };
    let dir = std::env::temp_dir().join(format!("nsfw-bench-{}-{kind}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(nsfw_bin());
    cmd.arg("sandbox")
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(["--inner", kind, &n.to_string()])
        .arg(&dir);
    if let Some(b) = bin {
        cmd.arg(b);
    }
    let o = cmd.output()?;
    let _ = std::fs::remove_dir_all(&dir);
    // What a trial says on stderr (each data-plane measurement) is progress for the reader.
    if o.status.success() {
        eprint!("{}", String::from_utf8_lossy(&o.stderr));
    }
    // The kernel tears the sandbox's namespaces down asynchronously after it exits; let that
    // finish so it does not land in the next trial's time.
    static LAST_N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let last = LAST_N.swap(n, std::sync::atomic::Ordering::Relaxed).max(n);
    std::thread::sleep(Duration::from_millis(300 + 4 * last as u64));
    if !o.status.success() {
        return Err(format!(
            "trial {kind} {n} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    let mut m = Vec::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let [label, ms, rss] = w[..] {
            m.push((label.to_string(), (ms.parse()?, rss.parse()?)));
        }
    }
    Ok(m)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Figures by label, every sample kept.
#[derive(Default)]
pub struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    pub fn add(&mut self, trial: Vec<(String, (f64, u64))>) {
        for (k, (v, _)) in trial {
            self.0.entry(k).or_default().push(v);
        }
    }
    pub fn median(&self, k: &str) -> f64 {
        self.0.get(k).map(|v| median(v.clone())).unwrap_or(f64::NAN)
    }
    pub fn count(&self, k: &str) -> usize {
        self.0.get(k).map_or(0, Vec::len)
    }
    /// "2" when every sample is 2, "2–3" otherwise.
    pub fn span(&self, k: &str) -> String {
        let v = self.0.get(k).cloned().unwrap_or_default();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo == hi {
            format!("{lo:.0}")
        } else {
            format!("{lo:.0}–{hi:.0}")
        }
    }
}
