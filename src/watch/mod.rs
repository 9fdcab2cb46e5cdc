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

mod dir;
pub(crate) mod events;
mod fight;
mod listen;
mod memory;
mod probe;
mod putback;
mod run;

pub(crate) use run::run;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

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
    /// This topology's watch is this process's (`memory::claim`), while it lives.
    _claim: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    t: Topology,
    opts: Options,
    interest: Interest,
    host: Vec<Sub>,
    ns: Vec<Sub>,
    /// /run/netns, once it exists.
    dir: Option<dir::Dir>,
    /// What the last checks read, served to apply and diff.
    memory: memory::Memory,
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

/// The host's sysctls a run reads for the file (watch's memory holds the per-interface ones
/// open).
fn host_keys(t: &Topology) -> Vec<String> {
    crate::compile::host_keys(&crate::compile::compile(t))
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
                let old = std::mem::replace(&mut self.t, t);
                self.memory.set_host_keys(host_keys(&self.t));
                self.wanted = None;
                self.interest = interest_of(&self.t, None);
                self.follow(&old);
            }
            Ok(_) => {}
            Err(e) => error!(
                "watch: {}: cannot use the file as it is now, keeping the last good version: {e}",
                self.path.display()
            ),
        }
    }

    /// Observes and plans under the shared lock, as `nsfw diff` does.
    /// What the memory knows is taken, the rest read, and kept for the next ones.
    fn look(&mut self) -> Result<(Observed, crate::plan::Plan)> {
        let lock = self.lock(Access::Shared)?;
        // Under the lock no apply is making namespaces: each is listened to before it is read.
        self.refresh();
        let subs: BTreeMap<String, u64> = self.ns.iter().filter_map(|s| s.ns.clone()).collect();
        let tg = Target {
            memory: self
                .memory
                .for_check(Instant::now())
                .map_or(engine::Memory::Off, engine::Memory::Given),
            ..Target::apply(&self.t)
        };
        let rec = Record::load(lock.dir());
        let mut nft = NftSocket::open()?;
        let o = engine::observe(&tg, &rec, &mut nft)?;
        self.memory.store(&subs, &o.net);
        crate::detail!(
            "watch: {}: read {} namespace(s), {} from memory; it now holds {}",
            self.t.name,
            o.net.namespaces.len() - o.net.remembered.len(),
            o.net.remembered.len(),
            self.memory.len()
        );
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
        let lock = self.lock(Access::Exclusive)?;
        self.repair(why, lock)
    }

    fn repair(&mut self, why: &[String], lock: state::Lock) -> Result<()> {
        let t0 = Instant::now();
        self.repairs.push_back(t0);
        let tg = Target {
            memory: engine::Memory::Given(self.memory.known(t0)),
            ..Target::apply(&self.t)
        };
        let mut lines = Vec::new();
        let out = events::as_self(|| {
            engine::converge(&tg, &lock, &mut |l| lines.push(l), &mut |_, _| {})
        });
        // Namespaces made anew need their sockets opened (under the lock, before anyone
        // else can change them); a repair of the ruleset alone (a fight's usual) does not.
        if out.is_err() || lines.iter().any(|l| !l.contains(" nft ")) {
            self.refresh();
        }
        // What the repair wrote in /proc is forgotten now, and is no drift to check for.
        self.memory.repaired();
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
            // Another run (an apply waited for by the check) made it so first.
            Ok(o) if o.plan.is_empty() => {
                say!(
                    "watch: {}: {cause} → nothing left to repair: the host already matches the file",
                    self.t.name
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
        Ok(())
    }

    /// Reads every socket that poll said is readable; the events that concern the topology.
    fn read(&mut self, ready: &[bool], buf: &mut RecvBuf) -> Vec<Event> {
        let mut out = Vec::new();
        let subs = self.host.len() + self.ns.len();
        let mut heard = Vec::new();
        let mut edited = false;
        for (i, s) in self.host.iter_mut().chain(self.ns.iter_mut()).enumerate() {
            if ready.get(i) == Some(&true) {
                out.extend(s.read(buf, &self.interest));
            }
            if std::mem::take(&mut s.lost) {
                self.memory.forget();
            }
            if let Some(v) = &mut s.msgs {
                self.memory.host_heard(&std::mem::take(v));
            }
            if std::mem::take(&mut s.heard)
                && let Some((n, _)) = &s.ns
            {
                heard.push(n.clone());
            }
        }
        if let Some(d) = &self.dir
            && ready.get(subs) == Some(&true)
        {
            let (events, gone, written) = d.read(&self.interest);
            edited = written;
            out.extend(events);
            // A socket open in a namespace keeps it alive: one whose name went (a flush, `ip
            // netns del`) is let go at once, so that the kernel can tear it down, veths and
            // all, rather than leave them for this watcher to take for drift.
            let places: BTreeSet<String> = gone.iter().map(|n| format!("namespace {n}")).collect();
            self.ns.retain(|s| !places.contains(&s.place));
            // Nothing more is heard of them: the memory forgets them.
            heard.extend(gone);
        }
        for n in &heard {
            self.memory.heard(n);
        }
        // The file written: followed at once (its next check still decides what to repair),
        // so that the sockets of namespaces it no longer names are closed before the apply
        // that deletes them: a socket keeps its namespace alive, and that apply waited up to
        // 30 ms for the namespace to die.
        if edited {
            self.reload();
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
    // Two would each take the other's repairs for another manager's, and fight; and the second
    // would take the first one's socket.
    let claim = memory::claim(&t.name)?;
    probe::raise_nofile();
    let stats = Arc::new(metrics::watch::Stats::new(&t.name));
    if let Some(l) = listener {
        let at = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        serve(l, stats.clone())?;
        say!("watch: {}: metrics on http://{at}/metrics", t.name);
    }
    let mut w = Watch {
        _claim: claim,
        memory: memory::Memory::open(&t.name),
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
    w.memory.host_keys = host_keys(&w.t);
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
