//! cairn's DICOM node.
//!
//! Owns: the TCP listener, the association acceptor (on dicom-ul's PDU codec), the DIMSE layer
//! (command sets, message assembly, fragmentation on send), the data set walker that validates
//! what is received, and the verification and storage services.
//!
//! Invariants: memory per association is bounded by the PDU size, never the object size (one
//! exception: decompressing a retrieved object, capped and one at a time: `decompress.rs`); a
//! C-STORE success goes out only after the store says the object is durable and indexed; every
//! length read from the wire is checked before it is used; nothing received names a file.
//! Must never: write outside the store's spool, trust a UID, or panic on input.

pub mod acceptor;
mod association;
mod association_out;
mod audit_detail;
mod commitment;
pub mod damage;
pub mod dataset;
pub mod decompress;
pub mod dimse;
mod index_record;
pub mod pdu;
mod refusal_audit;
pub mod server;
mod services;
mod session;
pub mod syntax;
pub mod transcode;

pub use damage::{Damage, DamageSink, DamagedObject};
pub use server::{Server, ServerHandle, ServerOptions};

/// Our Implementation Class UID (a UUID-derived 2.25 UID, fixed for cairn).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.265433527615566527976185914171021767004";
/// Our Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "CAIRN_0_1";
