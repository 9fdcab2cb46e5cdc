//! `nsfw show`: the nftables ruleset nsfw would load, in `nft` syntax (`nft -f` loads it).

use std::path::PathBuf;

use crate::firewall;
use crate::output;

use super::{Fail, OK, load};

pub fn show(file: Option<PathBuf>) -> Result<u8, Fail> {
    let t = load(file)?;
    output::data(format_args!("{}", firewall::table(&t)));
    Ok(OK)
}
