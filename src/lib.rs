//! nsfw: an nftables-first NAT and firewall manager for Linux network namespaces.
//!
//! Data flows one way: `topology` (parse + validate) → `compile` (desired resources) →
//! `plumbing::observe` + `firewall::observe` → `plan` (diff, ordered) → `plan::execute` and
//! the one nftables batch → observe again. `engine` ties them together under the lock and
//! the write-ahead record of `state`; `commands` are the CLI's thin layer over it.

pub mod output;

pub mod cli;
pub mod cni;
pub mod commands;
pub mod compile;
pub mod doctor;
pub mod engine;
pub mod firewall;
pub mod netem;
pub mod paths;
pub mod plan;
pub mod plumbing;
pub mod policy;
pub mod probe;
pub mod resources;
pub mod sandbox;
pub mod signals;
pub mod state;
pub mod status;
pub mod topology;
pub mod watch;

#[cfg(test)]
mod testdata;
