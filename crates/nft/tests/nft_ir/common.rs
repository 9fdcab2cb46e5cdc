//! The library's test sandbox: a fresh network namespace held open by a `sleep` (made by
//! util-linux's `unshare`), which the tests enter from a thread (`setns`) and where `nft`, the
//! witness, runs through `nsenter`. Nothing reaches the host's ruleset, and the namespace dies
//! with its holder when the sandbox is dropped, whether the test passed or not.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Sandbox {
    holder: Child,
    pid: u32,
    dir: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nsfw-nft-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // --kill-child: the namespace's holder goes when unshare does.
        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--kill-child",
                "--",
                "sh",
                "-c",
                "echo $$; exec sleep 900",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("sandbox pid");
        let pid: u32 = line.trim().parse().expect("sandbox pid");
        Sandbox { holder, pid, dir }
    }

    /// Runs a shell script in the sandbox's network namespace; it must succeed. Returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid))
            .args(["--", "bash", "-c", script])
            .output()
            .expect("run in sandbox");
        assert!(
            o.status.success(),
            "`{script}` failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes a file for the test and returns its absolute path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).expect("write test file");
        p.display().to_string()
    }

    /// The holder's pid: /proc/PID/ns/net is the sandbox's namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
