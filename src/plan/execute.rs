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
    let msg = LinkUnspec::new_with_name("lo").up().alias(mark).build();
    nl.set("cannot bring lo up", msg).await
}

/// Executes `changes` in order, reporting each one through `done` once it has been made.
pub async fn execute(
    k: &mut Kernel,
    mark: &str,
    changes: &[Change],
    done: &mut dyn FnMut(&Change),
) -> Result<()> {
    let mut tally: std::collections::BTreeMap<String, (u32, std::time::Duration)> =
        Default::default();
    let mut i = 0;
    while i < changes.len() {
        // A run of namespace creations is done at once: the kernel builds namespaces in
        // parallel, one per core.
        let batch: Vec<String> = changes[i..]
            .iter()
            .map_while(|c| match c {
                Change::CreateNamespace { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        if !batch.is_empty() {
            let t = std::time::Instant::now();
            let results = k.create_ns_many(&batch, Some(mark));
            for (r, c) in results.into_iter().zip(&changes[i..]) {
                r.with_context(|| format!("while carrying out: {c}"))?;
                done(c);
            }
            let e = tally.entry("create namespace".into()).or_default();
            e.0 += batch.len() as u32;
            e.1 += t.elapsed();
            i += batch.len();
            continue;
        }
        // A run of veth creations: each pair's requests in order, the pairs all in flight at
        // once (the replies come back in fewer wake-ups than one pair at a time).
        let veths = changes[i..]
            .iter()
            .take_while(|c| matches!(c, Change::CreateVeth { .. }))
            .count();
        if veths > 1 {
            let t = std::time::Instant::now();
            let run_of = &changes[i..i + veths];
            let mut masters = Vec::with_capacity(veths);
            for c in run_of {
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
                run_of
                    .iter()
                    .zip(&masters)
                    .map(|(c, m)| create_veth(kr, *m, mark, c)),
            )
            .await;
            for (r, c) in results.into_iter().zip(run_of) {
                r.with_context(|| format!("while carrying out: {c}"))?;
                done(c);
            }
            let e = tally.entry("create veth".into()).or_default();
            e.0 += veths as u32;
            e.1 += t.elapsed();
            i += veths;
            continue;
        }
        // A run of changes inside namespaces (addresses, routes): each namespace's changes in
        // order, the namespaces all in flight at once, each interface's index asked once.
        let in_ns = changes[i..]
            .iter()
            .take_while(|c| ns_scoped(c).is_some())
            .count();
        if in_ns > 1 {
            let t = std::time::Instant::now();
            let run_of = &changes[i..i + in_ns];
            let mut by_ns: Vec<(&str, Vec<&Change>)> = Vec::new();
            for c in run_of {
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
            for c in run_of {
                done(c);
            }
            let e = tally.entry("configure namespaces".into()).or_default();
            e.0 += in_ns as u32;
            e.1 += t.elapsed();
            i += in_ns;
            continue;
        }
        let c = &changes[i];
        i += 1;
        // After the last of a run of namespace deletions: wait for the veths that go with them.
        if let Change::DeleteNamespace { .. } = c {
            let run_end = !matches!(changes.get(i), Some(Change::DeleteNamespace { .. }));
            run(k, mark, c)
                .await
                .with_context(|| format!("while carrying out: {c}"))?;
            done(c);
            if run_end {
                let mut takes: Vec<&str> = Vec::new();
                for d in changes[..i].iter().rev() {
                    match d {
                        Change::DeleteNamespace { takes: t, .. } => {
                            takes.extend(t.iter().map(String::as_str))
                        }
                        _ => break,
                    }
                }
                await_gone(k, &takes).await?;
            }
            continue;
        }
        let t = std::time::Instant::now();
        run(k, mark, c)
            .await
            .with_context(|| format!("while carrying out: {c}"))?;
        let e = tally.entry(c.step().to_string()).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        done(c);
    }
    if std::env::var_os("NSFW_TIMING").is_some() {
        for (k, (n, d)) in tally {
            eprintln!("timing: {n} × {k}: {d:?}");
        }
    }
    Ok(())
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

async fn run(k: &mut Kernel, mark: &str, c: &Change) -> Result<()> {
    match c {
        Change::DeleteLink { name, index, .. } => {
            k.forget_host_link(name);
            k.host.del_link(name, *index).await
        }
        Change::DeleteNamespace { name, takes } => {
            for t in takes {
                k.forget_host_link(t);
            }
            k.delete_ns(name)
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
        Change::CreateNamespace { name } => k
            .create_ns_many(std::slice::from_ref(name), Some(mark))
            .pop()
            .unwrap_or_else(|| Err(anyhow!("namespace {name}: not created"))),
        Change::MarkNamespace { name } => mark_ns(nl(k, &Place::Ns(name.clone()))?, mark).await,
        Change::CreateBridge { name, mtu, mac } => {
            k.forget_host_link(name);
            k.host.add_bridge(name, *mtu, *mac, mark).await
        }
        Change::CreateVeth { ns, bridge, .. } => {
            let master = k.host_index(bridge).await?;
            if k.ns(ns)?.is_none() {
                return Err(anyhow!("namespace {ns} does not exist"));
            }
            create_veth(k, master, mark, c).await
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
