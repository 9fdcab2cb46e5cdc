//! An in-memory kernel for unit tests, as knftables' fake is for kube-proxy: it holds what a
//! host would hold (links, addresses, routes, sysctls, resolv.conf files, nftables tables and
//! the rules nsfw places in iptables-nft's chains), answers observations from it, and carries
//! steps and batches out on it, recording what it was sent, so that `engine::converge` runs
//! whole, without root, and its "observe again" finds the host in sync.
//!
//! What it simulates: every `Step` (namespaces with a marked `lo`, bridges, veth pairs with
//! their peers cross-linked, link attributes, addresses with the kernel's subnet route,
//! routes replaced by table, destination and metric, sysctls with the kernel's defaults for
//! the links there are, netem roots, resolv.conf files); nftables ops applied all or nothing
//! to tables held as a dump would give them (rules lowered and raised again, elements in
//! canonical kernel form, `Dumped::of`), a generation that moves by one per host batch.
//! What it does not: anything the kernel does on its own (link-local addresses, neighbour
//! tables, conntrack: `forget` is only recorded), rule handles inside nsfw's tables, `AddTable`
//! merging into an existing table (it replaces it, as nsfw's apply never sends it), errors
//! other than the obvious ones (a name that exists, an object that does not).

pub(in crate::engine) mod ipv6off;
mod net;
mod prefsrc;
mod ruleset;
mod vxlan;

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Result, anyhow, bail};
use nft::batch::Op;
use nft::dump::Dumped;

use super::kernel::{Hints, Kernel};
use crate::firewall::{NftState, conntrack::Forget};
use crate::owner::table as table_name;
use crate::plan::{Stage, Step};
use crate::plumbing::{self, Query};
use net::{BRNF, Net};
use ruleset::{host_op, ns_op, op_line};

/// Something the engine sent the fake kernel, in order. (A step is large since a taken
/// route carries its RTA_METRICS; test-only, not worth boxing.)
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sent {
    Step(Step),
    /// A batch: to the host's ruleset (None) or a namespace's.
    Batch(Option<String>, Vec<Op>),
    Forget(Forget),
    /// iptables-legacy rules removed.
    Legacy(Vec<crate::plumbing::xtables::Removal>),
}

pub(crate) struct Fake {
    /// The plumbing as the kernel holds it.
    pub(crate) net: Net,
    /// The host's ruleset.
    pub(crate) nft: NftState,
    /// The tables inside namespaces: by namespace, by name.
    pub(crate) ns_tables: BTreeMap<String, BTreeMap<String, Dumped>>,
    pub(crate) generation: u32,
    pub(crate) netem: bool,
    /// Every nftables batch is refused, as the kernel refuses one it cannot take.
    pub(crate) refuse_batches: bool,
    /// Someone else commits a batch of their own right after each of the engine's.
    pub(crate) others_commit: bool,
    pub(crate) sent: Vec<Sent>,
    /// Other owners' rules (`--adopt`): those in iptables-legacy go when removed.
    pub(crate) hand: crate::adopt::HandRules,
    /// Removing iptables-legacy rules fails (as a run killed right before it would stop).
    pub(crate) refuse_legacy: bool,
    /// The run stops before its first announcement (as one killed there would).
    pub(crate) stop_before_announcing: bool,
    /// How many times the whole host (plumbing and nftables) and the plumbing alone were read.
    pub(crate) observed: usize,
    pub(crate) observed_net: usize,
    next_handle: u64,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake::new()
    }
}

impl Fake {
    /// A host with nothing but `lo`, br_netfilter loaded (bridge-nf-call-iptables 0).
    pub(crate) fn new() -> Fake {
        Fake {
            net: Net::new(),
            nft: NftState::default(),
            ns_tables: BTreeMap::new(),
            generation: 7,
            netem: true,
            refuse_batches: false,
            others_commit: false,
            sent: Vec::new(),
            hand: crate::adopt::HandRules::default(),
            refuse_legacy: false,
            stop_before_announcing: false,
            observed: 0,
            observed_net: 0,
            next_handle: 1000,
        }
    }

    /// What was sent, a line each: steps as `nsfw diff` shows them, batches op by op.
    pub(crate) fn sent_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sent {
            match s {
                Sent::Step(s) => out.push(s.to_string()),
                Sent::Batch(ns, ops) => {
                    let at = ns
                        .as_deref()
                        .map(|n| format!(" in {n}"))
                        .unwrap_or_default();
                    out.extend(ops.iter().map(|o| format!("nft{at}: {}", op_line(o))));
                }
                Sent::Forget(f) => out.push(format!(
                    "conntrack: forget {} moved, {} taken",
                    f.moved.len(),
                    f.taken.len()
                )),
                Sent::Legacy(rs) => out
                    .extend(rs.iter().map(|r| {
                        format!("{} {} {}: remove", r.family.command(), r.table, r.chain)
                    })),
            }
        }
        out
    }
}

/// The steps of one stage in the order the executor carries them out where it matters
/// (`plan::build`, `plan::inside`): a place's sysctls before its addresses and routes — a
/// link's IPv6 switched on before its addresses are added, which the kernel refuses while it
/// is off. The rest keeps the plan's order.
fn executor_order(steps: Vec<&Step>) -> Vec<&Step> {
    let mut out: Vec<&Step> = Vec::with_capacity(steps.len());
    for s in &steps {
        if matches!(s, Step::SetSysctl(_)) && out.iter().any(|o| std::ptr::eq(*o, *s)) {
            continue;
        }
        if matches!(s, Step::AddAddr(_) | Step::SetRoute(_)) {
            let here = steps
                .iter()
                .filter(|k| matches!(k, Step::SetSysctl(_)) && k.inside() == s.inside());
            for k in here {
                if !out.iter().any(|o| std::ptr::eq(*o, *k)) {
                    out.push(k);
                }
            }
        }
        out.push(s);
    }
    out
}

impl Kernel for Fake {
    fn observe(&mut self, q: &Query, listeners: bool) -> Result<(plumbing::Observed, NftState)> {
        self.observed += 1;
        let mut s = self.nft.clone();
        s.generation = Some(self.generation);
        s.br_nf = self.net.host_sysctl(BRNF).map(|v| v == "1");
        if !listeners {
            s.listeners.clear();
        }
        Ok((self.net.view(q), s))
    }

    fn observe_net(&mut self, q: &Query) -> Result<plumbing::Observed> {
        self.observed_net += 1;
        Ok(self.net.view(q))
    }

    fn observe_ns_tables(
        &mut self,
        topology: &str,
        namespaces: &[String],
        family: nft::Family,
    ) -> Result<BTreeMap<String, Option<Dumped>>> {
        let name = ruleset::ns_key(family, &table_name(topology));
        let table = |ns: &String| self.ns_tables.get(ns).and_then(|m| m.get(&name)).cloned();
        Ok(namespaces
            .iter()
            .map(|ns| (ns.clone(), table(ns)))
            .collect())
    }

    fn netem_supported(&mut self) -> Result<bool> {
        Ok(self.netem)
    }

    fn execute(
        &mut self,
        steps: &[Step],
        mark: &str,
        _hints: &Hints,
        done: &mut dyn FnMut(&Step),
        between: &mut dyn FnMut(&mut dyn Kernel) -> Result<()>,
    ) -> Result<()> {
        for stage in [
            Stage::Teardown,
            Stage::Namespaces,
            Stage::HostBuild,
            Stage::NsConfig,
            Stage::HostFinish,
        ] {
            if stage == Stage::Namespaces {
                between(self)?;
            }
            let these = steps.iter().filter(|s| s.stage() == stage).collect();
            for s in executor_order(these) {
                if self.stop_before_announcing && matches!(s, Step::Announce(_)) {
                    bail!("killed before announcing");
                }
                self.sent.push(Sent::Step(s.clone()));
                self.net.apply(s, mark)?;
                done(s);
            }
        }
        Ok(())
    }

    fn send(&mut self, ns: Option<&str>, ops: &[Op]) -> Result<()> {
        self.sent
            .push(Sent::Batch(ns.map(str::to_string), ops.to_vec()));
        if self.refuse_batches {
            bail!("the kernel refused the batch (the fake refuses every batch)");
        }
        // All or nothing: applied to a copy, which replaces the ruleset when every op went.
        match ns {
            None => {
                let mut s = self.nft.clone();
                let mut handle = self.next_handle;
                for op in ops {
                    host_op(&mut s, op, &mut handle)?;
                }
                (self.nft, self.next_handle) = (s, handle);
                self.generation = nft::dump::next_generation(self.generation);
                if self.others_commit {
                    self.generation = nft::dump::next_generation(self.generation);
                }
            }
            Some(ns) => {
                let mut t = self.ns_tables.get(ns).cloned().unwrap_or_default();
                for op in ops {
                    ns_op(&mut t, op).map_err(|e| anyhow!("namespace {ns}: {e:#}"))?;
                }
                self.ns_tables.insert(ns.to_string(), t);
            }
        }
        Ok(())
    }

    fn forget(&mut self, f: &Forget, _locals: &[IpAddr]) -> Result<usize> {
        self.sent.push(Sent::Forget(f.clone()));
        Ok(0)
    }

    fn generation(&mut self) -> Option<u32> {
        Some(self.generation)
    }

    fn remove_legacy(&mut self, rs: &[crate::plumbing::xtables::Removal]) -> Result<usize> {
        self.sent.push(Sent::Legacy(rs.to_vec()));
        if self.refuse_legacy {
            bail!("the fake refuses to touch iptables-legacy");
        }
        let n = self.hand.legacy.found.len();
        self.hand.legacy.found.retain(|f| {
            !rs.iter()
                .any(|r| f.at.legacy.as_ref() == Some(&r.key) && f.at.chain == r.chain)
        });
        Ok(n - self.hand.legacy.found.len())
    }

    /// The hand-written rules it was given; every one concerns the topology.
    fn hand_rules(
        &mut self,
        _names: &[String],
        _subnets: &[ipnetwork::IpNetwork],
    ) -> Result<crate::adopt::HandRules> {
        Ok(self.hand.clone())
    }
}
