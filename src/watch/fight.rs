//! A fight: another manager keeps undoing nsfw's work. Watch names it, counts its changes,
//! says how the fight goes; `putback` repairs the fight's usual damage at once.

use std::time::{Duration, Instant};

use super::{Watch, some};
use crate::{error, say};

/// Another manager keeps undoing nsfw's work.
pub(super) struct Fight {
    pub since: Instant,
    pub repairs: u64,
    pub failed: u64,
    /// When watch last said how the fight goes.
    pub said: Instant,
}

/// How often a fight's progress is said (one line per repair would flood the log).
pub(super) const FIGHT_SAY: Duration = Duration::from_secs(10);
/// Quiet for this long, a fight is over.
const FIGHT_OVER: Duration = Duration::from_secs(60);

impl Watch {
    /// Whom watch heard changing what nsfw owns, most changes first.
    pub(super) fn fighters(&self) -> String {
        let mut v: Vec<&(u64, String)> = self.by.values().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        let names: Vec<String> = v
            .iter()
            .map(|(n, last)| format!("{last}: {n} change(s)"))
            .collect();
        if names.is_empty() {
            "a process the kernel does not name".into()
        } else {
            some(&names, 3)
        }
    }

    /// The exclusive lock, taken at once, when it is free and the topology's namespaces are
    /// still there (checked under it): no nsfw run is under way, and none flushed the
    /// topology — a repair then cannot build what is not there. None: check first.
    pub(super) fn quick_lock(&self) -> Option<crate::state::Lock> {
        let lock = crate::state::acquire_within(crate::state::Access::Exclusive, Duration::ZERO)
            .ok()??;
        self.t
            .namespaces
            .iter()
            .any(|n| std::fs::symlink_metadata(crate::plumbing::netns::path(&n.name)).is_ok())
            .then_some(lock)
    }

    /// In a fight, the lock to repair without checking first (see `quick_lock`).
    pub(super) fn fight_lock(&self) -> Option<crate::state::Lock> {
        self.fight.as_ref()?;
        self.quick_lock()
    }

    /// After `max_repairs` repairs within a minute, a fight: said loudly, naming whom.
    pub(super) fn maybe_fight(&mut self, why: &[String]) {
        if self.fight.is_some() || self.repairs.len() < self.opts.max_repairs {
            return;
        }
        let now = Instant::now();
        self.fight = Some(Fight {
            since: now,
            repairs: 0,
            failed: 0,
            said: now,
        });
        self.stats.fighting(true);
        error!(
            "watch: {}: fighting {}: {} repairs within a minute, something else keeps changing what nsfw owns (last: {}); repairing at once each time, at most a tenth of the time and at least every {} ms, and saying how it goes every {} s",
            self.t.name,
            self.fighters(),
            self.repairs.len(),
            some(why, 3),
            self.opts.pause.as_millis(),
            FIGHT_SAY.as_secs()
        );
    }

    /// Every `FIGHT_SAY` of a fight: whom, how long, how many repairs.
    pub(super) fn say_fight(&mut self, cause: &str) {
        let Some(f) = &self.fight else { return };
        if f.said.elapsed() < FIGHT_SAY {
            return;
        }
        error!(
            "watch: {}: still fighting {} for {} s: {} repairs ({} failed), the last for {cause}",
            self.t.name,
            self.fighters(),
            f.since.elapsed().as_secs(),
            f.repairs,
            f.failed
        );
        if let Some(f) = &mut self.fight {
            f.said = Instant::now();
        }
    }

    /// A fight with no repair for `FIGHT_OVER` is over: said, and forgotten.
    pub(super) fn end_fight(&mut self, now: Instant) {
        let quiet = self
            .repairs
            .back()
            .is_none_or(|t| now.duration_since(*t) >= FIGHT_OVER);
        if !quiet {
            return;
        }
        if let Some(f) = self.fight.take() {
            self.stats.fighting(false);
            say!(
                "watch: {}: the fight with {} is over: {} repairs in {} s ({} failed)",
                self.t.name,
                self.fighters(),
                f.repairs,
                f.since.elapsed().as_secs(),
                f.failed
            );
        }
        self.by.clear();
        self.next = None;
    }

    /// When a fight may next need watch: its end, or the next repair allowed.
    pub(super) fn fight_wake(&self) -> Option<Instant> {
        self.fight.as_ref()?;
        self.repairs.back().map(|t| *t + FIGHT_OVER)
    }
}
