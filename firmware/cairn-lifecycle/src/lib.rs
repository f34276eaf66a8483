//! cairn's patient lifecycle: how long each patient's images are kept, and what stops them
//! from going.
//!
//! This crate owns the lifecycle tables of the index (`cairn.db`, created by the store's
//! migration 8): each patient's stored expiry (`patient_retention`, marked dirty by triggers
//! whenever a fact it depends on changes), the recorded date of death, and legal holds. It reads
//! a patient's facts from the index, applies a [`cairn_retention::RuleSet`], and writes the
//! answer back. Every change is a function of a writer connection and the commit time that
//! returns its audit rows, run through [`cairn_store::Store::transact`] so that the store's
//! writer stays the only writer and each audit row commits with its change. Reads for
//! `cairnctl` and the panel go through a read-only connection. The daemon's lifecycle thread
//! answers requests dropped in `DIR/requests/lifecycle/`.

pub mod certificate;
pub mod clock;
pub mod clock_watch;
pub mod death;
pub mod destroy;
mod error;
pub mod facts;
pub mod holds;
mod input;
pub mod recompute;
pub mod reject;
pub mod requests;
mod service;
pub mod status;
pub mod tier;
mod timesync;
pub mod tombstone;
mod transact;
pub mod view;

pub use error::LifecycleError;
pub use service::{today, Service};
pub use transact::run;
pub use view::{list_holds, open_read, retention_view, HoldRow, RetentionView, StudyTier};
