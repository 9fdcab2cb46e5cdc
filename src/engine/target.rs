//! What a run is for: the resources one topology wants (or none, a flush), whose objects it
//! may touch, and where the namespaces `nsfw watch` vouches for come from.

use crate::compile::compile;
use crate::plan::Owner;
use crate::plumbing;
use crate::resources::Desired;
use crate::topology::Topology;

/// What one topology (or a flush) wants, and whose objects it may touch.
pub(crate) struct Target<'a> {
    pub desired: Desired,
    pub who: Owner<'a>,
    /// The topology, for the firewall (None: a flush).
    pub topology: Option<&'a Topology>,
    /// `--adopt`: take over what the file describes but nobody marked (see `adopt`).
    pub adopt: bool,
    /// Where the namespaces `nsfw watch` vouches for come from.
    pub memory: Memory,
}

/// Whose memory of the namespaces a run may take instead of reading them.
pub(crate) enum Memory {
    /// The topology's watch, if one runs and answers (see `plumbing::memory`).
    Ask,
    /// The same, asked for as the run began ([`Target::asking`]).
    Asking(plumbing::memory::Asking),
    /// This one (watch's own checks).
    Given(plumbing::memory::Known),
    /// None: every namespace is read.
    Off,
}

impl Memory {
    /// The ask started as the run began, if any: its answer is waited for beside the read of
    /// nftables (`engine::kernel`'s plumbing read).
    pub(crate) fn asking(&self) -> Option<&plumbing::memory::Asking> {
        match self {
            Memory::Asking(a) => Some(a),
            _ => None,
        }
    }
}

impl<'a> Target<'a> {
    pub(crate) fn apply(t: &'a Topology) -> Target<'a> {
        Target {
            desired: compile(t),
            who: Owner::Topology(&t.name),
            topology: Some(t),
            adopt: false,
            memory: Memory::Ask,
        }
    }

    /// [`Target::apply`], with watch's memory asked for at once: watch answers while the file
    /// compiles (apply and diff; watch's own checks are given theirs).
    pub(crate) fn asking(t: &'a Topology) -> Target<'a> {
        Target::asked(t, plumbing::memory::Asking::start(&t.name))
    }

    /// [`Target::asking`], with the ask already under way (`commands::early`).
    pub(crate) fn asked(t: &'a Topology, asking: plumbing::memory::Asking) -> Target<'a> {
        Target {
            memory: Memory::Asking(asking),
            ..Target::apply(t)
        }
    }

    /// Nothing wanted: everything `who` owns goes.
    pub(crate) fn flush(who: Owner<'a>) -> Target<'a> {
        let name = match who {
            Owner::Topology(n) => n.to_string(),
            Owner::All => String::new(),
        };
        Target {
            desired: Desired {
                mark: crate::owner::mark(&name),
                topology: name,
                ..Default::default()
            },
            who,
            topology: None,
            adopt: false,
            memory: Memory::Off,
        }
    }
}
