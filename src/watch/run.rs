//! watch's loop: sleep in poll(2) on every socket, the directory watch and the memory's
//! socket; take what is heard (put back, schedule a check after the debounce, or at once in a
//! fight); answer questions about the memory; check when due.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

use super::events::Event;
use super::{Options, Watch, start};
use crate::netlink::RecvBuf;
use crate::state::{self, Access, Lock};
use crate::{error, say};

/// Runs until SIGINT or SIGTERM; serves metrics on `listener` when given.
pub(crate) fn run(path: &Path, opts: Options, listener: Option<TcpListener>) -> Result<()> {
    crate::signals::wakeable();
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
        if w.fight.is_none() && due.is_none() && w.memory.sweep_due(now) {
            due = Some(now);
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
            w.drifted(&mut due, &mut why);
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
        let wake = [due_at, w.fight_wake(), Some(w.memory.sweep)]
            .into_iter()
            .flatten()
            .min();
        let ready = match wait(&w, wake) {
            Ok(r) => r,
            Err(Errno::EINTR) => continue,
            Err(e) => bail!("waiting for notifications: {}", std::io::Error::from(e)),
        };
        if !ready.contains(&true) {
            continue;
        }
        let (got, asked) = w.hear(ready, &mut buf);
        w.take(got, &mut due, &mut why);
        if asked {
            w.memory.serve();
            w.drifted(&mut due, &mut why);
        }
    }
}

impl Watch {
    /// Reads what poll found `ready` (the memory's socket last), and whether a question came.
    /// A question: everything queued is heard first (rtnetlink queues a change's notification
    /// in the syscall that makes it), so that no change made before it is vouched for.
    fn hear(&mut self, ready: Vec<bool>, buf: &mut RecvBuf) -> (Vec<Event>, bool) {
        let asked = self.memory.fd().is_some() && ready.last() == Some(&true);
        let ready = if asked {
            vec![true; ready.len()]
        } else {
            ready
        };
        (self.read(&ready, buf), asked)
    }

    /// Takes the lock as `state::acquire` does, but goes on hearing and answering while
    /// another run holds it. That run (an apply) asks for the memory under its lock: a watch
    /// asleep in flock(2) let it wait out its 100 ms for nothing and then read every namespace
    /// (230 ms instead of 90 for an apply right after another, at 1,000 namespaces).
    /// What is heard meanwhile is forgotten by the memory (`read`) and needs no check of its
    /// own: the check that takes this lock reads after it.
    pub(super) fn lock(&mut self, access: Access) -> Result<Lock> {
        let mut pause = Duration::from_micros(500);
        let mut buf: Option<RecvBuf> = None;
        loop {
            if let Some(l) = state::acquire_within(access, Duration::ZERO)? {
                return Ok(l);
            }
            crate::signals::check()?;
            let ready = match wait(self, Some(Instant::now() + pause)) {
                Ok(r) => r,
                Err(Errno::EINTR) => continue,
                Err(e) => bail!("waiting for the lock: {}", std::io::Error::from(e)),
            };
            // Soon after the holder lets go: between two runs (`flush && apply`) the lock is
            // free for a millisecond or two.
            pause = (pause * 2).min(Duration::from_millis(2));
            if !ready.contains(&true) {
                continue;
            }
            let (got, asked) = self.hear(ready, buf.get_or_insert_with(RecvBuf::take));
            self.stats.heard(got.len());
            if asked {
                self.memory.serve();
            }
        }
    }

    /// What its probes found changed (a /proc write, which nothing notifies) is checked and
    /// repaired as a change heard would be; places its own repair wrote, checked to be kept
    /// again (held open anew).
    fn drifted(&mut self, due: &mut Option<Instant>, why: &mut Vec<String>) {
        let (drift, reread) = self.memory.drifted();
        if drift.is_empty() && !reread {
            return;
        }
        let at = Instant::now() + self.opts.debounce;
        *due = Some(due.map_or(at, |d| d.min(at)));
        why.extend(drift.into_iter().take(64usize.saturating_sub(why.len())));
    }

    /// What was heard: counted, put back where that is enough, and the check that follows
    /// scheduled into `due` (`why`: what it names).
    fn take(&mut self, got: Vec<Event>, due: &mut Option<Instant>, why: &mut Vec<String>) {
        if got.is_empty() {
            return;
        }
        self.stats.heard(got.len());
        crate::detail!(
            "watch: {}",
            got.iter()
                .map(|e| e.what.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        let fixed = self.put_back(&got);
        let urgent = got.iter().any(|e| e.urgent);
        for b in got.iter().filter_map(|e| e.by.clone()) {
            let name = b.split(" (").next().unwrap_or_default().to_string();
            let e = self.by.entry(name).or_default();
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
        let at = if fixed && self.fight.is_some() {
            (self.last_check + self.opts.pause).max(now)
        } else if urgent || self.fight.is_some() {
            now
        } else {
            now + self.opts.debounce
        };
        *due = Some(due.map_or(at, |d| d.min(at)));
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

/// Sleeps in ppoll(2) on every socket and the directory watch until one is readable or it is
/// `wake` (None: no end): which of them are, in that order (flags nix cannot name are still
/// something to read). A stop signal ends the sleep (EINTR), wherever its handler ran: the
/// handler's eventfd is among what it sleeps on (`signals::wakeable`). To the nanosecond:
/// poll(2)'s milliseconds woke a loop due in 0.4 ms at once, and it spun until then.
fn wait(w: &Watch, wake: Option<Instant>) -> nix::Result<Vec<bool>> {
    let timeout =
        wake.map(|at| TimeSpec::from_duration(at.saturating_duration_since(Instant::now())));
    let mut fds: Vec<PollFd> = w
        .host
        .iter()
        .chain(w.ns.iter())
        .map(|s| s.fd())
        .chain(w.dir.as_ref().map(|d| d.fd()))
        .chain(w.memory.fd())
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    let stop = crate::signals::wake_fd();
    if let Some(fd) = stop {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    ppoll(&mut fds, timeout, None)?;
    if stop.is_some()
        && fds
            .pop()
            .and_then(|p| p.revents())
            .is_some_and(|r| !r.is_empty())
    {
        return Err(Errno::EINTR);
    }
    Ok(fds
        .iter()
        .map(|p| p.revents().is_none_or(|r| !r.is_empty()))
        .collect())
}
