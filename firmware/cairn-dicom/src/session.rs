//! One association's message loop: PDUs in, command sets and data sets assembled, each
//! request handed to its service (`services/`), until release, abort or shutdown. Also the
//! bounds on what a peer may send: PDU and object sizes, the idle timeout and the transfer
//! rate of a message (`session/rate.rs`).

mod rate;

use crate::association::{abort_reason, Association, Ending};
use crate::audit_detail::json_obj;
use crate::commitment;
use crate::dimse::{self, command, status, Command, CommandError, Refusal, MAX_COMMAND_BYTES};
use crate::pdu::{self, types, PduError};
use crate::refusal_audit::{kind_of, RefusalEvent};
use crate::services::query;
use crate::services::store::Receiving;
use crate::syntax::QrService;
use cairn_audit::AuditEvent;
use rate::RateWindow;
use std::sync::atomic::Ordering;

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

impl Association<'_> {
    /// Run until release, abort or shutdown.
    pub(crate) fn run(mut self) {
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
                RefusalEvent {
                    action: "abort",
                    actor: format!("ae:{}", self.neg.calling_ae),
                    peer: self.peer,
                    kind: kind_of(why),
                    reason: outcome.clone(),
                },
            );
        } else {
            tracing::info!(%outcome, "association ended");
        }
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
                    if buf.len() + pdv.data.len() > commitment::MAX_REQUEST {
                        return Err(self.abort(
                            abort_reason::INVALID_PDU_PARAMETER,
                            "storage commitment request too large",
                        ));
                    }
                    buf.extend_from_slice(pdv.data);
                }
                if let Sink::Identifier(buf) = &mut d.sink {
                    if buf.len() + pdv.data.len() > query::MAX_IDENTIFIER {
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

    fn dispatch(&mut self, context_id: u8, cmd: Command) -> Result<State, Ending> {
        let field = cmd.field();
        if field == commitment::N_EVENT_REPORT_RSP {
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
            commitment::N_ACTION_RQ if cmd.has_dataset() => Ok(State::Data(Box::new(DataState {
                context_id,
                command: cmd,
                sink: Sink::Commitment(Vec::new()),
                received: 0,
            }))),
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

    /// A C-FIND, C-GET or C-MOVE with its identifier: checked, then run by its service.
    fn query_retrieve(
        &mut self,
        context_id: u8,
        cmd: &Command,
        identifier: &[u8],
    ) -> Result<(), Ending> {
        let rq = match self.qr_request(context_id, cmd, identifier) {
            Ok(rq) => rq,
            Err(refusal) => return self.refuse(context_id, cmd, refusal),
        };
        match rq.service {
            QrService::Find => {
                self.c_find(context_id, cmd, &rq.identifier, &rq.query, &rq.keys_text)
            }
            QrService::Get => self.c_get(context_id, cmd, &rq.query, &rq.keys_text),
            QrService::Move => self.c_move(context_id, cmd, &rq.query, &rq.keys_text),
        }
    }
}
