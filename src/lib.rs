//! nsfw: an nftables-first NAT and firewall manager for Linux network namespaces.
//!
//! Data flows one way: `topology` (parse + validate) → `plumbing::observe` → `plan::diff` →
//! `plan::execute`. `commands` ties them together for the CLI.

pub mod commands;
pub mod firewall;
pub mod nft;
pub mod plan;
pub mod plumbing;
pub mod probe;
pub mod sandbox;
pub mod topology;
