//! One association: DIMSE message assembly and the verification and storage services.

use crate::acceptor::{AcceptedContext, Negotiated};
use crate::dataset::{self, decode_text, DatasetError};
use crate::dimse::{self, command, status, Command, CommandError, Refusal, MAX_COMMAND_BYTES};
use crate::pdu::{self, types, PduError, PduReader};
use crate::syntax::{self, Encoding};
use cairn_audit::AuditEvent;
use cairn_config::Config;
use cairn_core::check_uid;
use cairn_store::{
    ErrorKind, InstanceRecord, PatientInfo, SeriesInfo, SpoolWriter, Store, StoreJob, StoreOutcome,
    StudyInfo,
};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A-ABORT reasons (PS3.8 table 9-26, service provider source).
mod abort_reason {
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
    pub refusals: &'a crate::server::refusals::RefusalAudit,
    pub idle: Arc<AtomicBool>,
    /// Storage commitment reports for this association.
    pub commit: crate::commitment::AssocCommit,
    /// Where a stored object found missing or damaged is reported.
    pub damage: Option<crate::DamageSink>,
}

enum State {
    Idle,
    Command { context_id: u8, buf: Vec<u8> },
    Data(Box<DataState>),
}

struct DataState {
    context_id: u8,
    command: Command,
    sink: Sink,
    received: u64,
}

#[allow(clippy::large_enum_variant)] // one per association, never in a collection
enum Sink {
    /// Receiving a C-STORE data set into the spool.
    Spool(Receiving),
    /// Reading and dropping the data set; answer with this refusal at the end.
    Discard(Refusal),
    /// A query/retrieve identifier, kept in memory (bounded by `qr::MAX_IDENTIFIER`).
    Identifier(Vec<u8>),
    /// A storage commitment N-ACTION data set (bounded by `commitment::MAX_REQUEST`).
    Commitment(Vec<u8>),
}

/// A C-STORE data set on its way into the spool.
struct Receiving {
    spool: SpoolWriter,
    header_len: u64,
    context: AcceptedContext,
    sop_class: String,
    sop_instance: String,
}

/// How the association ended.
pub(crate) enum Ending {
    Released,
    PeerAborted,
    Closed,
    Aborted(String),
}

impl Association<'_> {
    /// Run until release, abort or shutdown.
    pub fn run(mut self) {
        let ending = self.serve();
        let (outcome, level_warn) = match &ending {
            Ending::Released => ("released".to_string(), false),
            Ending::PeerAborted => ("aborted by peer".to_string(), false),
            Ending::Closed => ("connection closed".to_string(), false),
            Ending::Aborted(why) => (format!("aborted: {why}"), true),
        };
        if level_warn {
            tracing::warn!(%outcome, "association ended");
            let why = match &ending {
                Ending::Aborted(why) => why.as_str(),
                _ => outcome.as_str(),
            };
            self.refusals.record(
                self.store,
                crate::server::refusals::RefusalEvent {
                    action: "abort",
                    actor: format!("ae:{}", self.neg.calling_ae),
                    peer: self.peer,
                    kind: crate::server::refusals::kind_of(why),
                    reason: outcome.clone(),
                },
            );
        } else {
            tracing::info!(%outcome, "association ended");
        }
    }

    fn abort(&mut self, reason: u8, why: impl Into<String>) -> Ending {
        pdu::send_abort(&mut self.sock, reason);
        Ending::Aborted(why.into())
    }

    fn serve(&mut self) -> Ending {
        let max_pdu = self.config.dicom.max_pdu_bytes;
        let mut buf = Vec::new();
        let mut state = State::Idle;
        let idle_limit = std::time::Duration::from_secs(self.config.dicom.idle_timeout_secs);
        let mut idle_since = std::time::Instant::now();
        let mut rate = RateWindow::new(self.config);
        loop {
            let idle_now = matches!(state, State::Idle);
            if idle_now {
                rate.stop();
                if let Err(ending) = self.commitment_tick() {
                    return ending;
                }
            }
            // With storage commitments open, wake up now and then to send decided reports;
            // in the middle of a message, when the transfer rate is next measured.
            let wait = if idle_now {
                self.commitment_idle_wait()
                    .map(|w| w.min(idle_limit.saturating_sub(idle_since.elapsed())))
            } else {
                rate.time_left().map(|w| w.min(idle_limit))
            };
            if idle_now && self.shutdown.load(Ordering::SeqCst) {
                return self.abort(abort_reason::NOT_SPECIFIED, "the box is shutting down");
            }
            self.idle.store(idle_now, Ordering::SeqCst);
            let read = self.reader.read(
                &mut self.sock,
                |t| match t {
                    types::P_DATA => max_pdu,
                    _ => 4096,
                },
                wait,
                &mut buf,
            );
            self.idle.store(false, Ordering::SeqCst);
            if !idle_now {
                if let Ok(types::P_DATA) = read {
                    rate.received(buf.len());
                }
                if let Err(why) = rate.check() {
                    return self.abort(abort_reason::NOT_SPECIFIED, why.to_string());
                }
            }
            if matches!(read, Err(PduError::Timeout))
                && wait.is_some()
                && idle_since.elapsed() < idle_limit
            {
                continue;
            }
            idle_since = std::time::Instant::now();
            let pdu_type = match read {
                Ok(t) => t,
                Err(PduError::Closed) if self.shutdown.load(Ordering::SeqCst) => {
                    return self.abort(abort_reason::NOT_SPECIFIED, "the box is shutting down")
                }
                Err(PduError::Closed) => return Ending::Closed,
                Err(PduError::Timeout) => {
                    return self.abort(abort_reason::NOT_SPECIFIED, "peer silent too long")
                }
                Err(e @ PduError::UnknownType(_)) => {
                    return self.abort(abort_reason::UNRECOGNIZED_PDU, e.to_string())
                }
                Err(e @ (PduError::TooLarge { .. } | PduError::Malformed(_))) => {
                    return self.abort(abort_reason::INVALID_PDU_PARAMETER, e.to_string())
                }
                Err(PduError::Io(e)) => return Ending::Aborted(format!("socket error: {e}")),
            };
            match pdu_type {
                types::P_DATA => {
                    let pdvs = match pdu::split_pdvs(&buf) {
                        Ok(p) => p,
                        Err(e) => {
                            return self.abort(abort_reason::INVALID_PDU_PARAMETER, e.to_string())
                        }
                    };
                    for pdv in pdvs {
                        state = match self.on_pdv(state, pdv) {
                            Ok(s) => s,
                            Err(ending) => return ending,
                        };
                    }
                }
                types::RELEASE_RQ if matches!(state, State::Idle) => {
                    let rp = [types::RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0];
                    let _ = std::io::Write::write_all(&mut self.sock, &rp);
                    return Ending::Released;
                }
                types::ABORT => return Ending::PeerAborted,
                other => {
                    return self.abort(
                        abort_reason::UNEXPECTED_PDU,
                        format!("unexpected PDU type 0x{other:02x} for the association state"),
                    )
                }
            }
        }
    }

    fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.neg.contexts.iter().find(|c| c.id == id)
    }

    fn on_pdv(&mut self, state: State, pdv: pdu::Pdv<'_>) -> Result<State, Ending> {
        if self.context(pdv.context_id).is_none() {
            return Err(self.abort(
                abort_reason::INVALID_PDU_PARAMETER,
                format!(
                    "PDV on presentation context {} that was not accepted",
                    pdv.context_id
                ),
            ));
        }
        match state {
            State::Idle | State::Command { .. } if !pdv.is_command => Err(self.abort(
                abort_reason::UNEXPECTED_PDU,
                "data set fragment where a command was expected",
            )),
            State::Idle => self.command_fragment(pdv.context_id, Vec::new(), pdv),
            State::Command { context_id, buf } => {
                if context_id != pdv.context_id {
                    return Err(self.abort(
                        abort_reason::UNEXPECTED_PDU,
                        "command fragments on different presentation contexts",
                    ));
                }
                self.command_fragment(context_id, buf, pdv)
            }
            State::Data(_) if pdv.is_command => Err(self.abort(
                abort_reason::UNEXPECTED_PDU,
                "command fragment in the middle of a data set",
            )),
            State::Data(mut d) => {
                if d.context_id != pdv.context_id {
                    return Err(self.abort(
                        abort_reason::UNEXPECTED_PDU,
                        "data set fragments on different presentation contexts",
                    ));
                }
                d.received += pdv.data.len() as u64;
                if d.received > self.config.dicom.max_object_bytes {
                    return Err(self.abort(
                        abort_reason::NOT_SPECIFIED,
                        format!(
                            "object larger than max_object_bytes ({})",
                            self.config.dicom.max_object_bytes
                        ),
                    ));
                }
                if let Sink::Commitment(buf) = &mut d.sink {
                    if buf.len() + pdv.data.len() > crate::commitment::MAX_REQUEST {
                        return Err(self.abort(
                            abort_reason::INVALID_PDU_PARAMETER,
                            "storage commitment request too large",
                        ));
                    }
                    buf.extend_from_slice(pdv.data);
                }
                if let Sink::Identifier(buf) = &mut d.sink {
                    if buf.len() + pdv.data.len() > crate::qr::MAX_IDENTIFIER {
                        return Err(
                            self.abort(abort_reason::INVALID_PDU_PARAMETER, "identifier too large")
                        );
                    }
                    buf.extend_from_slice(pdv.data);
                }
                if let Sink::Spool(receiving) = &mut d.sink {
                    if let Err(e) = receiving.spool.write(pdv.data) {
                        tracing::error!(error = %e, "cannot write to the spool");
                        d.sink = Sink::Discard(Refusal::disk_unwritable());
                    }
                }
                if pdv.is_last {
                    let d = *d;
                    self.finish_data(d)?;
                    Ok(State::Idle)
                } else {
                    Ok(State::Data(d))
                }
            }
        }
    }

    fn command_fragment(
        &mut self,
        context_id: u8,
        mut buf: Vec<u8>,
        pdv: pdu::Pdv<'_>,
    ) -> Result<State, Ending> {
        if buf.len() + pdv.data.len() > MAX_COMMAND_BYTES {
            return Err(self.abort(abort_reason::INVALID_PDU_PARAMETER, "command set too large"));
        }
        buf.extend_from_slice(pdv.data);
        if !pdv.is_last {
            return Ok(State::Command { context_id, buf });
        }
        let cmd = match Command::decode(&buf) {
            Ok(c) => c,
            Err(e) => return Err(self.bad_command(e)),
        };
        self.dispatch(context_id, cmd)
    }

    fn bad_command(&mut self, e: CommandError) -> Ending {
        self.abort(
            abort_reason::INVALID_PDU_PARAMETER,
            format!("invalid command set: {e}"),
        )
    }

    fn respond(&mut self, context_id: u8, rsp: Vec<u8>) -> Result<(), Ending> {
        pdu::send_message(
            &mut self.sock,
            self.neg.peer_max_pdu,
            context_id,
            &rsp,
            None,
        )
        .map_err(|e| Ending::Aborted(format!("cannot send response: {e}")))
    }

    fn dispatch(&mut self, context_id: u8, cmd: Command) -> Result<State, Ending> {
        let field = cmd.field();
        if field == crate::commitment::N_EVENT_REPORT_RSP {
            self.commitment_report_rsp(&cmd);
            return Ok(State::Idle);
        }
        if field & command::RESPONSE != 0 {
            return Err(self.abort(
                abort_reason::UNEXPECTED_PDU,
                format!("unexpected response command 0x{field:04x}"),
            ));
        }
        match field {
            command::C_ECHO_RQ => {
                if cmd.has_dataset() {
                    return Ok(self.discard(
                        context_id,
                        cmd,
                        status::CANNOT_UNDERSTAND,
                        "C-ECHO with a data set",
                    ));
                }
                let rsp = dimse::response(&cmd, status::SUCCESS, None);
                self.respond(context_id, rsp)?;
                Ok(State::Idle)
            }
            command::C_STORE_RQ => {
                if !cmd.has_dataset() {
                    let rsp = dimse::response(
                        &cmd,
                        status::CANNOT_UNDERSTAND,
                        Some("C-STORE without a data set"),
                    );
                    self.respond(context_id, rsp)?;
                    return Ok(State::Idle);
                }
                let sink = match self.begin_store(context_id, &cmd) {
                    Ok(receiving) => Sink::Spool(receiving),
                    Err(refusal) => Sink::Discard(refusal),
                };
                Ok(State::Data(Box::new(DataState {
                    context_id,
                    command: cmd,
                    sink,
                    received: 0,
                })))
            }
            command::C_CANCEL_RQ => Ok(State::Idle),
            crate::commitment::N_ACTION_RQ if cmd.has_dataset() => {
                Ok(State::Data(Box::new(DataState {
                    context_id,
                    command: cmd,
                    sink: Sink::Commitment(Vec::new()),
                    received: 0,
                })))
            }
            command::C_FIND_RQ | command::C_MOVE_RQ | command::C_GET_RQ if cmd.has_dataset() => {
                Ok(State::Data(Box::new(DataState {
                    context_id,
                    command: cmd,
                    sink: Sink::Identifier(Vec::new()),
                    received: 0,
                })))
            }
            _ if cmd.has_dataset() => Ok(self.discard(
                context_id,
                cmd,
                status::UNRECOGNIZED_OPERATION,
                "operation not supported by this node",
            )),
            _ => {
                let rsp = dimse::response(
                    &cmd,
                    status::UNRECOGNIZED_OPERATION,
                    Some("operation not supported by this node"),
                );
                self.respond(context_id, rsp)?;
                Ok(State::Idle)
            }
        }
    }

    fn discard(&self, context_id: u8, cmd: Command, status: u16, comment: &str) -> State {
        State::Data(Box::new(DataState {
            context_id,
            command: cmd,
            sink: Sink::Discard(Refusal::new(status, comment)),
            received: 0,
        }))
    }

    fn begin_store(&mut self, context_id: u8, cmd: &Command) -> Result<Receiving, Refusal> {
        let Some(context) = self.context(context_id).cloned() else {
            return Err(Refusal::cannot_understand("unknown presentation context"));
        };
        let class_raw = cmd.affected_sop_class().unwrap_or_default();
        let inst_raw = cmd.affected_sop_instance().unwrap_or_default();
        let sop_class = match check_uid(&class_raw) {
            Ok((u, _)) => u.to_string(),
            Err(e) => {
                return Err(Refusal::cannot_understand(format!(
                    "Affected SOP Class UID is not usable: {e}"
                )))
            }
        };
        let sop_instance = match check_uid(&inst_raw) {
            Ok((u, warning)) => {
                if warning.is_some() {
                    tracing::warn!("SOP Instance UID has a zero-led component; accepted");
                }
                u.to_string()
            }
            Err(e) => {
                return Err(Refusal::cannot_understand(format!(
                    "Affected SOP Instance UID is not usable: {e}"
                )))
            }
        };
        if !syntax::is_storage_class(&context.abstract_syntax)
            || sop_class != context.abstract_syntax
        {
            return Err(Refusal::new(
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class differs from the presentation context's",
            ));
        }
        if !self.neg.rights.store {
            return Err(Refusal::new(
                status::NOT_AUTHORIZED,
                "this AE may not store here",
            ));
        }
        let mut spool = match self.store.spool() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a spool file");
                return Err(Refusal::disk_unwritable());
            }
        };
        let header = part10_header(&sop_class, &sop_instance, &context.transfer_syntax);
        if let Err(e) = spool.write(&header) {
            tracing::error!(error = %e, "cannot write to the spool");
            return Err(Refusal::disk_unwritable());
        }
        Ok(Receiving {
            spool,
            header_len: header.len() as u64,
            context,
            sop_class,
            sop_instance,
        })
    }

    fn finish_data(&mut self, d: DataState) -> Result<(), Ending> {
        let DataState {
            context_id,
            command,
            sink,
            ..
        } = d;
        let (code, comment, object) = match sink {
            Sink::Identifier(bytes) => return self.query_retrieve(context_id, &command, &bytes),
            Sink::Commitment(bytes) => return self.commitment_action(context_id, &command, &bytes),
            Sink::Discard(refusal) => (refusal.status, Some(refusal.comment), None),
            Sink::Spool(receiving) => {
                let sop_instance = receiving.sop_instance.clone();
                match self.complete_store(receiving) {
                    Ok(outcome) => {
                        tracing::debug!(?outcome, "stored");
                        (status::SUCCESS, None, Some(sop_instance))
                    }
                    Err(refusal) => (refusal.status, Some(refusal.comment), Some(sop_instance)),
                }
            }
        };
        if code != status::SUCCESS {
            let comment_text = comment.clone().unwrap_or_default();
            tracing::warn!(status = format!("0x{code:04X}"), reason = %comment_text, "C-STORE refused");
            self.store.audit_later(AuditEvent {
                actor: format!("ae:{}", self.neg.calling_ae),
                action: "refuse".into(),
                object: object.unwrap_or_else(|| "-".into()),
                detail: json_obj(&[
                    ("status", &format!("0x{code:04X}")),
                    ("reason", &comment_text),
                    ("peer", &self.peer.to_string()),
                ]),
            });
        }
        let rsp = dimse::response(&command, code, comment.as_deref());
        self.respond(context_id, rsp)
    }

    fn complete_store(&mut self, receiving: Receiving) -> Result<StoreOutcome, Refusal> {
        let Receiving {
            spool,
            header_len,
            context,
            sop_class,
            sop_instance,
        } = receiving;
        let enc = syntax::encoding(&context.transfer_syntax).unwrap_or(Encoding::ExplicitLe);
        // Everything received reaches the spool file here; it is then read back to validate.
        let finished = spool.finish().map_err(|e| {
            tracing::error!(error = %e, "cannot write the spool file");
            Refusal::disk_unwritable()
        })?;
        let file = std::fs::File::open(finished.path()).map_err(|e| {
            tracing::error!(error = %e, "cannot reopen the spool file");
            Refusal::disk_unreadable()
        })?;
        let walked = dataset::walk_file(
            file,
            header_len,
            enc,
            self.config.dicom.max_object_bytes,
            &is_wanted,
        )
        .map_err(|e| match e {
            DatasetError::Io(ref io) if io.kind() != std::io::ErrorKind::InvalidData => {
                Refusal::disk_unreadable()
            }
            other => Refusal::cannot_understand(format!("data set does not parse: {other}")),
        })?;
        for w in walked.warnings.iter().take(4) {
            tracing::info!(warning = %w, "tolerated a minor violation in a received data set");
        }
        let v = |tag: u32| -> String {
            let charset = walked
                .values
                .get(&0x0008_0005)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            walked
                .values
                .get(&tag)
                .map(|raw| decode_text(raw, &charset))
                .unwrap_or_default()
        };
        let ds_class = v(0x0008_0016);
        let ds_instance = v(0x0008_0018);
        if ds_class.is_empty() || ds_instance.is_empty() {
            return Err(Refusal::cannot_understand(
                "data set lacks its SOP Class UID or SOP Instance UID",
            ));
        }
        if ds_class != sop_class || ds_instance != sop_instance {
            return Err(Refusal::mismatch(
                "SOP Class/Instance UID in the data set differ from the command",
            ));
        }
        let uid = |tag: u32, name: &str| -> Result<String, Refusal> {
            let raw = v(tag);
            check_uid(&raw).map(|(u, _)| u.to_string()).map_err(|e| {
                Refusal::cannot_understand(format!("{name} is missing or unusable: {e}"))
            })
        };
        let study_uid = uid(0x0020_000D, "Study Instance UID")?;
        let series_uid = uid(0x0020_000E, "Series Instance UID")?;
        let record = InstanceRecord {
            patient: PatientInfo {
                id: v(0x0010_0020),
                issuer: v(0x0010_0021),
                name: v(0x0010_0010),
                birth_date: v(0x0010_0030),
                sex: v(0x0010_0040),
            },
            study: StudyInfo {
                uid: study_uid,
                date: v(0x0008_0020),
                time: v(0x0008_0030),
                description: v(0x0008_1030),
                accession: v(0x0008_0050),
                referring_physician: v(0x0008_0090),
                study_id: v(0x0020_0010),
            },
            series: SeriesInfo {
                uid: series_uid,
                modality: v(0x0008_0060),
                number: v(0x0020_0011),
                description: v(0x0008_103E),
                body_part: v(0x0018_0015),
            },
            sop_instance_uid: sop_instance.to_string(),
            sop_class_uid: sop_class.to_string(),
            instance_number: v(0x0020_0013),
            transfer_syntax: context.transfer_syntax.clone(),
        };
        self.store
            .commit(StoreJob {
                spool: finished,
                record,
                source_ae: self.neg.calling_ae.clone(),
            })
            .map_err(|e| {
                tracing::error!(error = %e, "cannot commit a received object");
                let why = match e.kind() {
                    ErrorKind::ShuttingDown => "the archive is shutting down; send again later",
                    _ => "the archive cannot write to its disk (full or failing)",
                };
                Refusal::out_of_resources(why)
            })
    }
}

/// The transfer rate of the message being received, measured over windows of
/// `transfer_rate_window_secs`: a peer that trickles a message (a few bytes now and then, each
/// PDU well within ARTIM) is aborted at the end of the first window that brought less than
/// `min_transfer_bytes_per_sec` on average.
struct RateWindow {
    min_per_sec: u64,
    length: std::time::Duration,
    /// Start of the current window and the bytes received in it, while a message arrives.
    current: Option<(std::time::Instant, u64)>,
}

impl RateWindow {
    fn new(config: &Config) -> Self {
        Self {
            min_per_sec: config.dicom.min_transfer_bytes_per_sec,
            length: std::time::Duration::from_secs(config.dicom.transfer_rate_window_secs.max(1)),
            current: None,
        }
    }

    /// No message in progress.
    fn stop(&mut self) {
        self.current = None;
    }

    /// Time left in the current window (one starts now if none runs); None when off.
    fn time_left(&mut self) -> Option<std::time::Duration> {
        if self.min_per_sec == 0 {
            return None;
        }
        let (start, _) = *self
            .current
            .get_or_insert_with(|| (std::time::Instant::now(), 0));
        Some(self.length.saturating_sub(start.elapsed()))
    }

    fn received(&mut self, bytes: usize) {
        if let Some((_, n)) = &mut self.current {
            *n += bytes as u64;
        }
    }

    /// At the end of a window: too slow is an error; else the next window starts.
    fn check(&mut self) -> Result<(), TooSlow> {
        let Some((start, bytes)) = self.current else {
            return Ok(());
        };
        if start.elapsed() < self.length {
            return Ok(());
        }
        let wanted = self.min_per_sec.saturating_mul(self.length.as_secs());
        if bytes < wanted {
            return Err(TooSlow {
                bytes,
                secs: self.length.as_secs(),
            });
        }
        self.current = Some((std::time::Instant::now(), 0));
        Ok(())
    }
}

/// A message that arrived slower than `min_transfer_bytes_per_sec` over one window.
#[derive(Debug, thiserror::Error)]
#[error("message arrives slower than min_transfer_bytes_per_sec ({bytes} bytes in {secs} s)")]
struct TooSlow {
    bytes: u64,
    secs: u64,
}

/// Top-level attributes the index needs.
fn is_wanted(tag: u32) -> bool {
    matches!(
        tag,
        0x0008_0005
            | 0x0008_0016
            | 0x0008_0018
            | 0x0008_0020
            | 0x0008_0030
            | 0x0008_0050
            | 0x0008_0060
            | 0x0008_0090
            | 0x0008_1030
            | 0x0008_103E
            | 0x0010_0010
            | 0x0010_0020
            | 0x0010_0021
            | 0x0010_0030
            | 0x0010_0040
            | 0x0018_0015
            | 0x0020_000D
            | 0x0020_000E
            | 0x0020_0010
            | 0x0020_0011
            | 0x0020_0013
    )
}

/// The Part-10 preamble, prefix and file meta group (PS3.10 section 7.1), deterministic for a
/// given SOP class, instance and transfer syntax, so that a resend hashes the same.
pub(crate) fn part10_header(sop_class: &str, sop_instance: &str, ts: &str) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, elem: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&elem.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&v);
    }
    let mut body = Vec::with_capacity(256);
    el(&mut body, 0x0001, b"OB", &[0, 1], 0);
    el(&mut body, 0x0002, b"UI", sop_class.as_bytes(), 0);
    el(&mut body, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    el(&mut body, 0x0010, b"UI", ts.as_bytes(), 0);
    el(
        &mut body,
        0x0012,
        b"UI",
        crate::IMPLEMENTATION_CLASS_UID.as_bytes(),
        0,
    );
    el(
        &mut body,
        0x0013,
        b"SH",
        crate::IMPLEMENTATION_VERSION_NAME.as_bytes(),
        b' ',
    );
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A tiny JSON object writer for audit details (values are escaped, at most 64 characters).
pub(crate) fn json_obj(pairs: &[(&str, &str)]) -> String {
    json_obj_with(pairs, 64)
}

/// JSON object with values cut to `max` characters; control characters become `?`.
pub(crate) fn json_obj_with(pairs: &[(&str, &str)], max: usize) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":\"");
        for c in v.chars().take(max) {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() || (max <= 64 && !c.is_ascii()) => s.push('?'),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_even_and_deterministic() {
        let a = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1");
        let b = part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1");
        assert_eq!(a, b);
        assert_eq!(&a[128..132], b"DICM");
        let group_len = u32::from_le_bytes([a[140], a[141], a[142], a[143]]) as usize;
        assert_eq!(group_len, a.len() - 144);
        assert_eq!(a.len() % 2, 0);
    }

    #[test]
    fn a_trickle_fails_its_window_and_a_steady_stream_passes() {
        let text = "[dicom]\nae_title = \"CAIRN\"\nmin_transfer_bytes_per_sec = 100\n\
                    transfer_rate_window_secs = 1\n[store]\ndata_dir = \"/d\"\n";
        let config = Config::parse(text, std::path::Path::new("t")).unwrap();
        let mut rate = RateWindow::new(&config);
        let left = rate.time_left().unwrap();
        assert!(left <= std::time::Duration::from_secs(1));
        rate.received(10);
        assert!(rate.check().is_ok(), "a window still open");
        // the window closes with 10 of 100 bytes
        rate.current = rate
            .current
            .map(|(t, n)| (t - std::time::Duration::from_secs(2), n));
        let e = rate.check().unwrap_err().to_string();
        assert!(e.contains("10 bytes in 1 s"), "{e}");
        // enough bytes: the next window starts
        rate.stop();
        rate.time_left();
        rate.received(100);
        rate.current = rate
            .current
            .map(|(t, n)| (t - std::time::Duration::from_secs(2), n));
        assert!(rate.check().is_ok());
        assert_eq!(rate.current.map(|(_, n)| n), Some(0));
        // off
        let mut off = RateWindow {
            min_per_sec: 0,
            ..RateWindow::new(&config)
        };
        assert_eq!(off.time_left(), None);
        assert!(off.check().is_ok());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_obj(&[("a", "x\"y\\z\n")]), "{\"a\":\"x\\\"y\\\\z?\"}");
    }
}
