//! What the engine needs of the kernel, as one trait: observe the plumbing and nftables, carry
//! a plan's steps out, send nftables batches, forget conntrack entries, read the ruleset's
//! generation. [`Real`] is the kernel itself (today's plumbing, plan executor and firewall
//! code, unchanged); the engine's unit tests put an in-memory kernel in its place, so that
//! `converge` runs without root (as knftables' fake does for kube-proxy).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Result, anyhow};
use nft::batch::Op;
use nft::dump::Dumped;
use nft::socket::NftSocket;

use crate::firewall::{self, NftState, conntrack::Forget};
use crate::plan::{self, Plan, Step};
use crate::plumbing::{self, Query};

/// Link indexes, the host's and inside the namespaces: where the executor starts from.
pub(super) use crate::plan::Hints;

/// The kernel as the engine sees it.
pub(super) trait Kernel {
    /// The plumbing (links, addresses, routes, sysctls, files) as `q` asks, and the host's
    /// nftables (with the listening sockets when `listeners`), read at once.
    fn observe(&mut self, q: &Query, listeners: bool) -> Result<(plumbing::Observed, NftState)>;

    /// What topology `topology`'s `nsfw watch` vouches for, if one answers.
    fn memory(&mut self, _topology: &str) -> Option<plumbing::memory::Known> {
        None
    }

    /// The plumbing alone.
    fn observe_net(&mut self, q: &Query) -> Result<plumbing::Observed>;

    /// The plumbing, entering only the namespaces in `only` and reading the host's links as
    /// `host` says (a kernel may read more).
    fn observe_some(
        &mut self,
        q: &Query,
        _only: &std::collections::BTreeSet<String>,
        _host: &plumbing::HostLinks,
    ) -> Result<plumbing::Observed> {
        self.observe_net(q)
    }

    /// nsfw's `family` table of topology `topology` inside each of `namespaces` (None: it
    /// has none).
    fn observe_ns_tables(
        &mut self,
        topology: &str,
        namespaces: &[String],
        family: nft::Family,
    ) -> Result<BTreeMap<String, Option<Dumped>>>;

    /// The unicast address list of each host link of `indexes` (macvlan uplinks: their
    /// children's MACs). The in-memory kernel has none.
    fn unicast(&mut self, _indexes: &[u32]) -> Result<BTreeMap<u32, Vec<crate::topology::Mac>>> {
        Ok(BTreeMap::new())
    }

    /// Whether links can be impaired (a netem qdisc).
    fn netem_supported(&mut self) -> Result<bool>;

    /// Carries `steps` out a stage at a time, telling `done` of each as it is made;
    /// `between` runs after the removals, before the namespaces are made.
    fn execute(
        &mut self,
        steps: &[Step],
        mark: &str,
        hints: &Hints,
        done: &mut dyn FnMut(&Step),
        between: &mut dyn FnMut(&mut dyn Kernel) -> Result<()>,
    ) -> Result<()>;

    /// Sends `ops` as one batch: to the host's ruleset (`ns` None) or a namespace's.
    fn send(&mut self, ns: Option<&str>, ops: &[Op]) -> Result<()>;

    /// Deletes the conntrack entries `f` makes stale (`locals`: the host's addresses);
    /// returns how many.
    fn forget(&mut self, f: &Forget, locals: &[IpAddr]) -> Result<usize>;

    /// The host ruleset's generation now (None: the kernel cannot say).
    fn generation(&mut self) -> Option<u32>;

    /// Other owners' rules (nftables, iptables-legacy) that concern the bridges `names` and
    /// `subnets` (`--adopt`).
    fn hand_rules(
        &mut self,
        names: &[String],
        subnets: &[ipnetwork::IpNetwork],
    ) -> Result<crate::adopt::HandRules>;

    /// Removes rules of iptables-legacy (`--adopt`: the hand-written ones it replaces).
    fn remove_legacy(&mut self, rs: &[crate::plumbing::xtables::Removal]) -> Result<usize>;

    /// firewalld's runtime zone of each of `ifaces`, asked only when `table` (its nftables
    /// table is in the ruleset). The in-memory kernel has no firewalld.
    fn firewalld(&mut self, _table: bool, _ifaces: &[String]) -> crate::firewalld::Firewalld {
        crate::firewalld::Firewalld::Absent
    }

    /// Binds and unbinds interfaces in firewalld's zone.
    fn firewalld_apply(&mut self, _changes: &[crate::firewalld::Change]) -> Result<()> {
        Ok(())
    }
}

/// The kernel itself, over the run's nftables socket.
pub(super) struct Real<'s> {
    pub(crate) nft: &'s mut NftSocket,
}

/// Links, addresses, routes, sysctls and files; with watch's answer, when one is coming,
/// waited for here (beside the read of nftables) and taken as `known`.
fn observe_plumbing(q: &Query) -> Result<plumbing::Observed> {
    if let Some(a) = q.asking {
        let known = a.answer();
        return observe_plumbing(&Query {
            known: known.as_ref(),
            asking: None,
            host_sysctls: q.host_sysctls.clone(),
            ..*q
        });
    }
    let t0 = std::time::Instant::now();
    let o = plumbing::observe(q)?;
    crate::detail!("timing: observed the links after {:?}", t0.elapsed());
    Ok(o)
}

impl Kernel for Real<'_> {
    fn observe(&mut self, q: &Query, listeners: bool) -> Result<(plumbing::Observed, NftState)> {
        let t0 = std::time::Instant::now();
        // The links and the host's ruleset are unrelated reads, each mostly waiting on the
        // kernel: the plumbing's workers visit the namespaces while this thread reads
        // nftables. (Workers enter namespaces on their own threads; this one stays in the
        // host's.)
        let nft = &mut *self.nft;
        let (o, s) = plumbing::threads::beside(
            || observe_plumbing(q),
            || {
                firewall::observe(nft).map(|mut s| {
                    if listeners {
                        s.listeners = plumbing::listeners::read();
                    }
                    s
                })
            },
        );
        let o = o.unwrap_or_else(|| {
            Err(anyhow!(
                "observing the links: the thread stopped unexpectedly"
            ))
        });
        let (o, s) = (o?, s?);
        crate::detail!("timing: observed nftables after {:?}", t0.elapsed());
        Ok((o, s))
    }

    fn observe_net(&mut self, q: &Query) -> Result<plumbing::Observed> {
        observe_plumbing(q)
    }

    fn memory(&mut self, topology: &str) -> Option<plumbing::memory::Known> {
        plumbing::memory::ask(topology)
    }

    fn unicast(&mut self, indexes: &[u32]) -> Result<BTreeMap<u32, Vec<crate::topology::Mac>>> {
        let mut c = plumbing::rtnl::Conn::open("host")?;
        plumbing::fdb::unicast(&mut c, indexes)
    }

    fn observe_some(
        &mut self,
        q: &Query,
        only: &std::collections::BTreeSet<String>,
        host: &plumbing::HostLinks,
    ) -> Result<plumbing::Observed> {
        let t0 = std::time::Instant::now();
        let o = plumbing::observe_some(q, Some(only), host)?;
        crate::detail!(
            "timing: observed the links of {} namespace(s) after {:?}",
            only.len(),
            t0.elapsed()
        );
        Ok(o)
    }

    fn observe_ns_tables(
        &mut self,
        topology: &str,
        namespaces: &[String],
        family: nft::Family,
    ) -> Result<BTreeMap<String, Option<Dumped>>> {
        firewall::observe_ns(topology, namespaces, family)
    }

    fn netem_supported(&mut self) -> Result<bool> {
        plumbing::qdisc::netem_supported()
    }

    fn execute(
        &mut self,
        steps: &[Step],
        mark: &str,
        hints: &Hints,
        done: &mut dyn FnMut(&Step),
        between: &mut dyn FnMut(&mut dyn Kernel) -> Result<()>,
    ) -> Result<()> {
        plan::execute(steps, mark, hints, done, &mut || between(&mut *self)).map(|_| ())
    }

    fn send(&mut self, ns: Option<&str>, ops: &[Op]) -> Result<()> {
        let Some(ns) = ns else {
            return firewall::execute(self.nft, ops);
        };
        // A batch cannot span network namespaces: a socket opened inside this one.
        let ops = ops.to_vec();
        plumbing::netns::run_in(ns, move || {
            let mut sock = NftSocket::open()?;
            let done = firewall::execute(&mut sock, &ops);
            // Its release would wait for this commit's clean-up, a grace period per namespace.
            let _ = sock.close_detached();
            done
        })
        .map_err(|e| anyhow!("namespace {ns}: {e:#}"))
    }

    fn forget(&mut self, f: &Forget, locals: &[IpAddr]) -> Result<usize> {
        firewall::conntrack::forget(self.nft, f, locals)
    }

    fn generation(&mut self) -> Option<u32> {
        self.nft.generation().ok()
    }

    fn remove_legacy(&mut self, rs: &[crate::plumbing::xtables::Removal]) -> Result<usize> {
        plumbing::xtables::remove_all(rs)
    }

    fn hand_rules(
        &mut self,
        names: &[String],
        subnets: &[ipnetwork::IpNetwork],
    ) -> Result<crate::adopt::HandRules> {
        crate::adopt::read_rules(names, subnets)
    }

    fn firewalld(&mut self, table: bool, ifaces: &[String]) -> crate::firewalld::Firewalld {
        crate::firewalld::observe(table, ifaces)
    }

    fn firewalld_apply(&mut self, changes: &[crate::firewalld::Change]) -> Result<()> {
        crate::firewalld::apply(changes)
    }
}

/// Deletes the conntrack entries of published UDP ports the batch moved, if any.
pub(super) fn forget(k: &mut dyn Kernel, p: &Plan, locals: &[IpAddr]) {
    if p.nft.forget.is_empty() {
        return;
    }
    match k.forget(&p.nft.forget, locals) {
        Ok(n) => crate::detail!(
            "conntrack: deleted {n} entries of published UDP ports that moved, went away or came"
        ),
        // The maps are right; only flows already running keep their old way until their
        // entries time out. Not a reason to fail the run.
        Err(e) => crate::warning!(
            "cannot delete the conntrack entries of published UDP ports that moved, went away or came ({e:#}): a client that keeps sending from one port keeps its old way (to the old namespace, or to the host) until its entry times out"
        ),
    }
}

/// `--adopt`: the hand-written rules of iptables-legacy the adoption replaces, right after the
/// batch that loads nsfw's table (x_tables is outside nf_tables: no batch spans both). The
/// record's `adopting` entry says they are still to go until the run is done.
pub(super) fn remove_legacy(k: &mut dyn Kernel, p: &Plan) -> Result<()> {
    if p.legacy.is_empty() {
        return Ok(());
    }
    let n = k.remove_legacy(&p.legacy)?;
    crate::detail!("iptables-legacy: removed {n} hand-written rules the topology replaces");
    Ok(())
}
