//! nsfw: an nftables-first NAT and firewall manager for Linux network namespaces.
//!
//! Data flows one way: `topology` (parse + validate) → `compile` (desired resources) →
//! `plumbing::observe` + `firewall::observe` → `plan` (diff, ordered) → `plan::execute` and
//! the one nftables batch → observe again. `engine` ties them together under the lock and
//! the write-ahead record of `state`; `commands` are the CLI's thin layer over it.
//!
//! No `unsafe` but where no safe API exists, each item marked `#[allow(unsafe_code)]` with its
//! SAFETY note: the sandbox's pre-exec hook (`sandbox::run`) and the signal handlers
//! (`signals::install`), and the two socket-option calls on a caller's buffer that read and
//! replace iptables-legacy's tables (`plumbing::xtables::sockopt`). The FFI to libnftnl lives in the nft crate.

#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod adopt;
mod oracle;
pub mod output;
mod owner;
mod why;

pub mod cli;
pub mod cni;
pub mod commands;
mod compile;
mod doctor;
mod drops;
mod engine;
mod firewall;
mod firewalld;
mod graph;
mod import;
mod kinds;
mod metrics;
mod netem;
mod netlink;
mod paths;
mod plan;
pub mod plumbing;
mod probe;
mod rate;
mod resources;
mod sandbox;
pub mod signals;
mod state;
mod status;
mod topology;
mod watch;

#[cfg(test)]
mod testdata;
