//! `nsfw drops`: what nsfw's table drops, said in the file's terms. Every drop of the filter
//! chains passes a rate-limited `log group 28275` with a prefix naming the topology and the
//! reason (`firewall::droplog`); this reads that group over netlink (`nflog`), explains each
//! packet (`explain`: its ends, protocol and port, the entry of the file and its line), and
//! prints one line per drop, or a summary of a flood ("N more like this").
//!
//! The kernel keeps no record of single drops and nsfw keeps no files but its lock and record:
//! without `--follow` this prints what the kernel counted per reason since the table was
//! loaded (each reason's chain has a counter); with `--follow`, the drops as they happen.

mod explain;
mod nflog;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use serde_json::{Value as Json, json};

use crate::firewall::droplog::{self, CHAIN_PREFIX, GROUP};
use crate::owner;
use crate::topology::Topology;
use explain::{Drop, Names};
use nft::socket::NftSocket;
use nft::{Family, Stmt, Verdict};

/// How long repeats of a drop are counted before they are summarised.
pub(crate) const WINDOW: Duration = Duration::from_secs(2);

/// The reasons, in the order the tally lists them.
const REASONS: [&str; 6] = ["policy", "closed", "egress", "host", "spoofed", "invalid"];

/// What `nsfw drops` was asked for.
pub(crate) struct Options {
    pub json: bool,
    /// Only drops at or after this time.
    pub since: Option<SystemTime>,
}

/// The chains whose drops go through a reason's chain (`firewall::droplog`).
const JUDGING: [&str; 3] = ["judge", "to_host", "from_host"];

/// The packets each reason dropped in topology `t`'s table: the counters of the rules that
/// go to its chain (None: no table).
fn tally(sock: &mut NftSocket, t: &Topology) -> Result<Option<Vec<(String, u64)>>> {
    let table = owner::table(&t.name);
    let ours = sock
        .tables()?
        .into_iter()
        .any(|k| k.family == Family::Inet && k.name == table);
    if !ours {
        return Ok(None);
    }
    let chains = sock.chains(Family::Inet, &table)?;
    let mut by: HashMap<String, u64> = HashMap::new();
    for c in JUDGING {
        if !chains.iter().any(|k| k.name == c) {
            continue;
        }
        for k in sock.chain_rules(Family::Inet, &table, c)? {
            let to = match k.rule.stmts.last() {
                Some(Stmt::Verdict(Verdict::Goto(to))) => to.strip_prefix(CHAIN_PREFIX),
                _ => None,
            };
            let counted = k.rule.stmts.iter().find_map(|s| match s {
                Stmt::Counter(c) => Some(c.packets),
                _ => None,
            });
            if let (Some(why), Some(n)) = (to, counted) {
                *by.entry(why.to_string()).or_default() += n;
            }
        }
    }
    Ok(Some(
        REASONS
            .iter()
            .filter_map(|r| by.get(*r).map(|n| (r.to_string(), *n)))
            .collect(),
    ))
}

/// `nsfw drops FILE` without `--follow`: the kernel's counts.
pub(crate) fn counts(t: &Topology, json: bool) -> Result<()> {
    let mut sock = NftSocket::open()?;
    let Some(counts) = tally(&mut sock, t)? else {
        bail!(
            "{}: topology {} is not on this host (no table inet {}): apply it first",
            t.source.display(),
            t.name,
            owner::table(&t.name)
        );
    };
    if json {
        let by: serde_json::Map<String, Json> =
            counts.iter().map(|(r, n)| (r.clone(), json!(n))).collect();
        crate::output::data(format_args!(
            "{}\n",
            json!({"schema": 1, "topology": t.name, "dropped": by})
        ));
        return Ok(());
    }
    crate::output::data(format_args!(
        "dropped by topology {} since its table was loaded (`nsfw drops --follow` shows each):\n",
        t.name
    ));
    for (why, n) in counts {
        crate::output::data(format_args!("  {why:<8} {n}\n"));
    }
    Ok(())
}

/// A drop's key: repeats of it are counted, not printed.
type Key = (String, std::net::IpAddr, std::net::IpAddr, u8, Option<u16>);

fn key(d: &Drop) -> Key {
    (d.reason.clone(), d.src, d.dst, d.proto, d.port)
}

/// A drop printed, and the repeats of it counted since.
struct Open {
    since: Instant,
    drop: Drop,
    more: u64,
}

/// The live stream's state.
struct Stream<'a> {
    t: &'a Topology,
    opts: &'a Options,
    sock: NftSocket,
    names: Names,
    open: HashMap<Key, Open>,
    /// Per reason: its chain's counter when last read, and the packets logged since.
    counted: HashMap<String, (u64, u64)>,
    /// When the counters were last read: at most once a [`WINDOW`] (a dump of the table's
    /// rules also reads its sets, which a large policy makes costly).
    read: Option<Instant>,
}

/// `nsfw drops FILE --follow`: until SIGINT/SIGTERM or a closed stdout.
pub(crate) fn follow(t: &Topology, opts: &Options) -> Result<()> {
    let mut log = nflog::Nflog::bind(GROUP)?;
    let mut sock = NftSocket::open()?;
    let counted = tally(&mut sock, t)?;
    if counted.is_none() {
        crate::warning!(
            "topology {} is not on this host (no table inet {}): nothing of it can be dropped until it is applied",
            t.name,
            owner::table(&t.name)
        );
    }
    let counted = counted
        .unwrap_or_default()
        .into_iter()
        .map(|(r, n)| (r, (n, 0)))
        .collect();
    let mut s = Stream {
        t,
        opts,
        sock,
        names: Names::default(),
        open: HashMap::new(),
        counted,
        read: Some(Instant::now()),
    };
    crate::detail!("reading nflog group {GROUP}");
    let mut batch = Vec::new();
    while !crate::signals::stopping() && !crate::output::stdout_gone() {
        batch.clear();
        if log.next(&mut batch)? {
            crate::warning!(
                "the kernel could not pass every logged drop (its socket buffer was full); some are missing"
            );
        }
        if !batch.is_empty() {
            crate::detail!("nflog: {} packets", batch.len());
        }
        for l in batch.drain(..) {
            s.one(&l);
        }
        s.close(false);
    }
    s.close(true);
    Ok(())
}

impl Stream<'_> {
    fn one(&mut self, l: &nflog::Logged) {
        let Some((topology, reason)) = owner::parse_log_prefix(&l.prefix) else {
            crate::detail!("nflog: a packet of another prefix ({:?})", l.prefix);
            return;
        };
        if topology != self.t.name {
            crate::detail!("nflog: a drop of topology {topology}");
            return;
        }
        if self.opts.since.is_some_and(|s| l.time < s) {
            return;
        }
        if let Some(c) = self.counted.get_mut(reason) {
            c.1 += 1;
        }
        let Some(d) = explain::explain(self.t, reason, l, &mut self.names) else {
            crate::detail!(
                "nflog: a packet too short to read ({} bytes)",
                l.packet.len()
            );
            return;
        };
        if let Some(o) = self.open.get_mut(&key(&d)) {
            o.more += 1;
            return;
        }
        print(&line(&d, l.time), &record(&d, l.time), self.opts.json);
        self.open.insert(
            key(&d),
            Open {
                since: Instant::now(),
                drop: d,
                more: 0,
            },
        );
    }

    /// Summarises the repeats of every drop printed more than [`WINDOW`] ago (`all`: of
    /// every drop printed), with what the kernel dropped for the same reason without logging.
    fn close(&mut self, all: bool) {
        let done: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| all || o.since.elapsed() >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            let Some(o) = self.open.remove(&k) else {
                continue;
            };
            let unlogged = self.unlogged(&o.drop.reason, all);
            if o.more == 0 && unlogged == 0 {
                continue;
            }
            let now = SystemTime::now();
            let d = &o.drop;
            let mut text = format!(
                "{} … {} more like this ({} -> {} {} {})",
                clock(now, false),
                o.more,
                end(&d.from, d.src),
                end(&d.to, d.dst),
                what(d),
                d.reason
            );
            if unlogged > 0 {
                let _ = write!(
                    text,
                    "; {unlogged} more dropped as {} and not logged (logging is limited to {}/s per reason)",
                    o.drop.reason,
                    droplog::RATE
                );
            }
            let mut r = record(&o.drop, now);
            r["type"] = json!("more");
            r["more"] = json!(o.more);
            r["unlogged"] = json!(unlogged);
            print(&text, &r, self.opts.json);
        }
    }

    /// The drops of `reason` the kernel counted but did not log since last asked (0 when the
    /// counters were read less than a [`WINDOW`] ago, unless `now`: they are said later).
    fn unlogged(&mut self, reason: &str, now: bool) -> u64 {
        let reason = if reason == "isolated" {
            "closed"
        } else {
            reason
        };
        if !now && self.read.is_some_and(|r| r.elapsed() < WINDOW) {
            return 0;
        }
        self.read = Some(Instant::now());
        let now = tally(&mut self.sock, self.t)
            .ok()
            .flatten()
            .and_then(|v| v.into_iter().find(|(r, _)| r == reason))
            .map_or(0, |(_, n)| n);
        let Some(c) = self.counted.get_mut(reason) else {
            self.counted.insert(reason.to_string(), (now, 0));
            return 0;
        };
        let gone = now.saturating_sub(c.0).saturating_sub(c.1);
        *c = (now, 0);
        gone
    }
}

fn print(text: &str, record: &Json, json: bool) {
    if json {
        crate::output::data(format_args!("{record}\n"));
    } else {
        crate::output::data(format_args!("{text}\n"));
    }
}

/// `tcp/22`, `udp/53`, `icmp type 8`, `proto 47`.
fn proto(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        _ => nft::proto_name(p).unwrap_or_else(|| p.to_string()),
    }
}

fn what(d: &Drop) -> String {
    match (d.proto, d.port) {
        (1 | 58, Some(t)) => format!("{} type {t}", proto(d.proto)),
        (_, Some(p)) => format!("{}/{p}", proto(d.proto)),
        (_, None) => proto(d.proto),
    }
}

fn end(name: &Option<String>, a: std::net::IpAddr) -> String {
    match name {
        Some(n) => format!("{n} {a}"),
        None => a.to_string(),
    }
}

/// The text line of a drop.
fn line(d: &Drop, time: SystemTime) -> String {
    let mut s = format!(
        "{} {} -> {} {} {}",
        clock(time, false),
        end(&d.from, d.src),
        end(&d.to, d.dst),
        what(d),
        d.reason
    );
    match (&d.at, d.reason.as_str()) {
        (Some(at), _) => {
            let _ = write!(s, ": {at}");
        }
        (None, "closed") => s.push_str(": no [[allow]] opens it"),
        _ => {}
    }
    s
}

/// The JSON record of a drop (docs/json.md).
fn record(d: &Drop, time: SystemTime) -> Json {
    json!({
        "schema": 1,
        "type": "drop",
        "time": clock(time, true),
        "from": d.from,
        "src": d.src.to_string(),
        "to": d.to,
        "dst": d.dst.to_string(),
        "proto": proto(d.proto),
        "port": d.port,
        "reason": d.reason,
        "entry": d.entry.as_ref().map(|e| e.to_string()),
        "tag": d.entry.as_ref().map(|e| e.tag()),
        "line": d.line,
        "in": d.indev,
        "out": d.outdev,
    })
}

/// `16:02:03.250` (UTC), or with `date` the whole `2026-12-06T16:02:03.250Z`.
pub(crate) fn clock(t: SystemTime, date: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let ms = d.subsec_millis();
    if !date {
        return format!("{h:02}:{m:02}:{s:02}.{ms:03}");
    }
    // Days to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// `--since`: seconds, minutes or hours ago (`30s`, `5m`, `1h`), or a UTC time of today
/// (`16:02`, `16:02:03`).
pub(crate) fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || format!("--since {s:?}: expected 30s, 5m, 1h or a UTC time HH:MM[:SS]");
    if let Some((n, unit)) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .filter(|(n, _)| !n.is_empty())
        && let Some(mul) = match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            _ => None,
        }
    {
        let n: u64 = n.parse().map_err(|_| bad())?;
        return now
            .checked_sub(Duration::from_secs(n.saturating_mul(mul)))
            .ok_or_else(bad);
    }
    let parts: Vec<u64> = s
        .split(':')
        .map(|p| p.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (h, m, sec) = match parts[..] {
        [h, m] => (h, m, 0),
        [h, m, sec] => (h, m, sec),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || sec > 59 {
        return Err(bad());
    }
    let day = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86400 * 86400;
    Ok(UNIX_EPOCH + Duration::from_secs(day + h * 3600 + m * 60 + sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_574_123_250);
        assert_eq!(clock(t, true), "2026-12-06T16:22:03.250Z");
        assert_eq!(clock(t, false), "16:22:03.250");
    }

    #[test]
    fn since_takes_an_age_or_a_time_of_today() {
        let now = UNIX_EPOCH + Duration::from_secs(86400 * 3 + 3600 * 10);
        assert_eq!(parse_since("90s", now), Ok(now - Duration::from_secs(90)));
        assert_eq!(parse_since("2m", now), Ok(now - Duration::from_secs(120)));
        assert_eq!(
            parse_since("09:30", now),
            Ok(UNIX_EPOCH + Duration::from_secs(86400 * 3 + 9 * 3600 + 1800))
        );
        for bad in ["", "5x", "25:00", "1:2:3:4", "m"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
