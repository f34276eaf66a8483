//! Small file primitives shared by cairn's crates: [`atomic_write`], which replaces a file
//! whole and says at each call site whether it survives a crash ([`Durability`]), and the
//! [`mailbox`] through which `cairnctl` and the panel hand requests to the daemon, and the
//! Linux [`immutable`] attribute that fixes the files of archived studies.
//!
//! The store's object path (spool, `RENAME_NOREPLACE`, `syncfs`) is not here: it is
//! `cairn-store`'s durability core.

pub mod atomic;
pub mod immutable;
pub mod mailbox;

pub use atomic::{atomic_write, atomic_write_with_mode, Durability};
pub use mailbox::Mailbox;
