//! nsfw's nftables library: an open IR of nftables tables (any family; chains, sets, maps,
//! rules) and everything between it and the kernel. It encodes rules exactly as nft 1.0.6
//! does, reads tables back into the same IR, prints them as `nft list` does, and diffs a
//! desired table against the kernel's into one atomic batch (only the elements that differ,
//! or the whole table). It knows nothing of topologies: the app builds the tables.
//!
//! ```text
//!   ir ──render──▶ nft syntax (nsfw show, diff lines)
//!   ir ──lower──▶ expr::Raw ──ffi──▶ nftnl_expr ──batch──▶ one batch ──socket──▶ kernel
//!   ir ◀──raise── expr::Raw ◀──ffi── nftnl_expr ◀──dump─── kernel
//!   diff: desired Table × Dumped (the kernel's) ──▶ batch::Op + lines
//! ```
//!
//! Layers, low to high; a module imports only the lines above it and the modules before it
//! on its own line:
//!
//! 1. `ffi`: libnftnl and glibc, nothing of the crate.
//! 2. `types` ← `fields` ← `ir`; `udata`; `symbols`: datatypes, header fields and meta and
//!    conntrack keys, the IR itself; userdata TLVs; how nft prints values.
//! 3. `expr`; `deps` ← `lower` ← `raise`: the kernel's expressions (each described once),
//!    the dependencies nft writes, rules to expressions and back.
//! 4. `elems` ← `canon`; `disjoint`: set elements as the kernel holds them, in the one form
//!    that compares as bytes, and overlapping intervals cut apart.
//! 5. `render` ← `json`: the IR as nft prints it, and as JSON.
//! 6. `batch` ← `socket` ← `dump`: ops into one batch, the nf_tables socket, tables read back
//!    ([`dump::Dumped`]: a table whose named sets' elements stay in kernel form until asked).
//! 7. `elemdiff` ← `diff`: the table diff, its element half apart.
//!
//! The public API is the IR (at the root), [`batch`], [`diff`], [`dump`], [`socket`],
//! [`render`], [`json`], [`trace`], [`disjoint`] and [`proto_name`]; the rest is the crate's own.
//!
//! Every `unsafe` is in `ffi`, the only module allowed it (the crate denies `unsafe_code`):
//! libnftnl's objects behind owners that free them, their attributes set and read through
//! typed constants, messages built in buffers sized for what libnftnl writes and parsed only
//! whole. The socket is nix's.

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
pub mod trace;
mod types;
mod udata;

#[cfg(test)]
mod tests;

pub use elems::to_kernel;
pub use ir::*;
pub use symbols::proto_name;
