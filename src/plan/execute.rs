//! Carrying out a plan's plumbing changes, in order, over the [`Kernel`] connections.
//!
//! Every change is safe to meet again: if a step fails, the next apply observes what is there
//! and plans from it. Creation and marking are the one pair that must not be split (an unmarked
//! object would look foreign to the next run), so a failed mark undoes its creation.

use anyhow::{Context, Result, anyhow};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use super::{Change, LinkAttr, Place};
use crate::plumbing::{Kernel, Nl, netns, resolv_path};

fn nl<'a>(k: &'a mut Kernel, place: &Place) -> Result<&'a Nl> {
    match place {
        Place::Host => Ok(&k.host),
        Place::Ns(n) => k
            .ns(n)?
            .map(|(_, nl)| nl)
            .ok_or_else(|| anyhow!("namespace {n} does not exist")),
    }
}

/// `lo` up, with the owner's alias on it: the namespace's mark.
async fn mark_ns(nl: &Nl, mark: &str) -> Result<()> {
    nl.set("cannot bring lo up", crate::plumbing::nl::lo_mark(mark))
        .await
}

/// Executes `changes` in order, reporting each one through `done` once it has been made.
///
/// Steps run one by one, except runs of like steps that are independent of each other:
/// namespace creations go to a few threads at once (the kernel builds namespaces in parallel),
/// veth creations and in-namespace address/route changes are sent with every namespace in
/// flight, and a run of namespace deletions ends by waiting for the veths that go with them.
pub async fn execute(
    k: &mut Kernel,
    mark: &str,
    changes: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<()> {
    let mut tally = Tally::default();
    let mut i = 0;
    while i < changes.len() {
        let rest = &changes[i..];
        let t = std::time::Instant::now();
        let (n, step) = match &rest[0] {
            Change::CreateNamespace { .. } => {
                (create_namespaces(k, mark, rest, done)?, "create namespace")
            }
            Change::CreateVeth { .. } => (create_veths(k, mark, rest, done).await?, "create veth"),
            c if ns_scoped(c).is_some() => (
                configure_namespaces(k, rest, done).await?,
                "configure namespaces",
            ),
            Change::DeleteNamespace { .. } => {
                (delete_namespaces(k, rest, done).await?, "delete namespace")
            }
            c => {
                run(k, mark, c)
                    .await
                    .with_context(|| format!("while carrying out: {c}"))?;
                done(c);
                (1, c.step())
            }
        };
        tally.add(step, n, t);
        i += n;
    }
    tally.report();
    Ok(())
}

/// Time per kind of step, printed with NSFW_TIMING=1 (a profiling aid for the benchmarks).
#[derive(Default)]
struct Tally(std::collections::BTreeMap<&'static str, (usize, std::time::Duration)>);

impl Tally {
    fn add(&mut self, step: &'static str, n: usize, since: std::time::Instant) {
        let e = self.0.entry(step).or_default();
        e.0 += n;
        e.1 += since.elapsed();
    }

    fn report(&self) {
        if std::env::var_os("NSFW_TIMING").is_some() {
            for (k, (n, d)) in &self.0 {
                eprintln!("timing: {n} × {k}: {d:?}");
            }
        }
    }
}

/// The leading run of `rest` whose steps `pick` accepts.
fn run_of(rest: &[Change], pick: impl Fn(&Change) -> bool) -> &[Change] {
    let n = rest.iter().take_while(|c| pick(c)).count();
    &rest[..n]
}

/// Creates the leading run of namespaces, marked by the threads that make them.
fn create_namespaces(
    k: &mut Kernel,
    mark: &str,
    rest: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<usize> {
    let run = run_of(rest, |c| matches!(c, Change::CreateNamespace { .. }));
    let names: Vec<String> = run
        .iter()
        .filter_map(|c| match c {
            Change::CreateNamespace { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    for (r, c) in k.create_ns_many(&names, Some(mark)).into_iter().zip(run) {
        r.with_context(|| format!("while carrying out: {c}"))?;
        done(c);
    }
    Ok(run.len())
}

/// Creates the leading run of veth pairs, all pairs in flight at once.
async fn create_veths(
    k: &mut Kernel,
    mark: &str,
    rest: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<usize> {
    let run = run_of(rest, |c| matches!(c, Change::CreateVeth { .. }));
    let mut masters = Vec::with_capacity(run.len());
    for c in run {
        if let Change::CreateVeth { ns, bridge, .. } = c {
            masters.push(k.host_index(bridge).await?);
            if k.ns(ns)?.is_none() {
                return Err(anyhow!("namespace {ns} does not exist"))
                    .with_context(|| format!("while carrying out: {c}"));
            }
        }
    }
    let kr: &Kernel = k;
    let results = futures::future::join_all(
        run.iter()
            .zip(&masters)
            .map(|(c, m)| create_veth(kr, *m, mark, c)),
    )
    .await;
    for (r, c) in results.into_iter().zip(run) {
        r.with_context(|| format!("while carrying out: {c}"))?;
        done(c);
    }
    Ok(run.len())
}

/// Carries out the leading run of in-namespace changes (addresses, routes): each namespace's
/// changes in order, the namespaces all in flight at once.
async fn configure_namespaces(
    k: &mut Kernel,
    rest: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<usize> {
    let run = run_of(rest, |c| ns_scoped(c).is_some());
    let mut by_ns: Vec<(&str, Vec<&Change>)> = Vec::new();
    for c in run {
        let ns = ns_scoped(c).unwrap_or_default();
        match by_ns.iter_mut().find(|(n, _)| *n == ns) {
            Some((_, v)) => v.push(c),
            None => by_ns.push((ns, vec![c])),
        }
        if k.ns(ns)?.is_none() {
            return Err(anyhow!("namespace {ns} does not exist"))
                .with_context(|| format!("while carrying out: {c}"));
        }
    }
    let kr: &Kernel = k;
    let results =
        futures::future::join_all(by_ns.iter().map(|(ns, cs)| run_in_ns(kr, ns, cs))).await;
    for r in results {
        r?;
    }
    for c in run {
        done(c);
    }
    Ok(run.len())
}

/// Deletes the leading run of namespaces, then waits for the veths that go with them.
async fn delete_namespaces(
    k: &mut Kernel,
    rest: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<usize> {
    let run = run_of(rest, |c| matches!(c, Change::DeleteNamespace { .. }));
    let mut takes: Vec<&str> = Vec::new();
    for c in run {
        if let Change::DeleteNamespace { name, takes: t } = c {
            for link in t {
                k.forget_host_link(link);
            }
            k.delete_ns(name)
                .with_context(|| format!("while carrying out: {c}"))?;
            takes.extend(t.iter().map(String::as_str));
            done(c);
        }
    }
    await_gone(k, &takes).await?;
    Ok(run.len())
}

/// Waits until the host links `names` are gone (the kernel tears a deleted namespace's veth
/// pairs down asynchronously, in one batch); deletes any still there after 5 s.
async fn await_gone(k: &mut Kernel, names: &[&str]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left: Vec<crate::plumbing::Link> = k
            .host
            .links()
            .await?
            .into_iter()
            .filter(|l| names.contains(&l.name.as_str()))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            for l in left {
                k.host.del_link(&l.name, l.index).await?;
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The namespace a change is confined to, for the changes that can run beside other
/// namespaces' (addresses and routes inside namespaces).
fn ns_scoped(c: &Change) -> Option<&str> {
    match c {
        Change::AddAddr {
            place: Place::Ns(ns),
            ..
        }
        | Change::DelAddr {
            place: Place::Ns(ns),
            ..
        }
        | Change::SetDefaultRoute { ns, .. } => Some(ns),
        _ => None,
    }
}

/// Carries out one namespace's address and route changes, in order.
async fn run_in_ns(k: &Kernel, ns: &str, changes: &[&Change]) -> Result<()> {
    let (_, nl) = k
        .ns_open(ns)
        .ok_or_else(|| anyhow!("namespace {ns} is not open"))?;
    let mut index: Option<(String, u32)> = None;
    for c in changes {
        let ifname = match c {
            Change::AddAddr { ifname, .. }
            | Change::DelAddr { ifname, .. }
            | Change::SetDefaultRoute { ifname, .. } => ifname,
            _ => continue,
        };
        let i = match &index {
            Some((n, i)) if n == ifname => *i,
            _ => {
                let i = nl.index_of(ifname).await?;
                index = Some((ifname.clone(), i));
                i
            }
        };
        let r = match c {
            Change::AddAddr { net, .. } => nl.add_addr(ifname, i, *net).await,
            Change::DelAddr { net, .. } => nl.del_addr(ifname, i, *net).await,
            Change::SetDefaultRoute { gateway, .. } => nl.add_default_route(*gateway, i).await,
            _ => Ok(()),
        };
        r.with_context(|| format!("while carrying out: {c}"))?;
    }
    Ok(())
}

/// Creates one veth pair (a `CreateVeth` change) whose namespace is open in `k` and whose
/// bridge has index `master`: create, mark, then up, peer first.
async fn create_veth(k: &Kernel, master: u32, mark: &str, c: &Change) -> Result<()> {
    let Change::CreateVeth {
        ns,
        host,
        peer,
        mtu,
        mac,
        ..
    } = c
    else {
        return Ok(());
    };
    let (fd, ns_nl) = k
        .ns_open(ns)
        .ok_or_else(|| anyhow!("namespace {ns} is not open"))?;
    k.host
        .add_veth(host, master, *mtu, peer, fd, *mac, mark)
        .await?;
    // The peer up while the host end is still down (no carrier yet, so no link-local address
    // is made before addrgenmode none applies), then the host end.
    let up = LinkUnspec::new_with_name(peer)
        .append_extra_attribute(crate::plumbing::nl::no_ipv6_link_local())
        .up()
        .build();
    ns_nl.set(&format!("cannot bring {peer} up"), up).await?;
    k.host
        .set(
            &format!("cannot bring {host} up"),
            LinkUnspec::new_with_name(host).up().build(),
        )
        .await
}

/// Carries out one step that runs alone.
async fn run(k: &mut Kernel, mark: &str, c: &Change) -> Result<()> {
    match c {
        Change::DeleteLink { name, index, .. } => {
            k.forget_host_link(name);
            k.host.del_link(name, *index).await
        }
        Change::RemoveResolv { ns } => {
            let p = resolv_path(ns);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(anyhow!("cannot remove {}: {e}", p.display())),
            }
            // The directory was nsfw's too, unless someone keeps other files in it.
            if let Some(dir) = p.parent() {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(())
        }
        Change::MarkNamespace { name } => mark_ns(nl(k, &Place::Ns(name.clone()))?, mark).await,
        Change::CreateBridge { name, mtu, mac } => {
            k.forget_host_link(name);
            k.host.add_bridge(name, *mtu, *mac, mark).await
        }
        // Carried out by their runs in `execute`.
        Change::CreateNamespace { .. }
        | Change::CreateVeth { .. }
        | Change::DeleteNamespace { .. } => {
            Err(anyhow!("internal: {c} reached the single-step path"))
        }
        Change::SetLink { place, name, attrs } => {
            let mut b: LinkMessageBuilder<LinkUnspec> = LinkUnspec::new_with_name(name);
            for a in attrs {
                b = match a {
                    LinkAttr::Mtu { new, .. } | LinkAttr::PinMtu { new } => b.mtu(*new),
                    LinkAttr::Mac { new, .. } => b.address(new.0.to_vec()),
                    LinkAttr::Up => b.up(),
                    LinkAttr::Master { new, .. } => b.controller(k.host_index(new).await?),
                };
            }
            let nl = nl(k, place)?;
            nl.set(&format!("cannot change interface {name}"), b.build())
                .await
        }
        Change::AddAddr { place, ifname, net } => {
            let nl = nl(k, place)?;
            let i = nl.index_of(ifname).await?;
            nl.add_addr(ifname, i, *net).await
        }
        Change::DelAddr { place, ifname, net } => {
            let nl = nl(k, place)?;
            let i = nl.index_of(ifname).await?;
            nl.del_addr(ifname, i, *net).await
        }
        Change::SetDefaultRoute {
            ns,
            ifname,
            gateway,
            ..
        } => {
            let nl = nl(k, &Place::Ns(ns.clone()))?;
            let i = nl.index_of(ifname).await?;
            nl.add_default_route(*gateway, i).await
        }
        Change::SetBrNetfilter { new, .. } => netns::write_sysctl(
            None,
            crate::firewall::BRNF_SYSCTL,
            if *new { "1" } else { "0" },
        ),
        Change::SetIpForward { new, .. } => {
            netns::write_sysctl(None, "net.ipv4.ip_forward", if *new { "1" } else { "0" })
        }
        Change::WriteResolv { ns, content } => {
            let p = resolv_path(ns);
            let dir = p
                .parent()
                .ok_or_else(|| anyhow!("bad path {}", p.display()))?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Write beside it and rename: `ip netns exec` never sees half a file.
            let tmp = dir.join(".resolv.conf.nsfw");
            std::fs::write(&tmp, content)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))
        }
    }
}
