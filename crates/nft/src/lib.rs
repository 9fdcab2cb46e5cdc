//! An open nftables IR and everything between it and the kernel.
//!
//! ```text
//!   ir ──render──▶ nft syntax (nsfw show, diffs)
//!   ir ──lower──▶ expr::Raw ──expr──▶ nftnl_expr ──batch──▶ one batch ──socket──▶ kernel
//!   ir ◀──raise── expr::Raw ◀──expr── nftnl_expr ◀──dump─── kernel
//!   diff: desired Table × kernel Table ──▶ ops (element changes only, or the whole table)
//! ```
//!
//! `fields` and `types` describe what the kernel loads and holds (one table each), `deps` the
//! protocol dependencies nft writes, `expr` each kernel expression's attributes, `elems` the
//! kernel's form of set elements, `canon` the one form of them that compares as bytes, `udata`
//! the TLV userdata of comments and set metadata.

#![deny(unsafe_code)]

pub mod batch;
mod canon;
mod deps;
pub mod diff;
pub mod disjoint;
pub mod dump;
mod elemdiff;
mod elems;
mod expr;
#[allow(unsafe_code)]
mod ffi;
mod fields;
mod ir;
pub mod json;
mod lower;
mod raise;
pub mod render;
pub mod socket;
mod symbols;
mod types;
mod udata;

#[cfg(test)]
mod tests;

pub use ir::*;
pub use symbols::proto_name;
