//! Associations the box opens itself: to a C-MOVE destination, and to a storage commitment
//! requester that is no longer connected.
//!
//! Connects (5 s to connect, TCP_NODELAY, 30 s per write), sends the A-ASSOCIATE-RQ with the
//! caller's presentation contexts and, when asked, SCP/SCU role selection, reads the answer,
//! then reads response commands and releases or aborts. Also the loop that reads response
//! commands, shared with C-GET, which reads its C-STORE-RSPs on the peer's own association.
//!
//! Must never: wait without a deadline, or hold more than one PDU and one command set.

use crate::dimse::{Command, CommandError};
use crate::pdu::{self, types, PduError, PduReader};
use dicom_ul::pdu::{
    AssociationAC, AssociationRQ, Pdu, PresentationContextProposed, RequestorRoles,
    UserVariableItem,
};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why an outgoing association could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        source: io::Error,
    },
    /// The host name resolves to no address.
    #[error("cannot resolve {0}")]
    NoAddress(String),
    /// No TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The A-ASSOCIATE-RQ could not be sent.
    #[error("{0}")]
    Send(io::Error),
    /// No answer came.
    #[error("no answer to the association request: {0}")]
    NoAnswer(PduError),
    /// The answer does not decode.
    #[error("{0}")]
    Undecodable(PduError),
    /// The peer sent an A-ASSOCIATE-RJ (shown as decoded).
    #[error("association rejected: {0}")]
    Rejected(String),
    /// The peer answered with another PDU (its short description).
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

/// Why no response command could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// Reading a PDU failed: closed, timed out, malformed or an I/O error.
    #[error("{0}")]
    Pdu(#[from] PduError),
    /// A P-DATA-TF's PDVs do not parse.
    #[error("{0}")]
    Pdvs(PduError),
    /// Another PDU than P-DATA-TF arrived (its type).
    #[error("unexpected PDU 0x{0:02x}")]
    NotData(u8),
    /// A command set does not decode.
    #[error("{0}")]
    Command(#[from] CommandError),
}

/// Reads PDUs from `sock` until `on_command` takes a complete command set (returns `Some`);
/// data set fragments are skipped. `timeout` bounds the wait for each PDU (`None`: the
/// reader's idle deadline).
pub(crate) fn read_commands<T>(
    reader: &mut PduReader,
    sock: &mut TcpStream,
    max_pdu: u32,
    timeout: Option<Duration>,
    mut on_command: impl FnMut(Command) -> Option<T>,
) -> Result<T, ReadError> {
    let mut buf = Vec::new();
    let mut cmd_buf = Vec::new();
    loop {
        let t = reader.read(sock, |_| max_pdu, timeout, &mut buf)?;
        if t != types::P_DATA {
            return Err(ReadError::NotData(t));
        }
        for pdv in pdu::split_pdvs(&buf).map_err(ReadError::Pdvs)? {
            if !pdv.is_command {
                continue;
            }
            cmd_buf.extend_from_slice(pdv.data);
            if !pdv.is_last {
                continue;
            }
            let c = Command::decode(&cmd_buf)?;
            cmd_buf.clear();
            if let Some(taken) = on_command(c) {
                return Ok(taken);
            }
        }
    }
}

/// Where to open an association and what to propose.
pub(crate) struct Request<'a> {
    /// The peer's host name or address.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// Our AE title (calling).
    pub our_ae: &'a str,
    /// Its AE title (called).
    pub their_ae: &'a str,
    /// The presentation contexts proposed.
    pub contexts: Vec<PresentationContextProposed>,
    /// A SOP class the box asks to act as SCP (not SCU) of, by role selection.
    pub scp_role: Option<&'a str>,
    /// The reader's deadline within a PDU (ARTIM).
    pub artim: Duration,
    /// The reader's deadline between PDUs when the caller gives none.
    pub idle: Duration,
}

/// An open association to a peer.
pub(crate) struct OutAssociation {
    /// The socket.
    pub sock: TcpStream,
    /// This socket's own reader: it may read ahead past the answer.
    reader: PduReader,
    /// The peer's largest PDU (16384 when it states none).
    pub peer_max_pdu: u32,
}

impl OutAssociation {
    /// Connects and negotiates; returns the association and the peer's A-ASSOCIATE-AC.
    pub(crate) fn open(rq: Request<'_>) -> Result<(Self, AssociationAC), OpenError> {
        let host = rq.host;
        let addr: SocketAddr = (host, rq.port)
            .to_socket_addrs()
            .map_err(|source| OpenError::Resolve {
                host: host.to_string(),
                source,
            })?
            .next()
            .ok_or_else(|| OpenError::NoAddress(host.to_string()))?;
        let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|source| OpenError::Connect { addr, source })?;
        let _ = sock.set_nodelay(true);
        let _ = sock.set_write_timeout(Some(Duration::from_secs(30)));
        let mut user_variables = vec![
            UserVariableItem::MaxLength(65536),
            UserVariableItem::ImplementationClassUID(crate::IMPLEMENTATION_CLASS_UID.into()),
            UserVariableItem::ImplementationVersionName(crate::IMPLEMENTATION_VERSION_NAME.into()),
        ];
        if let Some(class) = rq.scp_role {
            user_variables.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                class.into(),
                RequestorRoles {
                    scu: false,
                    scp: true,
                },
            ));
        }
        let associate = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: rq.our_ae.into(),
            called_ae_title: rq.their_ae.into(),
            application_context_name: crate::acceptor::APPLICATION_CONTEXT.into(),
            presentation_contexts: rq.contexts,
            user_variables,
        };
        pdu::send(&mut sock, &Pdu::AssociationRQ(associate)).map_err(OpenError::Send)?;
        let mut reader = PduReader::new(rq.artim, rq.idle);
        let mut buf = Vec::new();
        let t = reader
            .read(
                &mut sock,
                |_| pdu::MAX_ASSOCIATE_RQ,
                Some(Duration::from_secs(10)),
                &mut buf,
            )
            .map_err(OpenError::NoAnswer)?;
        let ac = match pdu::decode(t, &buf).map_err(OpenError::Undecodable)? {
            Pdu::AssociationAC(ac) => ac,
            Pdu::AssociationRJ(rj) => return Err(OpenError::Rejected(format!("{rj:?}"))),
            other => return Err(OpenError::Unexpected(other.short_description().to_string())),
        };
        let peer_max_pdu = ac
            .user_variables
            .iter()
            .find_map(|u| match u {
                UserVariableItem::MaxLength(l) => Some(*l),
                _ => None,
            })
            .unwrap_or(16384);
        Ok((
            Self {
                sock,
                reader,
                peer_max_pdu,
            },
            ac,
        ))
    }

    /// Reads response commands until `on_command` takes one (see [`read_commands`]).
    pub(crate) fn read_commands<T>(
        &mut self,
        max_pdu: u32,
        timeout: Option<Duration>,
        on_command: impl FnMut(Command) -> Option<T>,
    ) -> Result<T, ReadError> {
        read_commands(
            &mut self.reader,
            &mut self.sock,
            max_pdu,
            timeout,
            on_command,
        )
    }

    /// A-RELEASE-RQ, then up to 5 s for the answer (best effort).
    pub(crate) fn release(mut self) {
        let rq = [types::RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        if self.sock.write_all(&rq).is_ok() {
            let mut buf = Vec::new();
            let _ = self.reader.read(
                &mut self.sock,
                |_| 1024,
                Some(Duration::from_secs(5)),
                &mut buf,
            );
        }
    }

    /// A-ABORT as the service user, without waiting (best effort).
    pub(crate) fn abort(mut self) {
        let _ = self
            .sock
            .write_all(&[types::ABORT, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    }

    /// A-ABORT as the service provider with `reason` (see [`pdu::send_abort`]).
    pub(crate) fn abort_as_provider(mut self, reason: u8) {
        pdu::send_abort(&mut self.sock, reason);
    }
}
