//! `nsfw exec NS -- CMD...`: CMD in namespace NS the way `ip netns exec` runs it — its own
//! mount namespace, /sys showing the namespace's interfaces, and every file of /etc/netns/NS
//! (resolv.conf, say) bind-mounted over the one of the same name in /etc — without spawning
//! `ip`. CMD replaces nsfw, so its exit status is CMD's.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::plumbing::netns;
use crate::state::safefs;

use super::{Fail, report, require_root};

/// The status a shell gives a command it cannot run.
const CANNOT_RUN: u8 = 127;

fn enter(ns: &str) -> Result<()> {
    let fd =
        netns::open_ns(ns)?.ok_or_else(|| anyhow!("no namespace {ns} (in {})", netns::RUN_DIR))?;
    // A mount namespace of our own, private from here on, so the mounts below stay ours.
    unshare(CloneFlags::CLONE_NEWNS).context("cannot make a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("cannot make / private")?;
    netns::enter(ns, &fd)?;
    drop(fd);
    // /sys shows the interfaces of the namespace that mounts it.
    let _ = umount2("/sys", MntFlags::MNT_DETACH);
    mount(
        Some(ns),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .context("cannot mount /sys for the namespace")?;
    bind_etc(ns)
}

/// Every regular file of /etc/netns/NS over /etc/NAME, as `ip netns exec` does; nothing in a
/// directory others could have made a symlink is followed.
fn bind_etc(ns: &str) -> Result<()> {
    let Some(etc) = safefs::open_dir(Path::new(netns::ETC_DIR))? else {
        return Ok(());
    };
    let dir = match safefs::open_dir_at(&etc, ns) {
        Ok(d) => d,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => bail!("{}/{ns}: {e}", netns::ETC_DIR),
    };
    let listing = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
    for ent in std::fs::read_dir(&listing)?.flatten() {
        let name = ent.file_name();
        if !ent.file_type().is_ok_and(|t| t.is_file()) {
            // Not followed (a symlink could point anywhere). For resolv.conf, running the
            // command with the host's resolver instead would leak its DNS queries out of a
            // jail: refused, unless there is no file at all.
            let path = format!("{}/{ns}/{}", netns::ETC_DIR, name.to_string_lossy());
            if name == "resolv.conf" {
                bail!(
                    "{path} is not a regular file (a symbolic link, directory or other); nsfw does not follow it, and running with the host's resolv.conf instead would send the namespace's DNS queries to the host's resolver. Replace it with a regular file, or remove it"
                );
            }
            crate::warning!("{path} is not a regular file: not bound over /etc");
            continue;
        }
        let src = Path::new(&listing).join(&name);
        let dst = Path::new("/etc").join(&name);
        if let Err(e) = mount(
            Some(&src),
            &dst,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            if name == "resolv.conf" {
                bail!(
                    "cannot bind {}/{ns}/resolv.conf over {}: {e}; not running with the host's resolver instead",
                    netns::ETC_DIR,
                    dst.display()
                );
            }
            crate::warning!(
                "cannot bind {}/{ns}/{} over {}: {e}",
                netns::ETC_DIR,
                name.to_string_lossy(),
                dst.display()
            );
        }
    }
    Ok(())
}

pub fn exec(ns: String, command: Vec<OsString>) -> Result<u8, Fail> {
    require_root("exec")?;
    let Some(prog) = command.first() else {
        crate::error!("nsfw exec {ns}: no command (nsfw exec NS -- CMD ARGS...)");
        return Err(Fail(super::ERR));
    };
    enter(&ns).map_err(|e| report(&e))?;
    let args: Vec<CString> = command
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let Ok(file) = CString::new(prog.as_bytes()) else {
        crate::error!("nsfw exec: the command contains a NUL byte");
        return Err(Fail(CANNOT_RUN));
    };
    let e = nix::unistd::execvp(&file, &args).err();
    crate::error!(
        "nsfw exec {ns}: cannot run {}: {}",
        prog.to_string_lossy(),
        e.map(|e| e.to_string()).unwrap_or_default()
    );
    Err(Fail(CANNOT_RUN))
}
