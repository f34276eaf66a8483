//! Lifecycle changes the forms and the API share: legal holds placed and released, dates of
//! death recorded or cleared, destruction approved, studies or series rejected. Each runs in
//! the store's writer through `cairn_lifecycle::run` with the lifecycle crate's own function,
//! so its checks, its change and its audit row (actor `user:<name>`) commit together, or, when
//! refused, nothing does.

use crate::data::{lifecycle_error, lifecycle_today, trusted_today, valid_uid};
use crate::{blocking, Caller, Panel, WebError};
use cairn_lifecycle::death::{set_death, DeathChange};
use cairn_lifecycle::destroy::{run_approval, Approval, DestroyTarget};
use cairn_lifecycle::holds::{add_hold, release_hold, HoldTarget};
use cairn_lifecycle::reject::{reject, RejectTarget, Rejection};
use cairn_lifecycle::LifecycleError;
use serde::Deserialize;

/// A legal hold to place: on a patient (its ID, and the issuer when the ID alone is ambiguous)
/// or on one study; why.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HoldInput {
    /// The patient held.
    pub(crate) patient_id: Option<String>,
    /// That patient's issuer (`""`: none).
    pub(crate) issuer: Option<String>,
    /// The study held.
    pub(crate) study_uid: Option<String>,
    /// Why (kept in the audit log).
    pub(crate) reason: String,
}

/// Why a hold is released (the API's body).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ReleaseInput {
    /// Why (kept in the audit log).
    pub(crate) reason: String,
}

/// A date of death to record (`date`, `YYYYMMDD` or `YYYY-MM-DD`) or to clear (`clear`).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DeathInput {
    /// The patient's issuer, when the ID alone is ambiguous (`""`: none).
    pub(crate) issuer: Option<String>,
    /// The day of death.
    pub(crate) date: Option<String>,
    /// Remove the recorded date instead.
    pub(crate) clear: bool,
    /// Why (kept in the audit log).
    pub(crate) reason: String,
}

/// An approval of destruction: one patient, or every patient due (`all`); why.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ApproveInput {
    /// The patient.
    pub(crate) patient_id: Option<String>,
    /// That patient's issuer, when the ID alone is ambiguous.
    pub(crate) issuer: Option<String>,
    /// Every patient due now.
    pub(crate) all: bool,
    /// Why (kept on the destruction record and in the audit log).
    pub(crate) reason: String,
}

/// A rejection of the study named in the path, or of one of its series; why.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RejectInput {
    /// One series of the study (absent: the whole study).
    pub(crate) series_uid: Option<String>,
    /// Why (kept on the tombstone and in the audit log).
    pub(crate) reason: String,
}

/// A value that was filled in (absent and blank are the same).
fn filled(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Run `change` in the store's writer; a refusal keeps its sentence and changes nothing.
async fn in_writer<T: Send + 'static>(
    panel: &Panel,
    change: impl FnOnce(
            &rusqlite::Connection,
            &str,
        ) -> Result<(T, Vec<cairn_audit::AuditEvent>), LifecycleError>
        + Send
        + 'static,
) -> Result<T, WebError> {
    let store = panel.0.store.clone();
    blocking(move || cairn_lifecycle::run(&store, change).map_err(lifecycle_error)).await
}

/// Place a legal hold; returns its number and the sentence.
pub(crate) async fn place_hold(
    panel: &Panel,
    caller: &Caller,
    input: HoldInput,
) -> Result<(i64, String), WebError> {
    let target = HoldTarget::from_parts(
        filled(input.patient_id),
        input.issuer.map(|i| i.trim().to_owned()),
        filled(input.study_uid),
    )
    .map_err(lifecycle_error)?;
    let on = target.to_string();
    let (why, by) = (input.reason, caller.actor());
    let id = in_writer(panel, move |c, now| add_hold(c, now, &target, &why, &by)).await?;
    Ok((id, format!("hold {id} placed on {on}")))
}

/// Release hold `id`.
pub(crate) async fn release(
    panel: &Panel,
    caller: &Caller,
    id: i64,
    input: ReleaseInput,
) -> Result<String, WebError> {
    let (why, by) = (input.reason, caller.actor());
    in_writer(panel, move |c, now| release_hold(c, now, id, &why, &by)).await?;
    Ok(format!("hold {id} released"))
}

/// A day typed as `YYYY-MM-DD` (a browser's date field) in the `YYYYMMDD` the index keeps;
/// anything else as typed (the lifecycle's check names what is wrong with it).
fn compact_date(d: &str) -> String {
    let b = d.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        d.replace('-', "")
    } else {
        d.to_owned()
    }
}

/// Record or clear the date of death of patient `patient_id`.
pub(crate) async fn record_death(
    panel: &Panel,
    caller: &Caller,
    patient_id: String,
    input: DeathInput,
) -> Result<String, WebError> {
    let date = match (filled(input.date), input.clear) {
        (Some(d), false) => Some(compact_date(&d)),
        (None, true) => None,
        _ => {
            return Err(WebError::BadRequest(
                "give either the date of death (YYYYMMDD) or clear, not both or neither".into(),
            ))
        }
    };
    let change = DeathChange {
        patient_id,
        issuer: input.issuer.map(|i| i.trim().to_owned()),
        date,
        reason: input.reason,
        by: caller.actor(),
    };
    let today = lifecycle_today(&panel.0.data);
    in_writer(panel, move |c, now| set_death(c, now, today, &change)).await
}

/// Approve destruction of one patient or of every patient due; returns the sentence and, for
/// one patient, its destruction record.
pub(crate) async fn approve_destruction(
    panel: &Panel,
    caller: &Caller,
    input: ApproveInput,
) -> Result<(String, Option<i64>), WebError> {
    let target = DestroyTarget::from_parts(
        filled(input.patient_id),
        input.issuer.map(|i| i.trim().to_owned()),
        input.all,
    )
    .map_err(|_| {
        WebError::BadRequest(
            "approve either one patient (patient_id) or every patient due (all), not both".into(),
        )
    })?;
    let approval = Approval {
        target,
        reason: input.reason,
        by: caller.actor(),
    };
    let lc = panel.lifecycle();
    let (store, data) = (panel.0.store.clone(), panel.0.data.clone());
    blocking(move || {
        // a clock behind the audit trail decides nothing
        let today = trusted_today(&data, lc.require_sync)?;
        run_approval(&store, &lc.rules, today, approval).map_err(lifecycle_error)
    })
    .await
}

/// Reject study `study_uid`, or one of its series.
pub(crate) async fn reject_study(
    panel: &Panel,
    caller: &Caller,
    study_uid: String,
    input: RejectInput,
) -> Result<String, WebError> {
    valid_uid(&study_uid)?;
    let target = match filled(input.series_uid) {
        Some(series) => RejectTarget::Series(series),
        None => RejectTarget::Study(study_uid.clone()),
    };
    let r = Rejection {
        target,
        reason: input.reason,
        by: caller.actor(),
    };
    let words = in_writer(panel, move |c, now| {
        if let RejectTarget::Series(series) = &r.target {
            let of = cairn_lifecycle::tombstone::study_of_series(c, series)?;
            if of.is_none_or(|s| s.study_uid != study_uid) {
                return Err(LifecycleError::BadRequest(format!(
                    "study {study_uid} has no series with UID {series:?}"
                )));
            }
        }
        reject(c, now, &r)
    })
    .await?;
    let store = panel.0.store.clone();
    // the removed files go once the removal is durable; a failure here is finished at the
    // next start
    let _ = blocking(move || {
        match store.finish_unlinks() {
            Ok(n) => tracing::info!(files = n, "rejected object files deleted"),
            Err(e) => tracing::error!(error = %e, "rejected object files not deleted yet"),
        }
        Ok(())
    })
    .await;
    Ok(words)
}
