//! nsfw's only files: the lock and the write-ahead record under /run/nsfw, and the safe file
//! access every path in a directory others can write goes through.

mod announced;
pub(crate) mod lock;
pub(crate) mod record;
pub(crate) mod safefs;

pub(crate) use announced::Announcement;
pub(crate) use lock::{Access, Lock, STATE_DIR, acquire, acquire_within};
pub(crate) use record::{KeptAddr, KeptRoute, Pending, Record, Saved, Taken};
