//! Metrics: `nsfw status --format openmetrics` passes `promtool check metrics` with nothing to
//! say, and its counters rise by exactly what the test sends (accepted, dropped by policy,
//! spoofed, masqueraded, published-port connections); `nsfw watch --metrics` serves the same
//! plus its own on GET /metrics, one more repair per repair provoked, as many checks in its
//! histogram as it logged, and refuses an address other hosts can reach unless told.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sandbox, net_py, show};

const LAB: &str = "name = \"mx\"
[bridges.br0]
address = \"10.10.0.1/24\"
masquerade = true
[namespaces.ns1]
bridge = \"br0\"
address = \"10.10.0.2/24\"
publish = [\"8080:80/tcp\"]
[namespaces.ns2]
bridge = \"br0\"
address = \"10.10.0.3/24\"
[[deny]]
from = \"ns2\"
to = \"ns1\"
ports = [\"icmp\"]
";

/// `promtool check metrics` on `text`: it must exit 0 and say nothing (no lint problem).
fn promtool(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (prometheus; scripts/install-deps installs it)");
    std::io::Write::write_all(&mut p.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let o = p.wait_with_output().expect("promtool");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool:\n{}\n--- metrics\n{text}",
        show(&o)
    );
}

/// The value of the sample whose name and labels start as `sample` (`name{a="b"`).
fn value(text: &str, sample: &str) -> f64 {
    let hits: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(sample))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(hits.len(), 1, "{sample}: {hits:?} in\n{text}");
    hits[0]
}

fn status(sb: &Sandbox) -> String {
    sb.nsfw_code(&["status", "--format", "openmetrics"], 0)
}

#[test]
fn status_metrics_lint_clean_and_count_exactly_what_was_sent() {
    let Some(sb) = Sandbox::or_skip() else { return };
    sb.upstream(&["10.10.0.0/24"]);
    let f = sb.file("mx.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    sb.serve(Some("ns1"), "tcp", &[80]);
    let m0 = status(&sb);
    promtool(&m0);
    assert!(m0.ends_with("# EOF\n"), "{m0}");
    let judge = |m: &str, v: &str| {
        value(
            m,
            &format!("nsfw_chain_packets_total{{topology=\"mx\",chain=\"judge\",verdict=\"{v}\"}}"),
        )
    };

    // Three echoes out to the world and their replies: six packets accepted, one connection
    // masqueraded (the echoes share their conntrack entry).
    sb.ok("ip netns exec ns1 ping -c 3 -i 0.2 -W 1 -q 203.0.113.10");
    let m1 = status(&sb);
    assert_eq!(judge(&m1, "accept") - judge(&m0, "accept"), 6.0);
    let masq = "nsfw_masqueraded_connections_total{topology=\"mx\",source=\"10.10.0.0/24\"}";
    assert_eq!(value(&m1, masq) - value(&m0, masq), 1.0);

    // Three connections from the world to the published port.
    for _ in 0..3 {
        assert!(sb.ask(Some("wan"), "tcp", "198.51.100.1", 8080).is_some());
    }
    let m2 = status(&sb);
    let hits = "nsfw_published_port_connections_total{topology=\"mx\",protocol=\"tcp\",host_address=\"\",host_port=\"8080\",namespace=\"ns1\",port=\"80\"}";
    assert_eq!(value(&m2, hits) - value(&m1, hits), 3.0);

    // Three echoes the policy denies (each a new connection, each dropped), counted against
    // the namespace they came from and the one they were for.
    let o = sb.sh("ip netns exec ns2 ping -c 3 -i 0.2 -W 1 -q 10.10.0.2");
    assert!(!o.status.success(), "{}", show(&o));
    // Three datagrams with a forged source.
    sb.ok(&format!(
        "ip netns exec ns1 {} spoof 192.0.2.99 203.0.113.10 9",
        net_py()
    ));
    let m3 = status(&sb);
    promtool(&m3);
    let ns = |m: &str, n: &str, d: &str| {
        value(
            m,
            &format!(
                "nsfw_namespace_dropped_packets_total{{topology=\"mx\",namespace=\"{n}\",direction=\"{d}\"}}"
            ),
        )
    };
    assert_eq!(ns(&m3, "ns2", "from") - ns(&m2, "ns2", "from"), 3.0);
    assert_eq!(ns(&m3, "ns1", "to") - ns(&m2, "ns1", "to"), 3.0);
    assert_eq!(ns(&m3, "ns1", "from") - ns(&m2, "ns1", "from"), 0.0);
    let denied = "nsfw_dropped_packets_total{topology=\"mx\",chain=\"judge\",reason=\"denied\"}";
    assert_eq!(value(&m3, denied) - value(&m2, denied), 3.0);
    let spoof = "nsfw_antispoofing_dropped_packets_total{topology=\"mx\",family=\"ipv4\"}";
    assert_eq!(value(&m3, spoof) - value(&m2, spoof), 3.0);
    // The forged datagrams are dropped at ns1's bridge port (port security's `identity`
    // chain), before the forward hook: the denied echoes are judge's.
    assert_eq!(judge(&m3, "drop") - judge(&m2, "drop"), 3.0);
    let at_port =
        "nsfw_dropped_packets_total{topology=\"mx\",chain=\"identity\",reason=\"spoofed\"}";
    assert_eq!(value(&m3, at_port) - value(&m2, at_port), 3.0);
    // The text status says the same.
    let text = sb.nsfw_code(&["status"], 0);
    assert!(
        text.contains("dropped ns2: 3 packets from it, 0 packets to it"),
        "{text}"
    );
    assert!(text.contains("(3 connection(s))"), "{text}");
}

/// `nsfw -v watch --metrics …` in the sandbox, its output collected.
struct Watcher {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(sb: &Sandbox, args: &[&str]) -> Watcher {
        let mut child = sb.spawn_nsfw(args);
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let o = out.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    o.lock().expect("lock").push_str(&(l + "\n"));
                }
            });
        }
        Watcher { child, out }
    }

    fn text(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    fn wait_for(&self, what: &str) {
        let t0 = Instant::now();
        while !self.text().contains(what) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no {what:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP request to the sandbox's 127.0.0.1:`port` (bash's /dev/tcp): the whole answer.
fn http(sb: &Sandbox, port: u16, request: &str) -> String {
    sb.ok(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf '{request}' >&3; timeout 5 cat <&3"
    ))
}

fn scrape(sb: &Sandbox) -> String {
    let a = http(sb, 9842, "GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
    let (head, body) = a.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{a}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// Waits until `f` of a scrape holds; returns that scrape.
fn until(sb: &Sandbox, what: &str, f: &dyn Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let m = scrape(sb);
        if f(&m) {
            return m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{what} never held:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_serves_metrics_with_a_repair_per_repair_and_a_check_per_check() {
    let Some(sb) = Sandbox::or_skip() else { return };
    let f = sb.file("mx.toml", LAB);
    sb.nsfw_code(&["apply", &f], 0);
    // Only where told: an address other hosts can reach is refused at once.
    let o = sb.nsfw(&["watch", "--metrics", "0.0.0.0:9842", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--metrics-public"),
        "{}",
        show(&o)
    );

    let w = Watcher::start(&sb, &["-v", "watch", "--metrics", "127.0.0.1:9842", &f]);
    w.wait_for("metrics on http://127.0.0.1:9842/metrics");
    w.wait_for("checked in");
    let m0 = scrape(&sb);
    promtool(&m0);
    assert!(
        m0.contains("nsfw_chain_packets_total{topology=\"mx\""),
        "{m0}"
    );
    assert!(http(&sb, 9842, "GET /other HTTP/1.0\\r\\n\\r\\n").starts_with("HTTP/1.1 404"));
    let repairs = "nsfw_watch_repairs_total{topology=\"mx\",result=\"repaired\"}";
    let r0 = value(&m0, repairs);
    for (n, drift) in [
        (1.0, "ip -n ns1 route del default"),
        (
            2.0,
            "nft delete element inet nsfw_mx publish4 '{ tcp . 8080 }'",
        ),
    ] {
        sb.ok(drift);
        until(&sb, drift, &|m| value(m, repairs) >= r0 + n);
        // Exactly one repair for it, however many checks follow.
        std::thread::sleep(Duration::from_millis(600));
        let m = scrape(&sb);
        assert_eq!(value(&m, repairs), r0 + n, "{}", w.text());
    }
    sb.ok("ip -n ns1 route show default | grep -q 10.10.0.1");
    // Every check watch made is in the histogram: as many as it logged, once it is quiet.
    let logged = || w.text().matches("checked in").count() as f64;
    let checks = "nsfw_watch_check_duration_seconds_count{topology=\"mx\"}";
    let m = until(&sb, "the check count", &|m| value(m, checks) == logged());
    promtool(&m);
    assert!(value(&m, checks) >= 3.0, "{m}");
    let repaired = "nsfw_watch_repair_duration_seconds_count{topology=\"mx\"}";
    assert_eq!(value(&m, repaired), r0 + 2.0);
    assert_eq!(
        value(&m, "nsfw_watch_drift_total{topology=\"mx\"}"),
        r0 + 2.0
    );
    assert!(
        value(
            &m,
            "nsfw_watch_repaired_objects_total{topology=\"mx\",kind=\"route\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &m,
            "nsfw_watch_repaired_objects_total{topology=\"mx\",kind=\"nft\"}"
        ) >= 1.0
    );
}

/// The README's scrape configuration and PromQL queries, as promtool reads them.
#[test]
fn the_readme_monitoring_examples_are_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let block = |lang: &str| -> String {
        let start = readme
            .find(&format!("```{lang}\n"))
            .unwrap_or_else(|| panic!("no {lang} block"));
        let rest = &readme[start + lang.len() + 4..];
        rest[..rest.find("```").expect("end")].to_string()
    };
    let dir = std::env::temp_dir().join(format!("nsfw-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, block("yaml for=prometheus")).expect("write");
    let o = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .expect("promtool");
    assert!(o.status.success(), "{}", show(&o));
    let queries: Vec<String> = block("promql")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(queries.len(), 3);
    let mut rules = String::from("groups:\n  - name: readme\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: nsfw:readme_{i}\n        expr: '{q}'\n"
        ));
        // Each names metrics nsfw exports.
        assert!(
            q.contains("nsfw_namespace_dropped_packets_total")
                || q.contains("nsfw_watch_repairs_total")
                || q.contains("nsfw_watch_repair_duration_seconds_bucket"),
            "{q}"
        );
    }
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).expect("write");
    let o = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .expect("promtool");
    assert!(o.status.success(), "{}", show(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
