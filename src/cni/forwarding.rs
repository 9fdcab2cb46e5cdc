//! The host-wide setting a CNI network needs: IPv4 forwarding. Its value from before nsfw is
//! kept in nsfw's record (as apply does), with the network as one of its users, and put back
//! when the last user is gone.

use anyhow::Result;

use crate::owner::network_user as user;
use crate::plumbing::sysctl;
use crate::state::{Lock, Record, Saved};

const FORWARD: &str = "net.ipv4.ip_forward";

/// Turns forwarding on for `network` (recording the value from before, when nsfw changes it).
pub(super) fn need_forwarding(lock: &Lock, network: &str) -> Result<()> {
    let now = sysctl::read(FORWARD)?.unwrap_or_default();
    let mut rec = Record::load(lock.dir());
    let before = rec.clone();
    match rec.sysctls.get_mut(FORWARD) {
        Some(s) => {
            s.users.insert(user(network));
        }
        None if now != "1" => {
            rec.sysctls.insert(
                FORWARD.into(),
                Saved {
                    original: now.clone(),
                    users: [user(network)].into(),
                },
            );
        }
        None => {}
    }
    if rec != before {
        rec.save(lock.dir())?;
    }
    if now != "1" {
        sysctl::write(FORWARD, "1")?;
    }
    Ok(())
}

/// `network` no longer needs forwarding: its value from before nsfw comes back when nobody
/// else (a topology, another network) needs nsfw's.
pub(super) fn release_forwarding(lock: &Lock, network: &str) -> Result<()> {
    let mut rec = Record::load(lock.dir());
    let Some(s) = rec.sysctls.get_mut(FORWARD) else {
        return Ok(());
    };
    if !s.users.remove(&user(network)) {
        return Ok(());
    }
    if s.users.is_empty() {
        let original = s.original.clone();
        rec.sysctls.remove(FORWARD);
        sysctl::write(FORWARD, &original)?;
    }
    rec.save(lock.dir())
}
