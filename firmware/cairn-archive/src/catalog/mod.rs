//! The catalog: volumes, bundles, copies and the archive queue in the index (schema migration
//! 4, see `docs/interface.md`). Reads open `cairn.db` read-only; every change goes through the
//! store's writer ([`Store::transact`](cairn_store::Store::transact)) together with its audit
//! row.
//!
//! This is the library API the CLI and the web panel call: [`archive_status`],
//! [`list_volumes`], [`set_location`] (in-process, with a [`Store`](cairn_store::Store)), and
//! [`request`] (hand flush, eject, load, scan, restore or a location change to the daemon's
//! archive thread).
//!
//! Split by job: `types` (rows and states), `read` (read-only queries and the status),
//! `queue` (the archive queue), `write` (changes with their audit rows), `live` (the status
//! file the archive thread publishes, and requests to it), `recycle` (forgetting what a
//! recycled volume held). Each module uses only `types` and the modules listed before it in
//! this order: live, queue, read, write, recycle.

mod live;
mod queue;
mod read;
mod recycle;
mod types;
mod write;

pub use live::*;
pub use queue::*;
pub use read::*;
pub use recycle::*;
pub use types::*;
pub use write::*;
