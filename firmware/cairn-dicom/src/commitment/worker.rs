//! The storage commitment worker: re-checks pending requests, routes decided reports to the
//! association that asked, or delivers them on a new association to the requester (retried
//! every [`RETRY`]).

use super::message::{encode_report, event_report_rq, ReportError};
use super::{decide, Hub, Report, Route, N_EVENT_REPORT_RSP, RETRY, STORAGE_COMMITMENT_PUSH};
use crate::acceptor::printable;
use crate::association_out::{OpenError, OutAssociation, ReadError, Request};
use crate::dimse::status;
use crate::pdu::{self, PduError};
use cairn_config::Config;
use cairn_store::commitment::{self as sc, PendingRequest};
use cairn_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often pending requests are re-checked.
const TICK: Duration = Duration::from_secs(1);
/// Re-checks pending requests every second until `shutdown`: decided ones go to their open
/// association, or out on a new association to the requester.
pub(crate) fn run_worker(
    hub: Arc<Hub>,
    store: Store,
    config: Arc<Config>,
    stop: impl Fn() -> bool,
) {
    if let Err(e) = sc::ensure_schema(&store) {
        tracing::error!(error = %e, "storage commitment tables cannot be created");
    }
    let data = store.data_dir().clone();
    while !stop() {
        std::thread::sleep(TICK);
        let now = sc::unix_now();
        let due = match sc::due_requests(&data, now) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "storage commitment: cannot list pending requests");
                continue;
            }
        };
        for req in due {
            if stop() {
                break;
            }
            let report = match decide(&data, &req, now) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(why) => {
                    tracing::warn!(%why, "storage commitment: cannot decide");
                    continue;
                }
            };
            match hub.route(req.id) {
                Route::Busy => {}
                Route::Outbox(tx) => {
                    if tx.send(req.id).is_err() {
                        hub.forget(req.id);
                    }
                }
                Route::NewAssociation => {
                    deliver_new(&store, &config, &req, &report, now);
                    hub.forget(req.id);
                }
            }
        }
    }
}

fn deliver_new(store: &Store, config: &Config, req: &PendingRequest, report: &Report, now: i64) {
    let outcome = match config.peer(&req.calling_ae) {
        None => Err(DeliveryError::UnknownRequester(printable(&req.calling_ae))),
        Some(peer) => send_on_new_association(
            &peer.host,
            peer.port,
            config.dicom.ae_title.as_str(),
            peer.ae.as_str(),
            &req.transaction_uid,
            report,
        ),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(
                request = req.id,
                event_type = report.event_type,
                "storage commitment reported on a new association"
            );
            if let Err(e) = sc::mark_reported(
                store,
                req.id,
                report.event_type,
                report.committed.len(),
                report.failed.len(),
                "new association",
            ) {
                tracing::error!(error = %e, "cannot record a delivered storage commitment report");
            }
        }
        Err(why) => {
            let give_up = now > req.deadline_unix.saturating_add(86_400);
            tracing::warn!(request = req.id, %why, give_up, "storage commitment report not delivered");
            let why = why.to_string();
            if let Err(e) =
                sc::mark_attempt_failed(store, req.id, now + RETRY.as_secs() as i64, &why, give_up)
            {
                tracing::error!(error = %e, "cannot record a failed delivery");
            }
        }
    }
}

/// Why a report could not be delivered on a new association.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// The requester's AE title has no address (shown printable).
    #[error("requester '{0}' is not in dicom.peers: no address to report to")]
    UnknownRequester(String),
    /// The association could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The requester accepted no storage commitment context.
    #[error("the requester did not accept the storage commitment context")]
    ContextRefused,
    /// The requester refused the box's SCP role.
    #[error("the requester refused the box as SCP of storage commitment")]
    RoleRefused,
    /// The report's data set could not be encoded.
    #[error(transparent)]
    Encode(#[from] ReportError),
    /// The N-EVENT-REPORT-RQ could not be sent.
    #[error("cannot send N-EVENT-REPORT: {0}")]
    Send(std::io::Error),
    /// No N-EVENT-REPORT-RSP came.
    #[error("no N-EVENT-REPORT-RSP: {0}")]
    NoAnswer(PduError),
    /// Another PDU came instead (its type).
    #[error("unexpected PDU 0x{0:02x} instead of N-EVENT-REPORT-RSP")]
    Unexpected(u8),
    /// The answer did not decode.
    #[error("{0}")]
    Undecodable(ReadError),
    /// The requester answered with a status other than success.
    #[error("the requester answered the report with status 0x{0:04X}")]
    Refused(u16),
}

/// Opens an association to the requester as SCP of the class (role selection), sends the
/// N-EVENT-REPORT-RQ, waits for its answer and releases.
fn send_on_new_association(
    host: &str,
    port: u16,
    our_ae: &str,
    their_ae: &str,
    txn: &str,
    report: &Report,
) -> Result<(), DeliveryError> {
    use dicom_ul::pdu::{
        PresentationContextProposed, PresentationContextResultReason, UserVariableItem,
    };
    let (mut out, ac) = OutAssociation::open(Request {
        host,
        port,
        our_ae,
        their_ae,
        contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: STORAGE_COMMITMENT_PUSH.into(),
            transfer_syntaxes: vec![
                crate::syntax::EXPLICIT_LE.into(),
                crate::syntax::IMPLICIT_LE.into(),
            ],
        }],
        scp_role: Some(STORAGE_COMMITMENT_PUSH),
        artim: Duration::from_secs(30),
        idle: Duration::from_secs(30),
    })?;
    let Some(ctx) = ac
        .presentation_contexts
        .iter()
        .find(|r| r.id == 1 && r.reason == PresentationContextResultReason::Acceptance)
    else {
        out.abort_as_provider(0);
        return Err(DeliveryError::ContextRefused);
    };
    let role_refused = ac.user_variables.iter().any(|u| {
        matches!(u, UserVariableItem::ScuScpRoleSelectionSubItem(c, r)
            if c.trim_end_matches(['\0', ' ']) == STORAGE_COMMITMENT_PUSH && !r.scp)
    });
    if role_refused {
        out.abort_as_provider(0);
        return Err(DeliveryError::RoleRefused);
    }
    let ts = ctx
        .transfer_syntax
        .trim_end_matches(['\0', ' '])
        .to_string();
    let body = encode_report(txn, report, &ts)?;
    pdu::send_message(
        &mut out.sock,
        out.peer_max_pdu,
        1,
        &event_report_rq(1, report.event_type),
        Some(&body),
    )
    .map_err(DeliveryError::Send)?;
    // Wait for N-EVENT-REPORT-RSP.
    let code = out
        .read_commands(1 << 20, Some(Duration::from_secs(30)), |c| {
            (c.field() == N_EVENT_REPORT_RSP && c.u16(0x0120) == Some(1))
                .then(|| c.u16(0x0900).unwrap_or(0xC000))
        })
        .map_err(|e| match e {
            ReadError::Pdu(e) => DeliveryError::NoAnswer(e),
            ReadError::NotData(t) => DeliveryError::Unexpected(t),
            other => DeliveryError::Undecodable(other),
        })?;
    // Release (best effort: the report is delivered once the RSP is in).
    out.release();
    if code == status::SUCCESS {
        Ok(())
    } else {
        Err(DeliveryError::Refused(code))
    }
}
