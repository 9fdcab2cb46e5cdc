//! The library's test sandbox: a fresh network namespace held open by a shell (made by
//! util-linux's `unshare`), which the tests enter from a thread (`setns`) and where `nft`, the
//! witness, runs through `nsenter`. The shell is init of a PID namespace of its own, in which
//! whatever the witness starts is born. Nothing reaches the host's ruleset, and the namespace
//! and every process in it die with the holder when the sandbox is dropped, whether the test
//! passed or not. The tests need root: without it they skip, saying so ([`Sandbox::or_skip`]).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Sandbox {
    holder: Child,
    pid: u32,
    dir: PathBuf,
}

/// True, after saying so on the harness's own stderr (not captured), when the kernel tests
/// cannot run here: they need root (network namespaces, nftables).
pub fn skip_without_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    let me = std::thread::current();
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {} needs root (network namespaces, nftables); `cargo test` as root runs it",
        me.name().unwrap_or("this test")
    );
    true
}

impl Sandbox {
    /// A sandbox, or None when the kernel tests cannot run here (not root), said on stderr.
    pub fn or_skip() -> Option<Sandbox> {
        (!skip_without_root()).then(Sandbox::new)
    }

    pub fn new() -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nsfw-nft-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // The holder says its pid as the test sees it (/proc/self of the host's /proc; `$$`
        // would say 1 in its namespace), then waits for the end of its input: the test closes
        // it when the sandbox is dropped, the kernel when the test process ends.
        let mut holder = Command::new("unshare")
            .args(["--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c"])
            .arg("read -r pid rest < /proc/self/stat; echo $pid; read -r _; exit 0")
            .stdin(Stdio::piped())
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
            .arg(format!("--pid=/proc/{}/ns/pid", self.pid))
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
        // The holder, init of the PID namespace, reads the end of its input and exits: the
        // kernel then kills every process in the namespace, and unshare returns.
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
