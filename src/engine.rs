//! The operations behind apply, diff and flush: observe what the kernel holds of a topology,
//! plan the way to what it should hold, carry the plan out under the lock with the
//! write-ahead record kept, and check the result. Commands are thin layers over these.

use anyhow::{Result, bail};

use crate::compile::compile;
use crate::firewall;
use crate::plan::{self, Owner, Plan, Step};
use crate::plumbing::{self, Observed, Query};
use crate::resources::Desired;
use crate::state::{Lock, Record};
use crate::topology::Topology;
use nft::socket::NftSocket;

/// What one topology (or a flush) wants, and whose objects it may touch.
pub struct Target<'a> {
    pub desired: Desired,
    pub who: Owner<'a>,
    /// The topology, for the firewall (None: a flush).
    pub topology: Option<&'a Topology>,
}

impl<'a> Target<'a> {
    pub fn apply(t: &'a Topology) -> Target<'a> {
        Target {
            desired: compile(t),
            who: Owner::Topology(&t.name),
            topology: Some(t),
        }
    }

    /// Nothing wanted: everything `who` owns goes.
    pub fn flush(who: Owner<'a>) -> Target<'a> {
        let name = match who {
            Owner::Topology(n) => n.to_string(),
            Owner::All => String::new(),
        };
        Target {
            desired: Desired {
                mark: crate::owner::mark(&name),
                topology: name,
                ..Default::default()
            },
            who,
            topology: None,
        }
    }
}

/// Reads what the plan needs: the host and every namespace; namespaces of the file (and the
/// leftovers the record names) whole; nftables.
pub fn observe(tg: &Target, rec: &Record, nft: &mut NftSocket) -> Result<Observed> {
    let t0 = std::time::Instant::now();
    // The links and the host's ruleset are unrelated reads, each mostly waiting on the
    // kernel: the plumbing's workers visit the namespaces while this thread reads nftables.
    // (Workers enter namespaces on their own threads; this one stays in the host's.)
    let (o, s) = std::thread::scope(|scope| {
        let links = scope.spawn(|| observe_plumbing(tg, rec));
        let s = observe_host_nft(tg, nft);
        let o = links.join().unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "observing the links: the thread stopped unexpectedly"
            ))
        });
        (o, s)
    });
    let mut o = o?;
    let mut s = s?;
    crate::detail!("timing: observed nftables after {:?}", t0.elapsed());
    observe_ns_tables(tg, &o, &mut s)?;
    o.nft = s;
    Ok(o)
}

/// The plumbing part of [`observe`]: links, addresses, routes, sysctls.
fn observe_plumbing(tg: &Target, rec: &Record) -> Result<Observed> {
    let t0 = std::time::Instant::now();
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
    let mut host_sysctls: Vec<String> = d.host.sysctls.keys().cloned().collect();
    host_sysctls.extend(rec.sysctls.keys().cloned());
    host_sysctls.sort();
    host_sysctls.dedup();
    let q = Query {
        deep: &deep,
        ns_sysctls: &ns_sysctls,
        host_sysctls,
    };
    let o = plumbing::observe(&q)?;
    crate::detail!("timing: observed the links after {:?}", t0.elapsed());
    Ok(o)
}

/// The nftables part of [`observe`].
/// Router namespaces (those forwarding) are looked into for nsfw's table there.
fn observe_host_nft(tg: &Target, nft: &mut NftSocket) -> Result<firewall::NftState> {
    let mut s = firewall::observe(nft)?;
    if tg.topology.is_some_and(firewall::publish::any) {
        s.listeners = plumbing::listeners::read();
    }
    Ok(s)
}

/// nsfw's tables inside the namespaces that forward, which the plumbing says.
fn observe_ns_tables(tg: &Target, o: &Observed, s: &mut firewall::NftState) -> Result<()> {
    if let Some(t) = tg.topology {
        let forwarding = |ns: &str| {
            o.namespaces.get(ns).is_some_and(|n| {
                n.node
                    .sysctls
                    .get(crate::compile::IP_FORWARD)
                    .cloned()
                    .flatten()
                    .as_deref()
                    == Some("1")
            })
        };
        let names: Vec<String> = firewall::ns_to_observe(t, &forwarding)
            .into_iter()
            .filter(|n| o.namespaces.contains_key(n))
            .collect();
        s.ns_tables = firewall::observe_ns(&t.name, &names)?;
    }
    Ok(())
}

/// The whole plan: plumbing and the nftables batch.
pub fn plan(tg: &Target, o: &Observed, rec: &Record) -> Result<Plan> {
    let mut p = plan::plan(&tg.desired, o, rec, tg.who);
    // Impairments the kernel cannot make would stop the run half-way: refused up front.
    let impaired: Vec<String> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SetNetem {
                place,
                ifname,
                netem,
                ..
            } if !netem.is_empty() => Some(place.link(ifname)),
            _ => None,
        })
        .collect();
    if !impaired.is_empty() && !plumbing::qdisc::netem_supported()? {
        p.conflicts.push(format!(
            "{}: latency/jitter/loss/rate on {}: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), so the link cannot be impaired",
            tg.desired.source,
            impaired.join(", ")
        ));
    }
    if let Some(t) = tg.topology {
        // The host's addresses once the plan is carried out: those it has and those it gets.
        let mut host: Vec<std::net::IpAddr> = o.host.addrs.iter().map(|a| a.net.ip()).collect();
        host.extend(tg.desired.host.addrs.iter().map(|(_, n)| n.ip()));
        p.warnings
            .extend(firewall::publish::foreign_addresses(t, &host));
    }
    p.nft = plan_nft(tg, o)?;
    p.conflicts.extend(std::mem::take(&mut p.nft.conflicts));
    p.warnings.extend(std::mem::take(&mut p.nft.warnings));
    Ok(p)
}

/// The nftables part of [`plan`].
fn plan_nft(tg: &Target, o: &Observed) -> Result<firewall::NftPlan> {
    let nft = match tg.topology {
        Some(t) => firewall::diff(t, &o.nft, firewall::prepare(t))?,
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

/// Carries a plan out: the record first (what the run creates, the sysctls it changes); the
/// plumbing a stage at a time, with the host's nftables batch (and the conntrack entries it
/// makes stale) after the removals when applying, after everything when flushing; the routing
/// namespaces' batches. `done` hears of each change as it is made. The record is brought up
/// to date at the end.
pub fn carry_out(
    tg: &Target,
    p: &Plan,
    o: &Observed,
    lock: &Lock,
    nft: &mut NftSocket,
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
    if during != Record::load(lock.dir()) {
        during.save(lock.dir())?;
    }
    let mark = tg.desired.mark.clone();
    // Applying, the firewall goes between the removals and the building: its rules name
    // interfaces, not indexes, so they hold before the links exist, and a batch the kernel
    // refuses then stops the run before any new namespace is up without it; what leaves is
    // gone before the rules that judged it are relaxed. Flushing, it goes last, after the
    // namespaces it protects.
    let apply = tg.topology.is_some();
    let mut nft_sent = false;
    let forget = |nft: &mut NftSocket| {
        if p.nft.forget.is_empty() {
            return;
        }
        // The host's addresses once the plan is carried out.
        let mut locals: Vec<std::net::IpAddr> = o.host.addrs.iter().map(|a| a.net.ip()).collect();
        locals.extend(tg.desired.host.addrs.iter().map(|(_, n)| n.ip()));
        match firewall::conntrack::forget(nft, &p.nft.forget, &locals) {
            Ok(n) => crate::detail!(
                "conntrack: deleted {n} entries of published UDP ports that moved, went away or came"
            ),
            // The maps are right; only flows already running keep their old way until their
            // entries time out. Not a reason to fail the run.
            Err(e) => crate::warning!(
                "cannot delete the conntrack entries of published UDP ports that moved, went away or came ({e:#}): a client that keeps sending from one port keeps its old way (to the old namespace, or to the host) until its entry times out"
            ),
        }
    };
    plan::execute(
        &p.steps,
        &mark,
        &o.ns_indexes(),
        &mut |s: &Step| done(s.to_string()),
        &mut || {
            if apply && !p.nft.ops.is_empty() {
                firewall::execute(nft, &p.nft.ops)?;
                nft_sent = true;
                // Right after the batch, before anything can stop the run: a later run
                // would find the maps already right and never know which flows to forget.
                forget(nft);
            }
            crate::signals::check()
        },
    )?;
    crate::signals::check()?;
    if !nft_sent && !p.nft.ops.is_empty() {
        firewall::execute(nft, &p.nft.ops)?;
        forget(nft);
    }
    // Inside routing namespaces: a batch each.
    for (ns, ops) in &p.nft.ns_ops {
        let ops = ops.clone();
        crate::plumbing::netns::run_in(ns, move || {
            let mut sock = NftSocket::open()?;
            firewall::execute(&mut sock, &ops)
        })
        .map_err(|e| anyhow::anyhow!("namespace {ns}: {e:#}"))?;
    }
    if !p.nft.ops.is_empty() || !p.nft.ns_ops.is_empty() {
        for l in &p.nft.lines {
            done(l.to_string());
        }
    }
    Ok(())
}

/// The outcome of a converging run.
pub struct Outcome {
    /// Changes made.
    pub changes: usize,
    /// The plan that was carried out.
    pub plan: Plan,
}

/// Observes, plans, carries the plan out and observes again: anything still pending is an
/// error. Conflicts stop the run before anything changes.
pub fn converge(
    tg: &Target,
    lock: &Lock,
    done: &mut dyn FnMut(String),
    before: &mut dyn FnMut(&Plan, &Observed),
) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let rec = Record::load(lock.dir());
    let mut nft = NftSocket::open()?;
    let o = observe(tg, &rec, &mut nft)?;
    let p = plan(tg, &o, &rec)?;
    crate::detail!("timing: planned after {:?}", t0.elapsed());
    // The caller sees the plan first, conflicts and all (`apply --json` prints it).
    before(&p, &o);
    if !p.conflicts.is_empty() {
        bail!("{}\nnothing was changed", p.conflicts.join("\nerror: "));
    }
    if p.is_empty() {
        if p.record_after != rec {
            p.record_after.save(lock.dir())?;
        }
        unreachable_is_error(&p)?;
        return Ok(Outcome {
            changes: 0,
            plan: p,
        });
    }
    carry_out(tg, &p, &o, lock, &mut nft, done)?;
    crate::detail!("timing: carried out after {:?}", t0.elapsed());
    let rec2 = Record::load(lock.dir());
    let mut left = if nft_as_planned(&p, &o, &mut nft) {
        if p.steps.is_empty() && rec2 == rec {
            // Nothing of the plumbing was changed, and nftables holds what the plan made it:
            // reading the links again would look for others' changes, not check this run's.
            Plan::default()
        } else {
            // The plumbing is read and planned again; nftables holds what the plan made it.
            plan::plan(&tg.desired, &observe_plumbing(tg, &rec2)?, &rec2, tg.who)
        }
    } else {
        plan(tg, &observe(tg, &rec2, &mut nft)?, &rec2)?
    };
    crate::detail!("timing: observed again after {:?}", t0.elapsed());
    // What is left pending may only be the record's own bookkeeping.
    left.record_after = p.record_after.clone();
    if !left.is_empty() || !left.conflicts.is_empty() {
        bail!(
            "the run finished but the host still differs; pending:\n{left}{}",
            left.conflicts.join("\n")
        );
    }
    p.record_after.save(lock.dir())?;
    unreachable_is_error(&p)?;
    Ok(Outcome {
        changes: p.len(),
        plan: p,
    })
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
fn nft_as_planned(p: &Plan, o: &Observed, nft: &mut NftSocket) -> bool {
    let Some(seen) = o.nft.generation else {
        return false;
    };
    let want = if p.nft.ops.is_empty() {
        seen
    } else {
        nft::dump::next_generation(seen)
    };
    let now = nft.generation().ok();
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
