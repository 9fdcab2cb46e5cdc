//! STATUS (1.1.0): whether an ADD could be served now. nftables must answer, the network's
//! table and bridge must be nsfw's (or absent: the next ADD makes them; or a bridge a killed ADD
//! left unmarked, which the record names: the next ADD removes it), and the IPAM plugin
//! must be there (and say it is ready, when it speaks 1.1.0). Not ready is error 50.

use super::config::NetConf;
use super::env::Env;
use super::error::{CniError, CniResult, code};
use super::{ipam, leftovers, links, ruleset};
use crate::owner;
use crate::plumbing::Conn;
use crate::state::Access;
use ::nft::socket::NftSocket;

fn not_available(why: String) -> CniError {
    CniError::new(code::NOT_AVAILABLE, why)
}

pub(super) fn status(env: &Env, c: &NetConf) -> CniResult<()> {
    let mut sock = NftSocket::open().map_err(|e| not_available(format!("{e:#}")))?;
    ruleset::read(&mut sock, &c.name).map_err(|e| not_available(e.msg))?;
    let mut conn = Conn::open("host").map_err(|e| not_available(format!("{e:#}")))?;
    if let Some(b) = links::get_link(&mut conn, &c.bridge)?
        && (b.kind.as_deref() != Some("bridge")
            || b.alias.as_deref() != Some(owner::network_mark(&c.name).as_str()))
        // A bridge a killed ADD made and could not mark: the next ADD removes it first.
        && !leftovers::is_leftover(&super::lock(Access::Shared)?, &c.name, &b)
    {
        return Err(not_available(format!(
            "interface {} is in the way: it is not network {}'s bridge",
            c.bridge, c.name
        )));
    }
    if c.ipam.is_some() {
        if ipam::speaks(c, env, "1.1.0") {
            ipam::exec(c, env, "STATUS", None, &c.raw)?;
        } else if !ipam::speaks(c, env, &c.version) && !ipam::speaks(c, env, "1.0.0") {
            return Err(not_available(format!(
                "the IPAM plugin {:?} cannot be run from CNI_PATH ({})",
                c.ipam.as_deref().unwrap_or_default(),
                env.path.join(":")
            )));
        }
    }
    Ok(())
}
