//! A fight: another manager keeps undoing nsfw's work. Watch names it, counts its changes,
//! says how the fight goes, and puts nsfw's table back the moment it hears it deleted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nft::Family;
use nft::batch::Op;

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
    fn quick_lock(&self) -> Option<crate::state::Lock> {
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

impl Watch {
    /// nsfw's table on the host deleted by another process (`got`, a burst of events): puts it
    /// back whole at once, without observing first, so the firewall is open for as little as
    /// it takes to hear of it; the check that follows repairs whatever else differs. Only when
    /// no nsfw run holds the lock (a flush deletes the table too) and the topology's
    /// namespaces are still there. The batch creates the table only if it is absent: if
    /// anything made one since, it fails and changes nothing.
    pub(super) fn restore_table(&mut self, got: &[super::Event]) {
        let name = self.interest.table.clone();
        let gone = format!("nft table inet {name} deleted");
        let elem = format!("nft element deleted in inet {name} ");
        // Another process's changes to the host's table (not one in a namespace).
        let foreign: Vec<&str> = got
            .iter()
            .filter(|e| e.by.as_deref().is_some_and(|b| !b.starts_with("nsfw ")))
            .map(|e| e.what.split(" (by ").next().unwrap_or_default())
            .collect();
        let table_gone = foreign.contains(&gone.as_str());
        let sets: BTreeSet<&str> = foreign
            .iter()
            .filter_map(|w| w.strip_prefix(&elem))
            .filter(|s| !s.contains(' '))
            .collect();
        if !table_gone && sets.is_empty() {
            return;
        }
        let Some(_lock) = self.quick_lock() else {
            return;
        };
        let t0 = Instant::now();
        if self.restore.is_none() {
            // Made once per version of the file: building the table costs more than sending it.
            self.restore = crate::firewall::prepare(&self.t).table;
        }
        let Some(want) = &self.restore else { return };
        let Ok(enc) = nft::batch::encode(&put_back(want, table_gone, &sets)) else {
            return;
        };
        let enc = &enc;
        let sock = &mut self.restore_sock;
        let out = super::events::as_self(|| -> anyhow::Result<()> {
            let s = match sock {
                Some(s) => s,
                None => sock.insert(nft::socket::NftSocket::open()?),
            };
            s.send(enc)
        });
        if out.is_err() {
            self.restore_sock = None;
        }
        match out {
            Ok(()) => {
                let line = format!(
                    "watch: {}: {} → repaired in {} µs: put {} back (the check that follows repairs the rest)",
                    self.t.name,
                    some(&got.iter().map(|e| e.what.clone()).collect::<Vec<_>>(), 3),
                    t0.elapsed().as_micros(),
                    if table_gone {
                        "the table whole".to_string()
                    } else {
                        format!(
                            "the elements of {}",
                            sets.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    }
                );
                if self.fight.is_some() {
                    crate::detail!("{line}");
                } else {
                    say!("{line}");
                }
                self.repairs.push_back(t0);
                self.maybe_fight(&[gone]);
                if let Some(f) = &mut self.fight {
                    f.repairs += 1;
                }
            }
            Err(e) => crate::detail!(
                "watch: {}: could not put the table back at once ({e:#}); checking",
                self.t.name
            ),
        }
    }
}

/// The table whole (`table_gone`), or the elements of `sets` (those still there make no
/// error: NEWSETELEM without EXCL; an error changes nothing, and the check repairs).
fn put_back(want: &nft::Table, table_gone: bool, sets: &BTreeSet<&str>) -> Vec<Op> {
    if table_gone {
        return vec![Op::CreateTable(want.clone())];
    }
    want.sets
        .iter()
        .filter(|s| sets.contains(s.name.as_str()))
        .map(|s| Op::AddElements {
            family: Family::Inet,
            table: want.name.clone(),
            set: s.clone(),
        })
        .collect()
}
