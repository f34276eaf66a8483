//! The lifecycle parts the pages share: a study's "Keeping these images" card (tier, kept
//! until and why, date of death, legal holds, and the forms that change them), the legal hold
//! table, and how a lifecycle form's outcome is shown.

use super::layout::{csrf_field, Ctx};
use crate::data::{PatientLifecycle, StudyDetail};
use crate::routes::Perm;
use crate::{words, WebError};
use axum::response::Response;
use cairn_lifecycle::HoldRow;
use maud::{html, Markup};

/// How a lifecycle form ended, shown above the page it returns to.
pub(super) enum Outcome {
    /// Done: the sentence.
    Done(String),
    /// Refused or failed: nothing changed.
    Refused(WebError),
}

/// The outcome's notice (nothing when there is none).
pub(super) fn outcome_notice(o: Option<&Outcome>) -> Markup {
    html! {
        @match o {
            Some(Outcome::Done(m)) => p.notice id="lifecycle-message" { (m) },
            Some(Outcome::Refused(e)) => p.error id="lifecycle-error" { (e.public_message()) },
            None => {},
        }
    }
}

/// The page answered with a refusal's status, so that a client sees the form was refused.
pub(super) fn with_status(mut r: Response, o: Option<&Outcome>) -> Response {
    if let Some(Outcome::Refused(e)) = o {
        *r.status_mut() = e.status();
    }
    r
}

/// Whether the one looking may do what `perm` guards.
pub(super) fn may(c: &Ctx, perm: Perm) -> bool {
    c.session.as_ref().is_some_and(|s| perm.allows(s.role))
}

/// A storage tier in words.
pub(super) fn tier_words(tier: &str) -> &'static str {
    match tier {
        "archive" => "archive: copied to tape or disc and checked; fixed, it no longer changes",
        _ => "storage: may still change",
    }
}

/// What a hold is on, in words.
fn hold_on(h: &HoldRow) -> Markup {
    html! {
        @if let Some(uid) = &h.study_uid {
            "study " a href={"/studies/" (uid)} { (uid) }
        } @else {
            "patient " (h.patient_id.as_deref().unwrap_or(""))
            @if let Some(i) = h.issuer.as_deref().filter(|i| !i.is_empty()) { " (issuer " (i) ")" }
        }
    }
}

/// The active holds with a Release form each (for those who may), returning to `back`.
pub(super) fn holds_table(
    c: &Ctx,
    holds: &[HoldRow],
    back: &str,
    tz: &jiff::tz::TimeZone,
) -> Markup {
    let can = may(c, Perm::Records);
    html! {
        table id="holds" {
            thead { tr { th { "Hold" } th { "On" } th { "Placed" } th { "Reason" } @if can { th { "" } } } }
            tbody {
                @for h in holds {
                    tr data-hold=(h.id) {
                        td { (h.id) }
                        td { (hold_on(h)) }
                        td { (words::local_time(&h.placed_at, tz)) " by " (h.placed_by) }
                        td.reason { (h.reason) }
                        @if can {
                            td {
                                @if let Some(s) = &c.session {
                                    form.inline method="post" action="/lifecycle/release" {
                                        (csrf_field(s))
                                        input type="hidden" name="back" value=(back);
                                        input type="hidden" name="id" value=(h.id);
                                        input type="text" name="reason" required placeholder="why it ends" aria-label={"why hold " (h.id) " is released"};
                                        button type="submit" id={"release-" (h.id)} { "Release" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The study page's card: how long the patient's images are kept, why, and what holds them.
pub(super) fn retention_card(c: &Ctx, d: &StudyDetail, tz: &jiff::tz::TimeZone) -> Markup {
    let l: &PatientLifecycle = &d.lifecycle;
    let r = &l.retention;
    let uid = &d.study.study_uid;
    let back = format!("/studies/{uid}");
    let named = !r.patient_id.trim().is_empty();
    html! {
        section.card id="retention" {
            h2 { "Keeping these images" }
            dl.facts {
                dt { "Tier" } dd id="tier" { (tier_words(&d.tier)) }
                dt { "Kept until" } dd id="kept-until" {
                    @match &r.expires_on { Some(day) => (day), None => "no automatic end" }
                }
                dt { "Why" } dd id="retention-reason" { (r.reason) }
                dt { "Date of death" } dd id="death-date" {
                    @match &l.death_date { Some(day) => (day), None => "not recorded" }
                }
                dt { "Rules" } dd { (r.rule_set) }
            }
            @if r.review {
                p.warning id="review" { "Needs review: a date the rules need is missing or wrong. Nothing is destroyed meanwhile." }
            }
            h3 { "Legal holds" }
            @if l.holds.is_empty() {
                p.small id="no-holds" { "No legal hold." }
            } @else {
                (holds_table(c, &l.holds, &back, tz))
            }
            @if may(c, Perm::Records) {
                @if let Some(s) = &c.session {
                    form method="post" action="/lifecycle/hold" id="hold-form" {
                        (csrf_field(s))
                        input type="hidden" name="back" value=(back);
                        input type="hidden" name="study_uid" value=(uid);
                        input type="hidden" name="patient_id" value=(r.patient_id);
                        input type="hidden" name="issuer" value=(r.issuer);
                        @if named {
                            label { "Hold" select name="on" {
                                option value="study" { "this study" }
                                option value="patient" { "every study of this patient" }
                            } }
                        } @else {
                            input type="hidden" name="on" value="study";
                        }
                        label { "Reason (kept in the audit log)" input type="text" name="reason" required; }
                        button type="submit" id="place-hold" { "Place a legal hold" }
                    }
                    @if named {
                        form method="post" action="/lifecycle/death" id="death-form" {
                            (csrf_field(s))
                            input type="hidden" name="back" value=(back);
                            input type="hidden" name="patient_id" value=(r.patient_id);
                            input type="hidden" name="issuer" value=(r.issuer);
                            label { "Date of death" input type="date" name="date"; }
                            @if l.death_date.is_some() {
                                label.check { input type="checkbox" name="clear" value="true"; "Clear the recorded date instead" }
                            }
                            label { "Reason (kept in the audit log)" input type="text" name="reason" required; }
                            button type="submit" id="record-death" { "Record date of death" }
                        }
                    } @else {
                        p.small { "This patient has no ID: a date of death or a hold on the patient cannot be recorded." }
                    }
                }
            }
            @if may(c, Perm::Admin) && d.tier != "archive" {
                @if let Some(s) = &c.session {
                    form method="post" action="/lifecycle/reject" id="reject-form" {
                        (csrf_field(s))
                        input type="hidden" name="study_uid" value=(uid);
                        label { "Reason for rejecting this study (wrong patient, test images)" input type="text" name="reason" required; }
                        button type="submit" id="reject" { "Reject this study" }
                        p.small { "It leaves the box: its images are deleted, a record of what, when, who and why stays." }
                    }
                }
            }
        }
    }
}
