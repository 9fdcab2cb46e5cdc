//! `nsfw systemd FILE`: the units that keep a topology for real — applied at boot after the
//! network and the other firewalls, re-applied when a firewall service reloads or restarts
//! (which throws nsfw's table away), repaired by the watcher, flushed at stop.

use std::path::{Path, PathBuf};

use crate::output;

use super::{ERR, Fail, OK, load, report};

/// How the units of one topology are named: templates (`nsfw@.service`, whose instance `%i`
/// names the topology, `file` then naming /etc/nsfw/%i.toml), or the units of one topology
/// (`nsfw-lab.service`), so that two topologies' units never overwrite each other.
#[derive(Clone, Copy)]
pub(super) enum Naming<'a> {
    Template,
    Topology(&'a str),
}

impl Naming<'_> {
    /// The file name of the unit `role` (`""`, `"reapply"`, `"watch"`).
    fn unit(self, role: &str) -> String {
        match (self, role) {
            (Naming::Template, "") => "nsfw@.service".into(),
            (Naming::Template, r) => format!("nsfw-{r}@.service"),
            (Naming::Topology(n), "") => format!("nsfw-{n}.service"),
            (Naming::Topology(n), r) => format!("nsfw-{n}-{r}.service"),
        }
    }

    /// How a unit names the main one: a template's companions name the same instance.
    fn main(self) -> String {
        match self {
            Naming::Template => "nsfw@%i.service".into(),
            Naming::Topology(n) => format!("nsfw-{n}.service"),
        }
    }
}

/// The units, by file name.
pub(super) fn units(bin: &Path, file: &Path, name: &str, naming: Naming) -> Vec<(String, String)> {
    let (bin, file) = (bin.display(), file.display());
    let main = naming.main();
    let firewalls = "nftables.service firewalld.service docker.service";
    vec![
        (
            naming.unit(""),
            format!(
                "[Unit]
Description=nsfw topology {name}: namespaces, NAT and firewall from {file}
Wants=network-online.target
After=network-online.target {firewalls}
# A reload of a firewall service reloads nsfw: its table is loaded again. Stop flushes the
# topology by name, which works even when its file is gone or broken by then.
ReloadPropagatedFrom=nftables.service firewalld.service

[Service]
Type=oneshot
RemainAfterExit=yes
# 4: partially applied. Everything but an object in the way (a resolv.conf edited by hand,
# named in the journal) is up: the unit stays active, so the watch unit and the flush at stop
# still run.
SuccessExitStatus=4
ExecStart={bin} apply {file}
ExecReload={bin} apply {file}
ExecStop={bin} flush --name {name}

[Install]
WantedBy=multi-user.target
"
            ),
        ),
        (
            naming.unit("reapply"),
            format!(
                "[Unit]
Description=nsfw topology {name}: applied again when a firewall service (re)starts
# Started with the firewall services (WantedBy) and after them: their start flushes the
# ruleset, nsfw's table with it. Nothing to stop: nsfw.service owns the topology.
After={firewalls} {main}
Requisite={main}

[Service]
Type=oneshot
SuccessExitStatus=4
ExecStart={bin} apply {file}

[Install]
WantedBy=nftables.service firewalld.service docker.service
"
            ),
        ),
        (
            naming.unit("watch"),
            format!(
                "[Unit]
Description=nsfw topology {name}: repairs nsfw's objects when something else changes them
After={main}
Requisite={main}
PartOf={main}

[Service]
ExecStart={bin} watch {file}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"
            ),
        ),
    ]
}

pub fn systemd(
    file: Option<PathBuf>,
    dir: Option<PathBuf>,
    template: bool,
    bin: Option<PathBuf>,
) -> Result<u8, Fail> {
    let bin = match bin {
        Some(b) if b.is_absolute() => b,
        Some(b) => {
            crate::error!(
                "--bin {}: give the absolute path systemd will run",
                b.display()
            );
            return Err(Fail(ERR));
        }
        None => std::fs::read_link("/proc/self/exe")
            .map_err(|e| report(&anyhow::anyhow!("cannot find nsfw's own path: {e}")))?,
    };
    let units = if template {
        units(&bin, Path::new("/etc/nsfw/%i.toml"), "%i", Naming::Template)
    } else {
        let path = super::resolve_path(file)?;
        let t = load(Some(path.clone()))?;
        let abs = if path == Path::new("-") {
            // Standard input has no path the units could apply at boot: the packaged
            // convention's place for a topology of this name.
            let p = PathBuf::from(format!("/etc/nsfw/{}.toml", t.name));
            crate::warning!(
                "the topology came on standard input: the units apply {}, put it there",
                p.display()
            );
            p
        } else {
            std::fs::canonicalize(&path)
                .map_err(|e| report(&anyhow::anyhow!("{}: {e}", path.display())))?
        };
        units(&bin, &abs, &t.name, Naming::Topology(&t.name))
    };
    match dir {
        None => {
            for (i, (name, text)) in units.iter().enumerate() {
                if i > 0 {
                    output::data(format_args!("\n"));
                }
                output::data(format_args!("# {name}\n{text}"));
            }
        }
        Some(d) => {
            for (name, text) in &units {
                let p = d.join(name);
                if let Err(e) = std::fs::write(&p, text) {
                    crate::error!("cannot write {}: {e}", p.display());
                    return Err(Fail(ERR));
                }
                crate::say!("wrote {}", p.display());
            }
        }
    }
    Ok(OK)
}
