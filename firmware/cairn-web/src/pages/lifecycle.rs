//! The Lifecycle page (studies per tier, what moves to the archive tier soon, the patients due
//! for destruction with their approval forms, the patients to review, the legal holds, the
//! volumes that may be recycled, and a banner when the clock cannot be trusted), and the
//! lifecycle forms of this page and the study page: each calls the shared action and shows
//! the page it came from with the outcome.

use super::form::Fields;
use super::layout::{box_time_zone, csrf_field, ctx, fail, page, Ctx};
use super::retention::{holds_table, may, outcome_notice, with_status, Outcome};
use super::studies::study_view;
use crate::actions::{self, ApproveInput, DeathInput, HoldInput, RejectInput, ReleaseInput};
use crate::data::{self, human_bytes, valid_uid, LifecycleOverview};
use crate::routes::Perm;
use crate::{blocking, Caller, Panel, WebError};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{html, Markup};
use std::collections::HashMap;

/// The Lifecycle page and the lifecycle forms.
pub(super) fn router() -> Router<Panel> {
    Router::new()
        .route("/lifecycle", get(lifecycle))
        .route("/lifecycle/hold", post(hold_post))
        .route("/lifecycle/release", post(release_post))
        .route("/lifecycle/death", post(death_post))
        .route("/lifecycle/approve", post(approve_post))
        .route("/lifecycle/reject", post(reject_post))
}

/// The banner of a clock that cannot be trusted.
fn clock_banner(o: &LifecycleOverview, behind: bool) -> Markup {
    let headline = if behind {
        "The box's clock is behind its audit trail: lifecycle passes are paused until the time is corrected."
    } else {
        "The box's clock cannot be trusted now: lifecycle passes are paused until the time is corrected."
    };
    html! {
        @if !o.clock_ok {
            div.banner.alarm role="alert" id="clock-banner" {
                div.msg {
                    strong { (headline) }
                    @if let Some(p) = &o.clock.problem { p.small.clock-problem { (p) } }
                }
            }
        }
    }
}

fn body(c: &Ctx, o: &LifecycleOverview, tz: &jiff::tz::TimeZone) -> Markup {
    // an approval is refused while the clock is not trusted: none is offered then
    let admin = may(c, Perm::Admin) && o.clock_ok;
    html! {
        h1 { "Lifecycle" }
        section.card id="tiers" {
            h2 { "Where the studies are" }
            p.big { (o.tiers.storage) " in storage, " (o.tiers.archive) " in the archive tier" }
            p.small {
                "Rules: " (o.rule_set) ". A study moves to the archive tier (fixed) " (o.archive_after)
                " after its date, once copied to tape or disc and checked."
                @if let Some(day) = &o.clock.today { " Lifecycle date: " (day) "." }
                @if let Some(days) = o.clock.offset_days { " Demo clock: " (days) " days ahead." }
            }
        }
        section.card id="moving" {
            h2 { "Moving to the archive tier within 90 days" }
            @if o.moving_to_archive.is_empty() { p.small { "None." } } @else {
                table id="moving-table" {
                    thead { tr { th { "On" } th { "Patient ID" } th { "Study" } } }
                    tbody { @for m in &o.moving_to_archive {
                        tr { td { (m.on) } td { (m.patient_id) } td.uid { a href={"/studies/" (m.study_uid)} { (m.study_uid) } } }
                    } }
                }
            }
        }
        section.card id="due" {
            h2 { "Due for destruction" }
            p.small { "Past their last day kept and not held. Nothing is destroyed until an admin approves; every approval is kept with its reason." }
            @if !o.clock_ok && !o.due_for_destruction.is_empty() {
                p.warning id="approval-waits" { "Approval waits until the box's clock is corrected." }
            }
            @if o.due_for_destruction.is_empty() { p.small id="none-due" { "None." } } @else {
                table id="due-table" {
                    thead { tr { th { "Patient ID" } th { "Kept until" } th { "Why" } th { "Studies" } th { "Images" } th { "Size" } @if admin { th { "" } } } }
                    tbody { @for (i, d) in o.due_for_destruction.iter().enumerate() {
                        tr data-patient=(d.patient_id) {
                            td { (d.patient_id) @if !d.issuer.is_empty() { " (" (d.issuer) ")" } }
                            td { (d.expires_on) } td { (d.reason) }
                            td { (d.studies) } td { (d.instances) } td { (human_bytes(d.bytes)) }
                            @if admin { td { @if let Some(s) = &c.session {
                                form.inline method="post" action="/lifecycle/approve" {
                                    (csrf_field(s))
                                    input type="hidden" name="patient_id" value=(d.patient_id);
                                    input type="hidden" name="issuer" value=(d.issuer);
                                    input type="text" name="reason" required placeholder="why" aria-label={"why patient " (d.patient_id) " is destroyed"};
                                    button type="submit" id={"approve-" (i)} { "Approve destruction" }
                                }
                            } } }
                        }
                    } }
                }
                @if admin { @if let Some(s) = &c.session {
                    form method="post" action="/lifecycle/approve" id="approve-all-form" {
                        (csrf_field(s))
                        input type="hidden" name="all" value="true";
                        label { "Reason for approving every patient above" input type="text" name="reason" required; }
                        button type="submit" id="approve-all" { "Approve all" }
                    }
                } }
            }
        }
        section.card id="review" {
            h2 { "To review" }
            p.small { "Their last day kept is unknown (a date is missing or wrong): they are kept until someone looks." }
            @if o.review.is_empty() { p.small { "None." } } @else {
                table id="review-table" {
                    thead { tr { th { "Patient ID" } th { "Why" } } }
                    tbody { @for r in &o.review {
                        tr { td { (r.patient_id) @if !r.issuer.is_empty() { " (" (r.issuer) ")" } } td { (r.reason) } }
                    } }
                }
            }
        }
        section.card id="holds-card" {
            h2 { "Legal holds" }
            @if o.active_holds.is_empty() { p.small { "None. A hold is placed from a study's page." } } @else {
                (holds_table(c, &o.active_holds, "/lifecycle", tz))
            }
        }
        section.card id="recyclable" {
            h2 { "Tapes and discs that may be recycled" }
            @if o.recyclable_volumes.is_empty() { p.small { "None." } } @else {
                ul { @for v in &o.recyclable_volumes { li { (v) } } }
                p.small { "Every image on them was destroyed or rejected." }
            }
        }
    }
}

/// The Lifecycle page, with the outcome of a form above it.
async fn lifecycle_view(panel: &Panel, c: &Ctx, outcome: Option<Outcome>) -> Response {
    let (p, lc) = (panel.clone(), panel.lifecycle());
    let read = blocking(move || {
        let o = data::lifecycle_overview(&p.0.data, &lc)?;
        let behind = !o.clock_ok && data::clock_behind_audit(&p.0.data);
        Ok((o, behind))
    })
    .await;
    let (o, behind) = match read {
        Ok(r) => r,
        Err(e) => return fail(c, e),
    };
    let tz = box_time_zone(panel).await;
    let r = page(
        c,
        "Lifecycle",
        false,
        html! {
            (clock_banner(&o, behind))
            (outcome_notice(outcome.as_ref()))
            (body(c, &o, &tz))
        },
    );
    with_status(r, outcome.as_ref())
}

/// GET /lifecycle.
async fn lifecycle(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    let c = ctx(&panel, &caller, "/lifecycle").await;
    lifecycle_view(&panel, &c, None).await
}

/// Show the page a form came from (`back`: a study's page, else the Lifecycle page) with
/// the form's outcome.
async fn back_to(
    panel: &Panel,
    caller: &Caller,
    back: &str,
    r: Result<String, WebError>,
) -> Response {
    let outcome = Some(match r {
        Ok(m) => Outcome::Done(m),
        Err(e) => Outcome::Refused(e),
    });
    match back.strip_prefix("/studies/") {
        Some(uid) if valid_uid(uid).is_ok() => {
            let c = ctx(panel, caller, "/studies").await;
            study_view(panel, &c, uid.to_owned(), outcome).await
        }
        _ => {
            let c = ctx(panel, caller, "/lifecycle").await;
            lifecycle_view(panel, &c, outcome).await
        }
    }
}

/// A field that may be left out.
fn optional(f: &Fields<'_>, k: &str) -> Option<String> {
    f.has(k).then(|| f.raw(k).to_owned())
}

/// The death form's fields.
fn death_input(f: &Fields<'_>) -> DeathInput {
    DeathInput {
        issuer: optional(f, "issuer"),
        date: optional(f, "date"),
        clear: f.flag("clear"),
        reason: f.get("reason"),
    }
}

/// An approval form's fields.
fn approve_input(f: &Fields<'_>) -> ApproveInput {
    ApproveInput {
        patient_id: optional(f, "patient_id"),
        issuer: optional(f, "issuer"),
        all: f.flag("all"),
        reason: f.get("reason"),
    }
}

/// POST /lifecycle/hold: place a hold on the study (`on=study`) or its patient (`on=patient`).
async fn hold_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    let on_patient = f.get("on") == "patient";
    let input = HoldInput {
        patient_id: optional(&f, "patient_id").filter(|_| on_patient),
        issuer: optional(&f, "issuer").filter(|_| on_patient),
        study_uid: optional(&f, "study_uid").filter(|_| !on_patient),
        reason: f.get("reason"),
    };
    let r = actions::place_hold(&panel, &caller, input).await;
    back_to(&panel, &caller, &f.get("back"), r.map(|(_, m)| m)).await
}

/// POST /lifecycle/release: release hold `id`.
async fn release_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    let r = match f.get("id").parse::<i64>() {
        Ok(id) => {
            let input = ReleaseInput {
                reason: f.get("reason"),
            };
            actions::release(&panel, &caller, id, input).await
        }
        Err(_) => Err(WebError::BadRequest("which hold? (its number)".into())),
    };
    back_to(&panel, &caller, &f.get("back"), r).await
}

/// POST /lifecycle/death: record (`date`) or clear (`clear=true`) a patient's date of death.
async fn death_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    let r = actions::record_death(&panel, &caller, f.get("patient_id"), death_input(&f)).await;
    back_to(&panel, &caller, &f.get("back"), r).await
}

/// POST /lifecycle/approve: approve destruction of one patient or of all due (`all=true`).
async fn approve_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    let r = actions::approve_destruction(&panel, &caller, approve_input(&f)).await;
    back_to(&panel, &caller, "/lifecycle", r.map(|(m, _)| m)).await
}

/// POST /lifecycle/reject: reject a study (or one of its series); back to the Lifecycle page,
/// since the study is gone.
async fn reject_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    let input = RejectInput {
        series_uid: optional(&f, "series_uid"),
        reason: f.get("reason"),
    };
    let study = f.get("study_uid");
    let r = actions::reject_study(&panel, &caller, study.clone(), input).await;
    let back = if r.is_err() && valid_uid(&study).is_ok() {
        format!("/studies/{study}")
    } else {
        "/lifecycle".to_owned()
    };
    back_to(&panel, &caller, &back, r).await
}
