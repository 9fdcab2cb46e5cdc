//! nsfw's only files: the lock and the write-ahead record under /run/nsfw, and the safe file
//! access every path in a directory others can write goes through.

pub mod lock;
pub mod record;
pub mod safefs;

pub use lock::{Access, Lock, STATE_DIR, acquire, acquire_within};
pub use record::{KeptAddr, KeptRoute, Pending, Record, Saved, Taken};
