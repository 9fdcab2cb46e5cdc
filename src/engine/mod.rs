//! The operations behind apply, diff and flush: observe what the kernel holds of a topology,
//! plan the way to what it should hold, carry the plan out under the lock with the
//! write-ahead record kept, and check the result. Commands are thin layers over these.

#[cfg(test)]
mod fake;
mod kernel;
#[cfg(test)]
mod memory_tests;
mod recheck;
#[cfg(test)]
mod scale_tests;
mod side;
mod target;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vxlan_tests;

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Result, bail};

use crate::adopt;
use crate::firewall;
use crate::plan::{self, Owner, Plan, Step};
use crate::plumbing::{self, Query};
use crate::state::{Lock, Record};
use kernel::{Kernel, Real, forget, remove_legacy};
use nft::socket::NftSocket;
pub(crate) use target::{Memory, Target};

/// What the kernel holds of everything nsfw manages: the plumbing (links, addresses, routes,
/// sysctls, files) and nftables.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub net: plumbing::Observed,
    pub nft: firewall::NftState,
    /// firewalld's runtime zones of the interfaces that concern the run.
    pub firewalld: crate::firewalld::Firewalld,
    /// `--adopt` (or an interrupted adoption to finish): other owners' rules that concern the
    /// topology, or why they cannot be read.
    pub hand: Option<std::result::Result<adopt::HandRules, String>>,
}

/// Reads what the plan needs: the host and every namespace; namespaces of the file (and the
/// leftovers the record names) whole; nftables.
pub(crate) fn observe(tg: &Target, rec: &Record, nft: &mut NftSocket) -> Result<Observed> {
    observe_in(&mut Real { nft }, tg, rec)
}

fn observe_in(k: &mut dyn Kernel, tg: &Target, rec: &Record) -> Result<Observed> {
    let listeners = tg.topology.is_some_and(firewall::publish::any);
    let asked;
    let known = match (&tg.memory, tg.topology) {
        (Memory::Ask, Some(t)) => {
            asked = k.memory(&t.name);
            asked.as_ref()
        }
        (Memory::Given(m), _) => Some(m),
        _ => None,
    };
    let asking = tg.memory.asking();
    let (mut net, mut nft) = remembering(tg, rec, known, asking, &mut |q| k.observe(q, listeners))?;
    side::observe(k, tg, &net, &mut nft)?;
    // A table whose `bridges` set names bridges counts only through them (links, looked for
    // directly): with its namespaces and bridges deleted by hand, the topology is gone. One
    // without any (a topology of `[host]` settings alone) is there by its table.
    net.tables_of = nft
        .tables
        .iter()
        .filter_map(|t| {
            let who = t.comment.as_deref().and_then(crate::owner::topology_of)?;
            let bridged = nft
                .own
                .get(&t.name)
                .and_then(|d| d.set("bridges"))
                .and_then(std::result::Result::ok)
                .is_some_and(|s| !s.elements.is_empty());
            (!bridged).then(|| who.to_string())
        })
        .collect();
    let ask = crate::firewalld::to_ask(&crate::firewalld::interfaces(&tg.desired), rec, &|t| {
        tg.who.owns_topology(t)
    });
    let firewalld = k.firewalld(crate::firewalld::table_present(&nft.tables), &ask);
    // A killed adoption's hand rules go in the run that finishes it, with --adopt or not:
    // recognised again (their handles may have moved), as the first run did.
    let hand = tg
        .topology
        .filter(|_| tg.adopt || rec.adopting.contains_key(&tg.desired.topology))
        .map(|t| {
            let (names, subnets) = adopt::lab_of(t);
            k.hand_rules(&names, &subnets).map_err(|e| format!("{e:#}"))
        });
    Ok(Observed {
        net,
        nft,
        firewalld,
        hand,
    })
}

/// The plumbing part of [`observe`]: links, addresses, routes, sysctls.
fn observe_plumbing(k: &mut dyn Kernel, tg: &Target, rec: &Record) -> Result<plumbing::Observed> {
    with_query(tg, rec, &mut |q| k.observe_net(q))
}

/// Runs `f` with the plumbing's query for `tg`: the namespaces of the file and the leftovers
/// the record names are read whole, with their sysctls; the host's sysctls the file or the
/// record names.
fn with_query<T>(tg: &Target, rec: &Record, f: &mut dyn FnMut(&Query) -> T) -> T {
    remembering(tg, rec, None, None, f)
}

/// [`with_query`], taking what `known` (or `asking`'s answer) vouches for instead of reading.
fn remembering<T>(
    tg: &Target,
    rec: &Record,
    known: Option<&plumbing::memory::Known>,
    asking: Option<&plumbing::memory::Asking>,
    f: &mut dyn FnMut(&Query) -> T,
) -> T {
    let d = &tg.desired;
    let leftovers = rec.pending_of(&|t| tg.who.owns_topology(t));
    let deep = |name: &str, _owner: Option<&str>| {
        d.namespaces.contains_key(name) || leftovers.namespaces.contains(name)
    };
    let ns_sysctls = |name: &str| -> Vec<String> {
        d.namespaces
            .get(name)
            .map(|n| n.sysctls.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut host_sysctls = crate::compile::host_keys(d);
    host_sysctls.extend(rec.sysctls.keys().cloned());
    host_sysctls.sort();
    host_sysctls.dedup();
    f(&Query {
        deep: &deep,
        ns_sysctls: &ns_sysctls,
        host_sysctls,
        known,
        asking,
        // `deep` looks at the name alone.
        peek: true,
    })
}

/// The whole plan: plumbing and the nftables batch.
pub(crate) fn plan(tg: &Target, o: &Observed, rec: &Record) -> Result<Plan> {
    plan_with(tg, o, rec, &mut plumbing::qdisc::netem_supported)
}

/// [`plan`], asking `netem` whether links can be impaired.
fn plan_with(
    tg: &Target,
    o: &Observed,
    rec: &Record,
    netem: &mut dyn FnMut() -> Result<bool>,
) -> Result<Plan> {
    let (mut p, adoption) = plan_adopting(tg, o, rec)?;
    // Impairments the kernel cannot make would stop the run half-way: refused up front.
    let impaired: Vec<String> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SetNetem(s) if !s.shape.netem.is_empty() => Some(s.place.link(&s.ifname)),
            _ => None,
        })
        .collect();
    if !impaired.is_empty() && !netem()? {
        p.conflicts.push(format!(
            "{}: latency/jitter/loss on {}: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), so the link cannot be impaired (a `rate` alone needs no netem)",
            tg.desired.source,
            impaired.join(", ")
        ));
    }
    if let Some(t) = tg.topology {
        // The host's addresses once the plan is carried out: those it has and those it gets.
        let mut host: Vec<IpAddr> = o.net.host.addrs.iter().map(|a| a.net.ip()).collect();
        host.extend(tg.desired.host.addrs.iter().map(|(_, n)| n.ip()));
        p.warnings
            .extend(firewall::publish::foreign_addresses(t, &host));
        let links = o.net.host.links.iter().map(|l| l.name.as_str());
        p.warnings.extend(firewall::missing_ways_out(t, links));
        p.conflicts
            .extend(side::taken_macs(t, o, &tg.desired.source));
        let h = &o.net.host;
        let default = h
            .routes
            .iter()
            .filter(|r| r.dst.prefix() == 0 && r.dst.is_ipv4() && r.kind == 1);
        if let Some(dev) = default
            .min_by_key(|r| r.metric)
            .and_then(|r| h.name_of(r.oif?))
        {
            p.warnings.extend(firewall::default_left_out(t, dev));
        }
    }
    p.nft = plan_nft(tg, o, rec)?;
    if let Some(a) = adoption {
        adopt::finish(&mut p, a, &tg.desired.topology);
    }
    p.conflicts.extend(std::mem::take(&mut p.nft.conflicts));
    p.warnings.extend(std::mem::take(&mut p.nft.warnings));
    let z = crate::firewalld::plan(
        &tg.desired.topology,
        &crate::firewalld::interfaces(&tg.desired),
        &o.firewalld,
        rec,
        &|t| tg.who.owns_topology(t),
    );
    p.record_during.firewalld = z.during;
    p.record_after.firewalld = z.after;
    p.warnings.extend(z.warnings);
    p.firewalld = z.changes;
    p.firewalld_unchecked = z.unchecked;
    Ok(p)
}

/// The plumbing's plan, over the observation as it is once what the run adopts is marked
/// (see `adopt`), and the adoption, which `adopt::finish` folds in once the nftables part is
/// planned.
fn plan_adopting(
    tg: &Target,
    obs: &Observed,
    rec: &Record,
) -> Result<(Plan, Option<adopt::Adoption>)> {
    let o = &obs.net;
    let Some(t) = tg.topology else {
        let mut o = o.clone();
        for (t, a) in adopt::find_for_flush(&o, rec, tg.who) {
            o = adopt::as_marked(&o, &a, &crate::owner::mark(&t), &t).into_owned();
        }
        let mut p = plan::plan(&tg.desired, &o, rec, tg.who);
        adopt::finish_flush(&mut p, tg.who);
        return Ok((p, None));
    };
    let mut a = adopt::find(&tg.desired, o, rec, tg.adopt);
    match &obs.hand {
        Some(Ok(hand)) => adopt::rules(t, &mut a, hand),
        Some(Err(e)) if tg.adopt => bail!("cannot read the hand-written rules: {e}"),
        Some(Err(e)) => a.kept.push(format!(
            "the hand-written rules an interrupted adoption was replacing cannot be read ({e}): `nsfw apply --adopt` removes them"
        )),
        None => {}
    }
    let marked = adopt::as_marked(o, &a, &tg.desired.mark, &tg.desired.topology);
    let mut p = plan::plan(&tg.desired, &marked, rec, tg.who);
    if tg.adopt {
        adopt::guard(&mut p, o, &a, &tg.desired.source);
    }
    Ok((p, Some(a)))
}

fn plan_in(k: &mut dyn Kernel, tg: &Target, o: &Observed, rec: &Record) -> Result<Plan> {
    plan_with(tg, o, rec, &mut || k.netem_supported())
}

/// The nftables part of [`plan`].
fn plan_nft(tg: &Target, o: &Observed, rec: &Record) -> Result<firewall::NftPlan> {
    let nft = match tg.topology {
        Some(t) => {
            // The LANs behind taken ports are sources of their bridges too.
            let (t, left_out) = plan::with_lan(t, &o.net, rec);
            let mut nft = firewall::diff(&t, &o.nft, firewall::prepare(&t))?;
            nft.warnings.extend(left_out);
            nft
        }
        None => {
            let owners = match tg.who {
                Owner::Topology(n) => Some(vec![n.to_string()]),
                Owner::All => None,
            };
            firewall::flush(owners.as_deref(), &o.nft)
        }
    };
    Ok(nft)
}

/// The host's addresses once the plan is carried out: those it has and those it gets.
fn locals(tg: &Target, o: &Observed) -> Vec<IpAddr> {
    let mut locals: Vec<IpAddr> = o.net.host.addrs.iter().map(|a| a.net.ip()).collect();
    locals.extend(tg.desired.host.addrs.iter().map(|(_, n)| n.ip()));
    locals
}

/// Carries a plan out: the record first (what the run creates, the sysctls it changes); the
/// plumbing a stage at a time, with the host's nftables batch (and the conntrack entries it
/// makes stale) after the removals when applying, after everything when flushing; the routing
/// namespaces' batches. `done` hears of each change as it is made. The record is brought up
/// to date at the end.
fn carry_out_in(
    k: &mut dyn Kernel,
    dir: BorrowedFd,
    tg: &Target,
    p: &Plan,
    o: &Observed,
    done: &mut dyn FnMut(String),
) -> Result<()> {
    let mut during = p.record_during.clone();
    if !p.creates.is_empty() {
        let e = during
            .pending
            .entry(tg.desired.topology.clone())
            .or_default();
        e.extend(&p.creates);
    }
    if during != Record::load(dir) {
        during.save(dir)?;
    }
    // Applying, the firewall goes between the removals and the building: its rules name
    // interfaces, not indexes, so they hold before the links exist, and a batch the kernel
    // refuses then stops the run before any new namespace is up without it; what leaves is
    // gone before the rules that judged it are relaxed. Flushing, it goes last, after the
    // namespaces it protects.
    let apply = tg.topology.is_some();
    let mut nft_sent = false;
    let mut legacy_done = false;
    k.execute(
        &p.steps,
        &tg.desired.mark,
        &plan::Hints::of(&o.net),
        &mut |s: &Step| done(s.to_string()),
        &mut |k: &mut dyn Kernel| {
            if apply && !p.nft.ops.is_empty() {
                k.send(None, &p.nft.ops)?;
                nft_sent = true;
                // Right after the batch, before anything can stop the run: a later run
                // would find the maps already right and never know which flows to forget.
                forget(k, p, &locals(tg, o));
            }
            if apply {
                remove_legacy(k, p)?;
                legacy_done = true;
            }
            crate::signals::check()
        },
    )?;
    crate::signals::check()?;
    if !nft_sent && !p.nft.ops.is_empty() {
        k.send(None, &p.nft.ops)?;
        forget(k, p, &locals(tg, o));
    }
    if !legacy_done {
        remove_legacy(k, p)?;
    }
    // Inside routing namespaces: a batch each.
    for (ns, ops) in &p.nft.ns_ops {
        k.send(Some(ns), ops)?;
    }
    // firewalld last: binding names, not links, it holds before or after them alike; the
    // record already names every binding this makes.
    k.firewalld_apply(&p.firewalld)?;
    for c in &p.firewalld {
        done(c.to_string());
    }
    if !p.nft.ops.is_empty() || !p.nft.ns_ops.is_empty() || !p.legacy.is_empty() {
        for l in &p.nft.lines {
            done(l.to_string());
        }
    }
    Ok(())
}

/// The outcome of a converging run.
pub(crate) struct Outcome {
    /// Changes made.
    pub changes: usize,
    /// The plan that was carried out.
    pub plan: Plan,
}

/// Observes, plans, carries the plan out and observes again: anything still pending is an
/// error. Conflicts stop the run before anything changes.
pub(crate) fn converge(
    tg: &Target,
    lock: &Lock,
    done: &mut dyn FnMut(String),
    before: &mut dyn FnMut(&Plan, &Observed),
) -> Result<Outcome> {
    let mut nft = NftSocket::open()?;
    let out = converge_in(
        &mut Real { nft: &mut nft },
        lock.dir().as_fd(),
        tg,
        done,
        before,
    );
    // The kernel's release waits a grace period after a commit: not on the caller's clock.
    let _ = nft.close_detached();
    out
}

/// How long a run waits for children of namespaces being torn down to leave their uplink.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Observes and plans; while the only conflicts are the MACs of the file's own children of
/// namespaces flushed just before (the kernel still tearing them down), again, for at most
/// [`LINGER`] since `t0`.
fn observe_and_plan(
    k: &mut dyn Kernel,
    tg: &Target,
    rec: &Record,
    t0: std::time::Instant,
) -> Result<(Observed, Plan)> {
    let mut o = observe_in(k, tg, rec)?;
    let mut p = plan_in(k, tg, &o, rec)?;
    while let Some(t) = tg.topology
        && t0.elapsed() < LINGER
        && side::only_lingering_macs(t, &o, &p.conflicts, &tg.desired.source)
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
        o = observe_in(k, tg, rec)?;
        p = plan_in(k, tg, &o, rec)?;
    }
    Ok((o, p))
}

/// [`converge`] over kernel `k`, with the record in directory `dir`.
fn converge_in(
    k: &mut dyn Kernel,
    dir: BorrowedFd,
    tg: &Target,
    done: &mut dyn FnMut(String),
    before: &mut dyn FnMut(&Plan, &Observed),
) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let rec = Record::load(dir);
    let (mut o, p) = observe_and_plan(k, tg, &rec, t0)?;
    crate::detail!("timing: planned after {:?}", t0.elapsed());
    // The caller sees the plan first, conflicts and all (`apply --json` prints it).
    before(&p, &o);
    if !p.conflicts.is_empty() {
        let hint = if !tg.adopt
            && p.conflicts
                .iter()
                .any(|c| c.contains("nsfw does not own it"))
        {
            "\nhint: if they were built by hand and are what the file says, `nsfw apply --adopt FILE` takes them over in place (`nsfw import` writes such a file)"
        } else {
            ""
        };
        bail!(
            "{}\nnothing was changed{hint}",
            p.conflicts.join("\nerror: ")
        );
    }
    if p.is_empty() {
        if p.record_after != rec {
            p.record_after.save(dir)?;
        }
        unreachable_is_error(&p)?;
        plumbing::threads::drop_aside(o);
        return Ok(Outcome {
            changes: 0,
            plan: p,
        });
    }
    carry_out_in(k, dir, tg, &p, &o, done)?;
    crate::detail!("timing: carried out after {:?}", t0.elapsed());
    let rec2 = Record::load(dir);
    let mut left = pending_after(k, tg, &p, &mut o, &rec, &rec2)?;
    // A change can make the kernel make more: a link's MTU raised past 1280 gives it IPv6,
    // with the kernel's address generation and a link-local address the file says it must not
    // have. Such consequences are steps this run did not plan; one more round carries them out
    // (never the same steps again: those failing twice are a real difference).
    if !left.is_empty()
        && left.conflicts.is_empty()
        && left.nft.ops.is_empty()
        && left.nft.ns_ops.is_empty()
        && left.creates.is_empty()
        && left.firewalld.is_empty()
        && !left.steps.iter().any(|s| p.steps.contains(s))
    {
        crate::detail!(
            "a second round for {} consequence(s) of the first",
            left.steps.len()
        );
        let net = observe_plumbing(k, tg, &rec2)?;
        k.execute(
            &left.steps,
            &tg.desired.mark,
            &plan::Hints::of(&net),
            &mut |s: &Step| done(s.to_string()),
            &mut |_: &mut dyn Kernel| crate::signals::check(),
        )?;
        left = pending_after(k, tg, &p, &mut o, &rec, &Record::load(dir))?;
    }
    crate::detail!("timing: observed again after {:?}", t0.elapsed());
    if !left.is_empty() || !left.conflicts.is_empty() {
        bail!(
            "the run finished but the host still differs; pending:\n{left}{}",
            left.conflicts.join("\n")
        );
    }
    p.record_after.save(dir)?;
    unreachable_is_error(&p)?;
    plumbing::threads::drop_aside(o);
    Ok(Outcome {
        changes: p.len(),
        plan: p,
    })
}

/// What a run left pending: the plumbing read and planned again (and nftables, unless it
/// holds what the plan made it), less what `--adopt` left out on purpose.
fn pending_after(
    k: &mut dyn Kernel,
    tg: &Target,
    p: &Plan,
    o: &mut Observed,
    rec: &Record,
    rec2: &Record,
) -> Result<Plan> {
    let mut left = if nft_as_planned(p, o, k) {
        if p.steps.is_empty() && rec2 == rec {
            // Nothing of the plumbing was changed, and nftables holds what the plan made it:
            // reading the links again would look for others' changes, not check this run's.
            Plan::default()
        } else {
            // Read again where the plan changed it (`recheck`); nftables as the plan made it.
            recheck::with_reread(k, tg, p, &mut o.net, &[rec, rec2], |net| {
                plan::plan(&tg.desired, net, rec2, tg.who)
            })?
        }
    } else {
        let o2 = observe_in(k, tg, rec2)?;
        plan_in(k, tg, &o2, rec2)?
    };
    // What is left pending may only be the record's own bookkeeping, and what --adopt
    // left out on purpose.
    left.record_after = p.record_after.clone();
    left.steps.retain(|s| !goes_with_a_namespace(p, s));
    // Announcements are sent, not held: the record still notes this run's until it is saved.
    left.steps.retain(|s| !matches!(s, Step::Announce(_)));
    // A left-out removal still pending brings back the steps that go with it ("again"
    // routes, forgotten neighbours): this run carried those out already.
    if !p.left_out.is_empty() {
        left.steps
            .retain(|s| !p.left_out.contains(s) && !p.steps.contains(s));
    }
    Ok(left)
}

/// Whether `s` deletes a host end of a veth pair whose namespace plan `p` deleted: the kernel
/// takes it with the namespace in its own time, which a flush does not wait for (`plan::execute`).
fn goes_with_a_namespace(p: &Plan, s: &Step) -> bool {
    let Step::DeleteLink(d) = s else { return false };
    let taken = |x: &Step| matches!(x, Step::DeleteNamespace(n) if n.takes.contains(&d.name));
    d.place == crate::resources::Place::Host && p.steps.iter().any(taken)
}

/// Whether the ruleset is now exactly the observed one changed by the plan's batch, so that
/// reading it back and planning again would find nothing left: nf_tables adds one to its
/// generation at every commit, whoever commits. The observation was read at one generation
/// (nothing committed while it was read); if the generation is now that one plus one when a
/// batch was sent (or unchanged when none was), nobody else committed since, and the batch —
/// all or nothing — is the only change. The plan's batch was computed to take that ruleset to
/// the desired one, which reading back would only check again. Anything else (a commit by
/// someone else, a kernel that cannot say, an observation that straddled a commit) means
/// reading it back. Element timeouts and dynamic sets change a table without a commit;
/// nsfw's tables have neither.
fn nft_as_planned(p: &Plan, o: &Observed, k: &mut dyn Kernel) -> bool {
    let Some(seen) = o.nft.generation else {
        return false;
    };
    let want = if p.nft.ops.is_empty() {
        seen
    } else {
        nft::dump::next_generation(seen)
    };
    let now = k.generation();
    crate::detail!(
        "nftables generation: observed {seen}, now {}, expected {want}",
        now.map_or_else(|| "unknown".to_string(), |n| n.to_string())
    );
    now == Some(want)
}

fn unreachable_is_error(p: &Plan) -> Result<()> {
    if p.unreachable.is_empty() {
        return Ok(());
    }
    bail!(
        "{}\nnsfw could not look into these; anything of nsfw's in them is unchecked",
        p.unreachable.join("\nerror: ")
    )
}
