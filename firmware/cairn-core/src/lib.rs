//! Domain types and pure policy shared by every cairn crate.
//!
//! Owns: the rules for what a usable DICOM UID is, what an AE title is, how a byte size reads
//! for people.
//! Must never: do I/O, log, or depend on another cairn crate.

pub mod ae;
pub mod size;
pub mod uid;

pub use ae::{AeTitle, AeTitleError};
pub use size::human_bytes;
pub use uid::{check_uid, trim_uid, UidError, UidWarning};
