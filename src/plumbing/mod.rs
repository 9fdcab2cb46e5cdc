//! The kernel layer for everything that is not nftables: namespaces, links, addresses, routes,
//! sysctls and resolv.conf files. [`observe`] reads what is there; the executor in `plan`
//! changes it through the same [`Kernel`] connections.

pub mod netns;
pub mod nl;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

pub use nl::{Addr, Link, Nl, Route};

/// Open connections: the host's, and one per namespace, opened on first use and kept for the
/// rest of the run so that observing and applying never reopen them.
pub struct Kernel {
    pub host: Nl,
    ns: HashMap<String, (OwnedFd, Nl)>,
    /// Host link indexes looked up during this run (bridges, mostly, asked for once per port).
    host_index: HashMap<String, u32>,
}

impl Kernel {
    pub fn open() -> Result<Kernel> {
        Ok(Kernel {
            host: Nl::host()?,
            ns: HashMap::new(),
            host_index: HashMap::new(),
        })
    }

    /// The index of host link `name`, asked of the kernel once per run.
    pub async fn host_index(&mut self, name: &str) -> Result<u32> {
        if let Some(i) = self.host_index.get(name) {
            return Ok(*i);
        }
        let i = self.host.index_of(name).await?;
        self.host_index.insert(name.to_string(), i);
        Ok(i)
    }

    /// Forgets a cached index: the link was deleted or recreated.
    pub fn forget_host_link(&mut self, name: &str) {
        self.host_index.remove(name);
    }

    /// The namespace's handle and connection; `Ok(None)` when it does not exist.
    pub fn ns(&mut self, name: &str) -> Result<Option<(&OwnedFd, &Nl)>> {
        if !self.ns.contains_key(name) {
            let Some(fd) = netns::open(name)? else {
                return Ok(None);
            };
            let nl = Nl::in_ns(name, &fd)?;
            self.ns.insert(name.to_string(), (fd, nl));
        }
        Ok(self.ns.get(name).map(|(f, n)| (f, n)))
    }

    /// A namespace opened earlier in this run, without opening it.
    pub fn ns_open(&self, name: &str) -> Option<(&OwnedFd, &Nl)> {
        self.ns.get(name).map(|(f, n)| (f, n))
    }

    /// Creates the namespaces (in parallel) and keeps their connections. With `mark`, each
    /// namespace's `lo` is brought up and marked by the thread that made it. One result per
    /// name.
    pub fn create_ns_many(&mut self, names: &[String], mark: Option<&str>) -> Vec<Result<()>> {
        let each = |name: &str, sock: &rtnetlink::sys::Socket| match mark {
            Some(m) => nl::mark_lo_blocking(sock, &format!("namespace {name}"), m),
            None => Ok(()),
        };
        netns::create_many(names, &each)
            .into_iter()
            .zip(names)
            .map(|(made, name)| {
                let made = made?;
                let nl = Nl::from_socket(name, made.rtnl)?;
                self.ns.insert(name.clone(), (made.fd, nl));
                Ok(())
            })
            .collect()
    }

    /// Deletes the namespace, closing nsfw's own handles first so the kernel can free it.
    pub fn delete_ns(&mut self, name: &str) -> Result<()> {
        self.ns.remove(name);
        netns::delete(name)
    }
}

/// What one named namespace holds.
#[derive(Clone, Debug, Default)]
pub struct NsObs {
    pub name: String,
    /// The alias of its `lo`: `nsfw:<topology>` when nsfw made it.
    pub owner: Option<String>,
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
}

impl NsObs {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// What the kernel holds of everything nsfw manages.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub host_links: Vec<Link>,
    pub host_addrs: Vec<Addr>,
    /// Every named namespace, by name.
    pub namespaces: BTreeMap<String, NsObs>,
    /// Names in /run/netns that cannot be opened as namespaces, with why.
    pub broken: BTreeMap<String, String>,
    pub ip_forward: Option<bool>,
    /// `/etc/netns/<ns>/resolv.conf` contents, by namespace name.
    pub resolv: BTreeMap<String, String>,
    /// The nftables side, filled in by `firewall::observe`.
    pub nft: crate::firewall::NftState,
}

impl Observed {
    pub fn host_link(&self, name: &str) -> Option<&Link> {
        self.host_links.iter().find(|l| l.name == name)
    }

    pub fn host_link_by_index(&self, index: u32) -> Option<&Link> {
        self.host_links.iter().find(|l| l.index == index)
    }
}

pub fn resolv_path(ns: &str) -> PathBuf {
    PathBuf::from(netns::ETC_DIR).join(ns).join("resolv.conf")
}

/// Reads everything nsfw manages. Every namespace is opened, since ownership is a mark inside
/// it; addresses and routes are read only where `deep(name)` says they matter.
pub async fn observe(
    k: &mut Kernel,
    deep: &(dyn Fn(&str, Option<&str>) -> bool + Sync),
) -> Result<Observed> {
    // One dump at a time per socket: the kernel answers EBUSY to a second concurrent dump.
    let host_links = k.host.links().await?;
    let host_addrs = k.host.addrs().await?;
    let mut o = Observed {
        host_links,
        host_addrs,
        ..Default::default()
    };
    let names = netns::list()?;
    let fresh: Vec<String> = names
        .iter()
        .filter(|n| !k.ns.contains_key(*n))
        .cloned()
        .collect();
    // Namespaces not open yet are opened and read by a few threads at once; their sockets
    // then serve the rest of the run.
    let snap = |name: &str, sock: &rtnetlink::sys::Socket| {
        nl::snapshot_blocking(sock, &format!("namespace {name}"), &|owner| {
            deep(name, owner)
        })
    };
    for (name, r) in fresh.iter().zip(netns::open_many(&fresh, &snap)) {
        match r {
            Ok(Some((made, s))) => {
                let nl = Nl::from_socket(name, made.rtnl)?;
                k.ns.insert(name.clone(), (made.fd, nl));
                let owner = s
                    .links
                    .iter()
                    .find(|l| l.name == "lo")
                    .and_then(|l| l.alias.clone());
                o.namespaces.insert(
                    name.clone(),
                    NsObs {
                        name: name.clone(),
                        owner,
                        links: s.links,
                        addrs: s.addrs,
                        routes: s.routes,
                    },
                );
            }
            Ok(None) => {} // removed meanwhile
            Err(e) => {
                o.broken.insert(name.clone(), format!("{e:#}"));
            }
        }
    }
    // Namespaces opened earlier in this run (observing again after apply): one dump per
    // namespace, all in flight at once.
    let mut jobs = Vec::new();
    for name in names.iter().filter(|n| !fresh.contains(n)) {
        if let Some((_, nl)) = k.ns.get(name) {
            jobs.push(async move {
                let links = nl.links().await?;
                let owner = links
                    .iter()
                    .find(|l| l.name == "lo")
                    .and_then(|l| l.alias.clone());
                let (addrs, routes) = if deep(name, owner.as_deref()) {
                    (nl.addrs().await?, nl.routes().await?)
                } else {
                    (Vec::new(), Vec::new())
                };
                Ok::<_, anyhow::Error>(NsObs {
                    name: name.clone(),
                    owner,
                    links,
                    addrs,
                    routes,
                })
            });
        }
    }
    for r in futures::future::join_all(jobs).await {
        let n = r?;
        o.namespaces.insert(n.name.clone(), n);
    }
    o.ip_forward = netns::read_sysctl(None, "net.ipv4.ip_forward")?.map(|v| v == "1");
    o.resolv = read_resolv_files()?;
    Ok(o)
}

fn read_resolv_files() -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let rd = match std::fs::read_dir(netns::ETC_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow!("cannot list {}: {e}", netns::ETC_DIR)),
    };
    for ent in rd {
        let ent = ent.with_context(|| format!("cannot list {}", netns::ETC_DIR))?;
        let Some(name) = ent.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let p = resolv_path(&name);
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                out.insert(name, s);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(anyhow!("cannot read {}: {e}", p.display())),
        }
    }
    Ok(out)
}
