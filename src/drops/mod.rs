//! `nsfw drops`: what nsfw's table drops, said in the file's terms. Every drop of the filter
//! chains passes a rate-limited `log group 28275` with a prefix naming the topology and the
//! reason (`firewall::droplog`); this reads that group over netlink (`nflog`), explains each
//! packet (`explain`: its ends, protocol and port, the entry of the file and its line), and
//! prints one line per drop, or a summary of a flood ("N more like this").
//!
//! The kernel keeps no record of single drops and nsfw keeps no files but its lock and record:
//! without `--follow` this prints what the kernel counted per reason since the table was
//! loaded (each reason's chain has a counter); with `--follow`, the drops as they happen.

mod counters;
mod explain;
mod holder;
mod ledger;
mod nflog;
mod time;

pub(crate) use time::{clock, parse_since};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use serde_json::{Value as Json, json};

use crate::firewall::droplog::{self, GROUP};
use crate::owner;
use crate::topology::Topology;
use counters::{REASONS, counters, tally};
use explain::{Drop, Names};
use nft::Family;
use nft::socket::NftSocket;

/// How long repeats of a drop are counted before they are summarised.
pub(crate) const WINDOW: Duration = Duration::from_secs(2);

/// Whether a logged packet's prefix is one nsfw's rules write: its topology and reason.
fn ours(prefix: &str) -> Option<(&str, &str)> {
    owner::parse_log_prefix(prefix).filter(|(_, r)| REASONS.contains(r))
}

pub(crate) use nflog::Nflog;

/// Binds nsfw's nflog group, before anything slow (loading a large file): the kernel queues
/// what is logged from then on, so no drop of the first seconds is lost. The counters of
/// every topology just before ([`Baseline`]).
pub(crate) fn bind() -> Result<(Nflog, Baseline)> {
    let mut sock = NftSocket::open()?;
    let names: Vec<String> = sock
        .tables()?
        .into_iter()
        .filter(|k| k.family == Family::Inet && owner::is_table(&k.name))
        .filter_map(|k| k.name.strip_prefix(&owner::table("")).map(str::to_string))
        .collect();
    let mut base = HashMap::new();
    for name in names {
        if let Some(c) = counters(&mut sock, &name)? {
            base.insert(name, c);
        }
    }
    Ok((Nflog::bind(GROUP)?, Baseline(base)))
}

/// What `nsfw drops` was asked for.
pub(crate) struct Options {
    pub json: bool,
    /// Only drops at or after this time.
    pub since: Option<SystemTime>,
}

/// Every topology's counters on the host, as `nsfw drops --follow` begins: read before its
/// group is bound, so that what is dropped between the two is said among the unlogged
/// (read after, the drops logged in between would be in both).
pub(crate) struct Baseline(HashMap<String, Vec<ledger::Counted>>);

/// `nsfw drops FILE` without `--follow`: the kernel's counts.
pub(crate) fn counts(t: &Topology, json: bool) -> Result<()> {
    let mut sock = NftSocket::open()?;
    let Some(counts) = tally(&mut sock, &t.name)? else {
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
type Key = (
    String,
    String,
    std::net::IpAddr,
    std::net::IpAddr,
    u8,
    Option<u16>,
);

fn key(topology: &str, d: &Drop) -> Key {
    let t = topology.to_string();
    (t, d.reason.clone(), d.src, d.dst, d.proto, d.port)
}

/// A drop printed, and the repeats of it counted since.
struct Open {
    since: Instant,
    topology: String,
    drop: Drop,
    more: u64,
}

/// The live stream's state.
struct Stream<'a> {
    /// The topology of the file given (or the default file).
    t: Option<&'a Topology>,
    /// Every topology of the host is followed: the others without their file.
    all: bool,
    /// The topologies without a file, by name (a topology of just its name).
    bare: HashMap<String, Topology>,
    opts: &'a Options,
    sock: NftSocket,
    names: Names,
    open: HashMap<Key, Open>,
    /// What each topology's reasons counted, logged and said unlogged (`ledger`).
    ledger: ledger::Ledger,
    /// Per topology and (counter) reason, the last drop said: unlogged drops owed while
    /// none of the reason is open are said on it.
    last: HashMap<(String, String), Drop>,
    /// Drops of other topologies than the one followed, not shown, by topology; and
    /// packets of the group that are not nsfw's drops: said once a window.
    hidden: BTreeMap<String, u64>,
    foreign: u64,
}

/// `nsfw drops [FILE] --follow` on the group `log` bound: until SIGINT/SIGTERM or a closed
/// stdout. Without a topology, the drops of every topology of the host.
pub(crate) fn follow(
    mut log: Nflog,
    base: Baseline,
    t: Option<&Topology>,
    all: bool,
    opts: &Options,
) -> Result<()> {
    let mut sock = NftSocket::open()?;
    let mut ledger = ledger::Ledger::default();
    if all {
        for (name, c) in &base.0 {
            ledger.begin(name, c);
        }
    }
    if let Some(t) = t {
        // A table made after the baseline counts from 0.
        ledger.begin(&t.name, base.0.get(&t.name).map_or(&[], Vec::as_slice));
        match tally(&mut sock, &t.name)? {
            None => crate::warning!(
                "topology {} is not on this host (no table inet {}): nothing of it can be dropped until it is applied",
                t.name,
                owner::table(&t.name)
            ),
            Some(_) => stale(&mut sock, t),
        }
    }
    let mut s = Stream {
        t,
        all,
        bare: HashMap::new(),
        opts,
        sock,
        names: Names::default(),
        open: HashMap::new(),
        ledger,
        last: HashMap::new(),
        hidden: BTreeMap::new(),
        foreign: 0,
    };
    crate::detail!("reading nflog group {GROUP}");
    let mut batch = Vec::new();
    while !crate::signals::stopping()
        && !crate::output::stdout_gone()
        && !crate::output::stdout_hung_up()
    {
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
    // The last reads, then the log messages of what they counted (nflog holds them up to
    // 100 ms), then everything said: every drop counted is accounted for.
    if !crate::output::stdout_gone() {
        let read = s.read(true);
        let until = Instant::now() + ledger::SETTLE;
        while read && Instant::now() < until && !crate::output::stdout_gone() {
            batch.clear();
            let _ = log.next(&mut batch);
            for l in batch.drain(..) {
                s.one(&l);
            }
        }
        s.close(true);
    }
    Ok(())
}

/// Warns when the table on the host is not what `t`'s file makes (the file edited and not
/// applied): the entries and lines said are the file's, the drops the kernel's.
fn stale(sock: &mut NftSocket, t: &Topology) {
    let name = owner::table(&t.name);
    let prep = crate::firewall::prepare(t);
    let Some(want) = prep.table else { return };
    let differ = sock
        .tables()
        .ok()
        .and_then(|ts| {
            ts.into_iter()
                .find(|k| k.family == Family::Inet && k.name == name)
        })
        .and_then(|k| sock.read_table(&k).ok())
        .map(|have| {
            nft::diff::table_diff_owned(want, &prep.canon, Some(&have))
                .lines
                .len()
        });
    if let Some(n) = differ.filter(|n| *n > 0) {
        crate::warning!(
            "{}: the file differs from the table on the host ({n} changes, see `nsfw diff`): the kernel drops by what was applied, so the entries and lines said may not be the ones that dropped",
            t.source.display()
        );
    }
}

impl Stream<'_> {
    fn one(&mut self, l: &nflog::Logged) {
        let Some((topology, reason)) = ours(&l.prefix) else {
            crate::detail!("nflog: a packet not of nsfw's rules ({:?})", l.prefix);
            self.foreign += 1;
            return;
        };
        if self.opts.since.is_some_and(|s| l.time < s) {
            return;
        }
        let t = match self.t {
            Some(t) if t.name == topology => t,
            _ if !self.all => {
                *self.hidden.entry(topology.to_string()).or_default() += 1;
                return;
            }
            _ => {
                if !self.bare.contains_key(topology) {
                    let text = format!("name = {topology:?}\n");
                    match crate::topology::parse(&text, std::path::Path::new(topology)) {
                        Ok(b) => self.bare.insert(topology.to_string(), b),
                        Err(_) => {
                            self.foreign += 1;
                            return;
                        }
                    };
                }
                let Some(b) = self.bare.get(topology) else {
                    return;
                };
                b
            }
        };
        let Some(d) = explain::explain(t, reason, l, &mut self.names) else {
            // Not counted as logged: the ledger says it among the unlogged.
            crate::detail!(
                "nflog: a packet too short to read ({} bytes)",
                l.packet.len()
            );
            return;
        };
        self.ledger.logged(topology, reason);
        let k = key(topology, &d);
        if let Some(o) = self.open.get_mut(&k) {
            o.more += 1;
            return;
        }
        print(
            &line(self.all.then_some(topology), &d, l.time),
            &record(topology, &d, l.time),
            self.opts.json,
        );
        self.last
            .insert((topology.to_string(), reason.to_string()), d.clone());
        self.open.insert(
            k,
            Open {
                since: Instant::now(),
                topology: topology.to_string(),
                drop: d,
                more: 0,
            },
        );
    }

    /// Says what was not shown since last said: other topologies' drops, other packets.
    fn hidden(&mut self) {
        if let Some(t) = self.t
            && !self.all
            && !self.hidden.is_empty()
        {
            let n: u64 = self.hidden.values().sum();
            let who: Vec<&str> = self.hidden.keys().map(String::as_str).collect();
            crate::warning!(
                "{n} drops of other topologies ({}) not shown: this follows {} only, and one reader of the group serves the whole host (`nsfw drops --follow` without FILE shows every topology's)",
                who.join(", "),
                t.name
            );
            self.hidden.clear();
        }
        if self.foreign > 0 {
            crate::warning!(
                "{} packets in nflog group {GROUP} are not nsfw's drops (another rule logs to the group); ignored",
                self.foreign
            );
            self.foreign = 0;
        }
    }

    /// Reads the counters of the topologies due (`all`: of every one that may have dropped
    /// unlogged since its last settled read); whether any was read.
    fn read(&mut self, all: bool) -> bool {
        let now = Instant::now();
        let due = self.ledger.due(now, all);
        for t in &due {
            let counts = counters(&mut self.sock, t).ok().flatten();
            self.ledger.read(t, counts, now);
        }
        !due.is_empty()
    }

    /// Summarises the repeats of every drop printed more than [`WINDOW`] ago (`all`: of
    /// every drop printed), with what the kernel dropped for the same reason without logging
    /// (`ledger`); unlogged drops of a reason none of whose drops is open are said on the
    /// last one said.
    fn close(&mut self, all: bool) {
        self.hidden();
        if !all {
            let _ = self.read(false);
        }
        self.ledger.settle(Instant::now(), all);
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
            let unlogged = self.ledger.take(&o.topology, counter(&o.drop.reason));
            if o.more == 0 && unlogged == 0 {
                continue;
            }
            self.said(&o, unlogged);
        }
        for (t, r) in self.ledger.owing() {
            if self
                .open
                .values()
                .any(|o| o.topology == t && counter(&o.drop.reason) == r)
            {
                continue;
            }
            let n = self.ledger.take(&t, &r);
            match self.last.get(&(t.clone(), r.clone())) {
                Some(d) => {
                    let o = Open {
                        since: Instant::now(),
                        topology: t,
                        drop: d.clone(),
                        more: 0,
                    };
                    self.said(&o, n);
                }
                // Every packet of the reason logged was lost (the socket's buffer full).
                None => crate::warning!(
                    "{n} more dropped as {r} in topology {t} and not logged (logging is limited to {}/s per reason)",
                    droplog::RATE
                ),
            }
        }
    }

    /// Says the repeats of `o`, and `unlogged` drops of its reason the kernel did not log.
    fn said(&self, o: &Open, unlogged: u64) {
        let now = SystemTime::now();
        let d = &o.drop;
        let flow = format!(
            "{} -> {} {} {}",
            end(&d.from, d.src),
            end(&d.to, d.dst),
            what(d),
            d.reason
        );
        let mut text = format!(
            "{}{} … ",
            if self.all {
                format!("{} ", o.topology)
            } else {
                String::new()
            },
            clock(now, false),
        );
        let unsaid = format!(
            "{unlogged} more dropped as {} and not logged (logging is limited to {}/s per reason",
            counter(&d.reason),
            droplog::RATE
        );
        if o.more > 0 {
            let _ = write!(text, "{} more like this ({flow})", o.more);
            if unlogged > 0 {
                let _ = write!(text, "; {unsaid})");
            }
        } else {
            let _ = write!(text, "{unsaid}; the last logged: {flow})");
        }
        let mut r = record(&o.topology, &o.drop, now);
        r["type"] = json!("more");
        r["more"] = json!(o.more);
        r["unlogged"] = json!(unlogged);
        print(&text, &r, self.opts.json);
    }
}

/// The reason whose counter counts a drop of `reason` (explained drops between the ports of
/// an isolated bridge are `isolated`; the kernel counted them as `closed`).
fn counter(reason: &str) -> &str {
    if reason == "isolated" {
        "closed"
    } else {
        reason
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

/// The text line of a drop (with its topology first, when every topology is followed).
fn line(topology: Option<&str>, d: &Drop, time: SystemTime) -> String {
    let mut s = format!(
        "{}{} {} -> {} {} {}",
        topology.map_or_else(String::new, |t| format!("{t} ")),
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
fn record(topology: &str, d: &Drop, time: SystemTime) -> Json {
    json!({
        "schema": 1,
        "type": "drop",
        "topology": topology,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reasons_nsfw_writes_are_its_drops() {
        assert_eq!(ours("nsfw:lab policy"), Some(("lab", "policy")));
        assert_eq!(ours("nsfw:lab closed"), Some(("lab", "closed")));
        assert_eq!(ours("nsfw:lab bogus"), None);
        assert_eq!(ours("nsfw:lab isolated"), None);
        assert_eq!(ours("other policy"), None);
    }
}
