//! `nsfw watch FILE`: stays running and keeps the topology whole. It sleeps in poll(2) on the
//! kernel's change notifications ([`events`]); when one concerns an object the topology owns
//! or depends on, it waits a short while for the burst to end (a firewall reload is many
//! messages), then checks the host against FILE under the shared lock — the same observe and
//! plan as `nsfw diff` — and when they differ, repairs through the same engine as `nsfw apply`,
//! under the exclusive lock, logging one line per repair: what changed, what it did.
//!
//! It never builds a topology that is not there (nothing of it on the host: never applied, or
//! flushed — `nsfw.service` builds, watch keeps), and never touches what the topology does not
//! own: the plan is apply's. When it keeps repairing (another manager undoing its work, more
//! than `max_repairs` in a minute) it is in a fight, and fails closed: it says loudly whom it
//! is fighting (the process the kernel names, with its pid and netlink port id) and counts
//! its changes, stops waiting for bursts to end (each of nf_tables' transactions comes whole)
//! and repairs as soon as it hears of a change, but never spends more than a tenth of its time
//! repairing, nor waits longer than `pause` between two repairs: the firewall stays up nearly
//! all the time, and watch stays cheap. A repair is the engine's plan: an element deleted is
//! put back, nothing else touched.

pub(crate) mod events;
mod fight;
mod putback;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::engine::{self, Observed, Target};
use crate::netlink::RecvBuf;
use crate::state::{self, Access, Record};
use crate::topology::{self, Topology};
use crate::{error, metrics, say};
use nft::socket::NftSocket;

use events::{Event, Interest, Sub};

/// How watch behaves.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Quiet time after the first notification of a burst before checking.
    pub debounce: Duration,
    /// Repairs in one minute after which watch is in a fight.
    pub max_repairs: usize,
    /// In a fight, the longest wait between two repairs (whatever they cost).
    pub pause: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            debounce: Duration::from_millis(200),
            max_repairs: 10,
            pause: Duration::from_secs(2),
        }
    }
}

/// Where the topology stands on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Unknown,
    Absent,
    InSync,
    Differs,
    Failing,
}

struct Watch {
    path: PathBuf,
    t: Topology,
    opts: Options,
    interest: Interest,
    host: Vec<Sub>,
    ns: Vec<Sub>,
    /// /run/netns, once it exists.
    dir: Option<events::Dir>,
    /// When each recent repair happened (the last minute's).
    repairs: VecDeque<Instant>,
    /// The table as the file wants it, ready to put back (see `putback`), once made.
    wanted: Option<putback::Wanted>,
    /// Its socket, kept open (opening one costs more than the batch): dropped on an error.
    restore_sock: Option<NftSocket>,
    /// Whose changes watch heard of in the last minute (or this fight), by process name: how
    /// many, and the last one's pid and port.
    by: BTreeMap<String, (u64, String)>,
    fight: Option<fight::Fight>,
    /// In a fight, the earliest the next repair may start.
    next: Option<Instant>,
    /// When the last check began.
    last_check: Instant,
    seen: Seen,
    /// What `--metrics` serves of the watcher itself.
    stats: Arc<metrics::watch::Stats>,
}

fn load(path: &Path) -> Result<Topology> {
    topology::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// What the topology owns on the host, by its marks.
fn present(t: &Topology, o: &Observed) -> bool {
    let mark = crate::owner::mark(&t.name);
    let table = crate::owner::table(&t.name);
    o.net
        .namespaces
        .values()
        .any(|n| n.owner.as_deref() == Some(&mark))
        || o.net
            .host
            .links
            .iter()
            .any(|l| l.alias.as_deref() == Some(&mark))
        || o.nft
            .tables
            .iter()
            .any(|k| k.name == table && k.comment.as_deref() == Some(&mark))
}

fn interest_of(t: &Topology, o: Option<&Observed>) -> Interest {
    let d = crate::compile::compile(t);
    let links: BTreeSet<String> = d.host.links.keys().cloned().collect();
    let indexes = o
        .map(|o| {
            o.net
                .host
                .links
                .iter()
                .filter(|l| links.contains(&l.name))
                .map(|l| l.index)
                .collect()
        })
        .unwrap_or_default();
    let mut subnets = Vec::new();
    for b in &t.bridges {
        for v6 in [false, true] {
            subnets.extend(t.sources_via(&b.name, v6));
        }
    }
    Interest {
        table: crate::owner::table(&t.name),
        mark: crate::owner::mark(&t.name),
        links,
        indexes,
        subnets,
        namespaces: t.namespaces.iter().map(|n| n.name.clone()).collect(),
    }
}

/// Up to `n` items, then how many more.
fn some(items: &[String], n: usize) -> String {
    let mut v: Vec<String> = Vec::new();
    for i in items {
        if !v.contains(i) {
            v.push(i.clone());
        }
    }
    let more = v.len().saturating_sub(n);
    v.truncate(n);
    let mut s = v.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

impl Watch {
    fn names(&self) -> BTreeSet<String> {
        self.t.namespaces.iter().map(|n| n.name.clone()).collect()
    }

    /// Opens the namespaces' sockets again (after a repair made namespaces anew, or the file
    /// named others).
    fn resubscribe(&mut self) {
        let names: Vec<String> = self.names().into_iter().collect();
        let tables: BTreeSet<String> = self
            .t
            .namespaces
            .iter()
            // Those that may hold a table of nsfw's (see firewall's router tables).
            .filter(|n| n.forward || n.masquerade.is_some())
            .map(|n| n.name.clone())
            .collect();
        self.ns = events::ns_subs(&names, &tables);
        if self.dir.is_none() {
            self.dir = events::Dir::open();
        }
    }

    /// The file as it is now; a broken file leaves the last good one in force.
    fn reload(&mut self) {
        match load(&self.path) {
            Ok(t) if t != self.t => {
                if t.name != self.t.name {
                    error!(
                        "watch: {}: the topology's name changed ({} → {}); restart nsfw watch to follow it, still keeping {}",
                        self.path.display(),
                        self.t.name,
                        t.name,
                        self.t.name
                    );
                    return;
                }
                say!(
                    "watch: {}: the file changed; keeping the host as it now says",
                    self.path.display()
                );
                self.t = t;
                self.wanted = None;
                self.interest = interest_of(&self.t, None);
                self.resubscribe();
            }
            Ok(_) => {}
            Err(e) => error!(
                "watch: {}: cannot use the file as it is now, keeping the last good version: {e}",
                self.path.display()
            ),
        }
    }

    /// Observes and plans under the shared lock, as `nsfw diff` does.
    fn look(&self) -> Result<(Observed, crate::plan::Plan)> {
        let lock = state::acquire(Access::Shared, true)?;
        let tg = Target::apply(&self.t);
        let rec = Record::load(lock.dir());
        let mut nft = NftSocket::open()?;
        let o = engine::observe(&tg, &rec, &mut nft)?;
        let p = engine::plan(&tg, &o, &rec)?;
        Ok((o, p))
    }

    fn set_seen(&mut self, s: Seen, say_it: impl FnOnce(&Self)) {
        if self.seen != s {
            say_it(self);
        }
        self.seen = s;
    }

    /// Checks the host, and repairs when it differs and watch is not pausing.
    fn check(&mut self, why: &[String]) -> Result<()> {
        self.last_check = Instant::now();
        self.reload();
        // In a fight, straight to the repair (the engine observes and plans anyway): half the
        // time the firewall stays open. See `fight_lock` for when that is safe.
        if let Some(lock) = self.fight_lock() {
            return self.repair(why, lock);
        }
        let t0 = Instant::now();
        let (o, p) = self.look()?;
        self.interest = interest_of(&self.t, Some(&o));
        let here = present(&self.t, &o);
        let took = t0.elapsed();
        self.stats
            .checked(took, here && !p.is_empty(), here && p.is_empty());
        crate::detail!(
            "watch: {}: checked in {} ms ({})",
            self.t.name,
            took.as_millis(),
            if p.is_empty() { "no change" } else { "differs" }
        );
        if !here {
            self.set_seen(Seen::Absent, |w| {
                say!(
                    "watch: {}: nothing of it is on this host (not applied yet, or flushed): waiting for `nsfw apply {}`",
                    w.t.name,
                    w.path.display()
                )
            });
            return Ok(());
        }
        if !p.conflicts.is_empty() || !p.unreachable.is_empty() {
            let msg = p
                .conflicts
                .iter()
                .chain(&p.unreachable)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            self.set_seen(Seen::Failing, |w| {
                error!(
                    "watch: {}: cannot repair: {msg}; nothing was changed, still watching",
                    w.t.name
                )
            });
            return Ok(());
        }
        if p.is_empty() {
            self.set_seen(Seen::InSync, |w| {
                if w.seen != Seen::Unknown {
                    say!("watch: {}: the host matches the file again", w.t.name)
                }
            });
            return Ok(());
        }
        self.seen = Seen::Differs;
        let now = Instant::now();
        while self
            .repairs
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.repairs.pop_front();
        }
        if self.fight.is_none() && self.repairs.is_empty() {
            self.by.clear();
        }
        self.maybe_fight(why);
        let lock = state::acquire(Access::Exclusive, true)?;
        self.repair(why, lock)
    }

    fn repair(&mut self, why: &[String], lock: state::Lock) -> Result<()> {
        let t0 = Instant::now();
        self.repairs.push_back(t0);
        let tg = Target::apply(&self.t);
        let mut lines = Vec::new();
        let out = events::as_self(|| {
            engine::converge(&tg, &lock, &mut |l| lines.push(l), &mut |_, _| {})
        });
        drop(lock);
        self.stats
            .repaired(t0.elapsed(), out.as_ref().ok().map(|o| &o.plan));
        let cause = if why.is_empty() {
            "the host differs from the file".to_string()
        } else {
            some(why, 3)
        };
        let ok = out.is_ok();
        match out {
            // In a fight, the fight's lines say it (its first repair is said whole).
            Ok(_) if self.fight.as_ref().is_some_and(|f| f.repairs > 0) => {
                crate::detail!(
                    "watch: {}: {cause} → repaired in {} ms: {}",
                    self.t.name,
                    t0.elapsed().as_millis(),
                    some(&lines, 3)
                );
                self.seen = Seen::InSync;
            }
            Ok(o) => {
                say!(
                    "watch: {}: {cause} → repaired in {} ms: {} ({})",
                    self.t.name,
                    t0.elapsed().as_millis(),
                    some(&lines, 3),
                    o.plan.summary()
                );
                self.seen = Seen::InSync;
            }
            Err(_) if self.fight.as_ref().is_some_and(|f| f.failed > 0) => {
                self.seen = Seen::Failing;
            }
            Err(e) => {
                // The first line says it; the rest (a whole pending plan) would flood the log.
                let text = format!("{e:#}");
                let first = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(';');
                error!(
                    "watch: {}: {cause} → the repair failed: {first}",
                    self.t.name
                );
                self.seen = Seen::Failing;
            }
        }
        if let Some(f) = &mut self.fight {
            f.repairs += 1;
            f.failed += u64::from(!ok);
        }
        self.say_fight(&cause);
        // Namespaces made anew need their sockets opened again; a repair of the ruleset
        // alone (a fight's usual) does not, and opening them costs more than the repair.
        if !ok || lines.iter().any(|l| !l.contains(" nft ")) {
            self.resubscribe();
        }
        Ok(())
    }

    /// Reads every socket that poll said is readable; the events that concern the topology.
    fn read(&mut self, ready: &[bool], buf: &mut RecvBuf) -> Vec<Event> {
        let mut out = Vec::new();
        let subs = self.host.len() + self.ns.len();
        for (i, s) in self.host.iter_mut().chain(self.ns.iter_mut()).enumerate() {
            if ready.get(i) == Some(&true) {
                out.extend(s.read(buf, &self.interest));
            }
        }
        if let Some(d) = &self.dir
            && ready.get(subs) == Some(&true)
        {
            let (events, gone) = d.read(&self.interest);
            out.extend(events);
            // A socket open in a namespace keeps it alive: one whose name went (a flush, `ip
            // netns del`) is let go at once, so that the kernel can tear it down, veths and
            // all, rather than leave them for this watcher to take for drift.
            let places: BTreeSet<String> = gone.iter().map(|n| format!("namespace {n}")).collect();
            self.ns.retain(|s| !places.contains(&s.place));
        }
        out.into_iter().filter(|e| e.ours).collect()
    }
}

/// Serves the host's metrics and the watcher's on `listener` (`--metrics`).
fn serve(listener: TcpListener, stats: Arc<metrics::watch::Stats>) -> Result<()> {
    let body: metrics::http::Body = Arc::new(move || {
        let mut f = match metrics::host::scrape() {
            Ok(f) => f,
            Err(e) => {
                error!("watch: metrics: reading the host: {e:#}");
                Vec::new()
            }
        };
        f.extend(stats.families());
        metrics::render(&f) + metrics::EOF
    });
    metrics::http::serve(listener, body)?;
    Ok(())
}

/// Loads the file, subscribes, says so, and checks once.
fn start(path: &Path, opts: Options, listener: Option<TcpListener>) -> Result<Watch> {
    let t = load(path)?;
    let stats = Arc::new(metrics::watch::Stats::new(&t.name));
    if let Some(l) = listener {
        let at = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        serve(l, stats.clone())?;
        say!("watch: {}: metrics on http://{at}/metrics", t.name);
    }
    let mut w = Watch {
        stats,
        path: path.to_path_buf(),
        interest: interest_of(&t, None),
        t,
        opts,
        host: events::host_subs()?,
        ns: Vec::new(),
        dir: None,
        repairs: VecDeque::new(),
        wanted: None,
        restore_sock: None,
        by: BTreeMap::new(),
        fight: None,
        next: None,
        last_check: Instant::now(),
        seen: Seen::Unknown,
    };
    w.resubscribe();
    say!(
        "watch: {} ({}): listening to nf_tables and rtnetlink in the host and {} namespace(s) (nf_tables in {} of them)",
        w.t.name,
        w.path.display(),
        w.ns.iter().filter(|s| s.kind == events::Kind::Rtnl).count(),
        w.ns.iter().filter(|s| s.kind == events::Kind::Nft).count()
    );
    w.check(&[])?;
    Ok(w)
}

/// Runs until SIGINT or SIGTERM; serves metrics on `listener` when given.
pub(crate) fn run(path: &Path, opts: Options, listener: Option<TcpListener>) -> Result<()> {
    let mut w = start(path, opts, listener)?;
    let mut buf = RecvBuf::take();
    let mut due: Option<Instant> = None;
    let mut why: Vec<String> = Vec::new();
    loop {
        if crate::signals::stopping() {
            say!("watch: {}: stopped", w.t.name);
            return Ok(());
        }
        let now = Instant::now();
        if w.fight.is_some() {
            w.end_fight(now);
        }
        // In a fight, never sooner than the next repair allowed.
        let due_at = due.map(|d| w.next.map_or(d, |n| d.max(n)));
        if let Some(d) = due_at
            && now >= d
        {
            due = None;
            let cause = std::mem::take(&mut why);
            let cpu0 = cpu();
            if let Err(e) = w.check(&cause) {
                error!("watch: {}: {e:#}", w.t.name);
            }
            // At most a tenth of a core repairing: the next repair waits nine times the CPU
            // this check cost, and never longer than `pause`.
            let cost = cpu().saturating_sub(cpu0);
            w.next = w
                .fight
                .as_ref()
                .map(|_| Instant::now() + (cost * 9).min(w.opts.pause));
            continue;
        }
        // Sleep until a notification, the end of the debounce (or of the wait between a
        // fight's repairs), or the end of a fight.
        let wake = [due_at, w.fight_wake()].into_iter().flatten().min();
        let ready = match wait(&w, wake) {
            Ok(r) => r,
            Err(Errno::EINTR) => continue,
            Err(e) => bail!("waiting for notifications: {}", std::io::Error::from(e)),
        };
        if !ready.contains(&true) {
            continue;
        }
        let got = w.read(&ready, &mut buf);
        if got.is_empty() {
            continue;
        }
        w.stats.heard(got.len());
        crate::detail!(
            "watch: {}",
            got.iter()
                .map(|e| e.what.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let fixed = w.put_back(&got);
        let urgent = got.iter().any(|e| e.urgent);
        for b in got.iter().filter_map(|e| e.by.clone()) {
            let name = b.split(" (").next().unwrap_or_default().to_string();
            let e = w.by.entry(name).or_default();
            e.0 += 1;
            e.1 = b;
        }
        // What a repair line names: the first few changes of the burst are enough.
        why.extend(
            got.into_iter()
                .map(|e| e.what)
                .take(64usize.saturating_sub(why.len())),
        );
        // In a fight, what the put-back repaired needs no check before `pause` is over since
        // the last (a check costs far more than a put-back, and while it runs watch hears
        // nothing); any other change of nsfw's table, or any in a fight, is repaired at once:
        // nf_tables' transactions come whole, and every moment waiting the firewall may be
        // open.
        let now = Instant::now();
        let at = if fixed && w.fight.is_some() {
            (w.last_check + w.opts.pause).max(now)
        } else if urgent || w.fight.is_some() {
            now
        } else {
            now + w.opts.debounce
        };
        due = Some(due.map_or(at, |d| d.min(at)));
    }
}

/// CPU time this process has used (user and system, every thread).
pub(super) fn cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |v: nix::sys::time::TimeVal| {
                Duration::new(v.tv_sec().max(0) as u64, (v.tv_usec().max(0) as u32) * 1000)
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

/// Sleeps in poll(2) on every socket and the directory watch until one is readable or it is
/// `wake` (None: no end): which of them are, in that order (flags nix cannot name are still
/// something to read).
fn wait(w: &Watch, wake: Option<Instant>) -> nix::Result<Vec<bool>> {
    let timeout = match wake {
        Some(at) => PollTimeout::try_from(at.saturating_duration_since(Instant::now()))
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let mut fds: Vec<PollFd> = w
        .host
        .iter()
        .chain(w.ns.iter())
        .map(|s| s.fd())
        .chain(w.dir.as_ref().map(|d| d.fd()))
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    poll(&mut fds, timeout)?;
    Ok(fds
        .iter()
        .map(|p| p.revents().is_none_or(|r| !r.is_empty()))
        .collect())
}
