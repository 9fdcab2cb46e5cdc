//! The host's link indexes as the executor knows them through a run: the observation's to
//! start with, the links the run deletes dropped, and the links it makes asked for by name
//! (RTM_GETLINK with IFLA_IFNAME, a lookup in the kernel's name hash). So the host's links are
//! dumped once per run, by the observation, where a run used to dump them up to four times
//! more: at N veth pairs a host link dump costs O(N²) in the kernel (each host end's
//! IFLA_LINK_NETNSID is a walk of the host's N namespace ids), which at N=1,000 made most of
//! the cost of adding or removing one namespace.
//!
//! An index trusted from the observation can be stale only if someone deleted that link
//! behind nsfw's back since: the step that names it then fails (ENODEV, named), and the next
//! run, which observes again, converges.

use anyhow::Result;

use super::run::indexes;
use crate::kinds::Indexes;
use crate::plumbing::{Conn, Link, links};

pub(super) struct HostIx {
    ix: Indexes,
}

impl HostIx {
    pub(super) fn new(ix: Indexes) -> HostIx {
        HostIx { ix }
    }

    pub(super) fn get(&self) -> &Indexes {
        &self.ix
    }

    /// Asks the kernel for the links `names` (made in this run) and keeps their indexes;
    /// returns those found (a veth's host end carries its peer's index).
    pub(super) fn learn<'n>(
        &mut self,
        c: &mut Conn,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Result<Vec<Link>> {
        let mut found = Vec::new();
        for n in names {
            match links::link_by_name(c, n)? {
                Some(l) => {
                    self.ix.insert(l.name.clone(), l.index);
                    found.push(l);
                }
                None => {
                    self.ix.remove(n);
                }
            }
        }
        Ok(found)
    }

    /// Drops the links `names` (deleted in this run).
    pub(super) fn forget<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) {
        for n in names {
            self.ix.remove(n);
        }
    }

    /// Reads every link again (one dump): after a change of the host's links the run cannot
    /// name (a veth deleted from inside its namespace takes its host end with it).
    pub(super) fn reload(&mut self, c: &mut Conn) -> Result<()> {
        self.ix = indexes(c)?;
        Ok(())
    }
}
