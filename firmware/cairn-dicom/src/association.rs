//! One accepted association: its socket and reader, what was negotiated, the services' shared
//! context, how it ends, and the answers every service sends the same way.
//!
//! The message loop is in `session.rs`; each service adds its methods in `services/`.

use crate::acceptor::{AcceptedContext, Negotiated};
use crate::commitment::AssocCommit;
use crate::damage::DamageSink;
use crate::pdu::{self, PduReader};
use crate::refusal_audit::RefusalAudit;
use cairn_config::Config;
use cairn_store::Store;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A-ABORT reasons (PS3.8 table 9-26, service provider source).
pub(crate) mod abort_reason {
    pub const NOT_SPECIFIED: u8 = 0;
    pub const UNRECOGNIZED_PDU: u8 = 1;
    pub const UNEXPECTED_PDU: u8 = 2;
    pub const INVALID_PDU_PARAMETER: u8 = 6;
}

/// Shared per-association context.
pub(crate) struct Association<'a> {
    pub sock: TcpStream,
    pub peer: SocketAddr,
    pub neg: Negotiated,
    pub store: &'a Store,
    pub config: &'a Config,
    pub reader: PduReader,
    pub shutdown: &'a AtomicBool,
    /// Where refused and aborted associations are audited (coalesced).
    pub refusals: &'a RefusalAudit,
    pub idle: Arc<AtomicBool>,
    /// Storage commitment reports for this association.
    pub commit: AssocCommit,
    /// Where a stored object found missing or damaged is reported.
    pub damage: Option<DamageSink>,
}

/// How the association ended.
pub(crate) enum Ending {
    /// Released by the peer.
    Released,
    PeerAborted,
    Closed,
    Aborted(String),
}

impl Association<'_> {
    /// A-ABORT with `reason`; the association ends aborted because of `why`.
    pub(crate) fn abort(&mut self, reason: u8, why: impl Into<String>) -> Ending {
        pdu::send_abort(&mut self.sock, reason);
        Ending::Aborted(why.into())
    }

    /// The accepted presentation context `id`.
    pub(crate) fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.neg.contexts.iter().find(|c| c.id == id)
    }

    /// The transfer syntax of the accepted presentation context `id`.
    pub(crate) fn context_ts(&self, id: u8) -> Option<String> {
        self.context(id).map(|c| c.transfer_syntax.clone())
    }

    /// Sends a response command without a data set.
    pub(crate) fn respond(&mut self, context_id: u8, rsp: Vec<u8>) -> Result<(), Ending> {
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            None,
        )
        .map_err(|e| Ending::Aborted(format!("cannot send response: {e}")))
    }
}
