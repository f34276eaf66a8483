//! The Archive page: the tape and disc drives, their queues and volumes; eject, load and a
//! volume's location. An eject or load that outlasts the form's answer runs on, followed by
//! the page.

use super::layout::{bar, box_time_zone, csrf_field, ctx, fail, page_every, Ctx};
use crate::actions::{self, EjectInput, LoadInput, LocationInput};
use crate::data::human_bytes;
use crate::routes::Perm;
use crate::{blocking, read, words, Caller, Panel, WebError};
use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

fn archive_body(c: &Ctx, a: &Value, message: Option<&str>, tz: &jiff::tz::TimeZone) -> Markup {
    let can = c
        .session
        .as_ref()
        .is_some_and(|s| Perm::Media.allows(s.role));
    let empty = Vec::new();
    let vols = a["volumes"].as_array().unwrap_or(&empty);
    let targets = a["targets"].as_array().unwrap_or(&empty);
    let total = a["instances_total"].as_i64().unwrap_or(0);
    let verified = a["instances_verified"].as_i64().unwrap_or(0);
    html! {
        @if let Some(m) = message { p.notice id="archive-message" { (m) } }
        h1 { "Archive" }
        @if a["available"] != json!(true) {
            section.card { p { "This box has no tape or disc archive configured." } }
        } @else {
            section.card {
                h2 { "Copies on tape and disc" }
                p.big { (verified) " of " (total) " images are copied and checked" }
                @if total > 0 { (bar(verified as f64 * 100.0 / total as f64, "images copied and checked")) }
            }
            @for t in targets {
                @let name = t["name"].as_str().unwrap_or("");
                section.card.target data-target=(name) {
                    @let kind = t["kind"].as_str().unwrap_or("");
                    @let activity = t["activity"].as_str().unwrap_or("");
                    @let queued = t["queue"]["instances"].as_i64().unwrap_or(0);
                    h2 { @if kind == "optical" { "Disc" } @else { "Tape" } " drive"
                        @if !name.eq_ignore_ascii_case(words::medium(kind)) && !name.eq_ignore_ascii_case(kind) { " " (name) }
                        ": " (words::plain_state(t["drive"].as_str().unwrap_or(""))) }
                    @if t["medium_needed"] == json!(true) { p.warning { "Load a new " @if t["kind"] == json!("optical") { "disc" } @else { "tape" } "." } }
                    @if let Some(m) = t["message"].as_str().filter(|m| !m.is_empty()) { p { (words::archive_message(m, kind)) } }
                    @if words::archive_busy(activity) {
                        div.work id={"archive-work-" (name)} {
                            p { strong { (words::archive_activity(activity, kind, queued)) } }
                            progress aria-label={"the " (words::medium(kind)) " drive at work"} {}
                            p.small { "This page follows the work by itself." }
                        }
                    } @else {
                        p.small { "Now: " (words::archive_activity(activity, kind, queued)) }
                    }
                    @if let Some(e) = t["last_error"].as_str() { p.error { (e) } }
                    @let v = &t["volume"];
                    @if let Some(vname) = v["name"].as_str() {
                        p { "In the drive: " strong { (vname) } " (" (words::volume_state(v["state"].as_str().unwrap_or(""))) ")" }
                        @let written = v["bytes_written"].as_u64().unwrap_or(0);
                        @if let Some(cap) = v["capacity_bytes"].as_u64().filter(|c| *c > 0) {
                            (bar(written as f64 * 100.0 / cap as f64, "fill level"))
                            p.small { (human_bytes(written)) " of " (human_bytes(cap)) }
                        } @else { p.small { (human_bytes(written)) " written" } }
                    } @else { p { "No " (words::medium(kind)) " in the drive." } }
                    p { (t["queue"]["instances"].as_i64().unwrap_or(0)) " images ("
                        (human_bytes(t["queue"]["bytes"].as_u64().unwrap_or(0))) ") wait to be copied and checked"
                        @if let Some(o) = t["queue"]["oldest_queued_at"].as_str() { "; the oldest since " (words::local_time(o, tz)) } }
                    @if let Some(at) = t["last_verified"]["verified_at"].as_str() {
                        p.small { "Last copy written and checked: " (words::local_time(at, tz)) }
                    }
                    @if can {
                        @if let Some(s) = &c.session {
                            form.inline method="post" action="/archive" {
                                (csrf_field(s))
                                input type="hidden" name="target" value=(name);
                                @if v["volume_id"].is_string() {
                                    select name="location" aria-label="where the ejected volume goes" {
                                        @for l in ["onsite_shelf", "offsite_vault"] { option value=(l) { (l.replace('_', " ")) } }
                                    }
                                    button type="submit" name="action" value="eject" id={"eject-" (name)} { "Copy what waits, check it, then eject" }
                                } @else {
                                    button type="submit" name="action" value="load" id={"load-" (name)} { "Take the " (words::medium(kind)) " in the drive into use" }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Volumes" }
                table id="volumes" {
                    thead { tr { th { "Tape or disc" } th { "Kind" } th { "State" } th { "Where" } th { "Images checked" } th { "Filled" } @if can { th { "" } } } }
                    tbody {
                        @for v in vols {
                            @let id = v["volume_id"].as_str().unwrap_or("");
                            tr data-volume=(id) {
                                td.name { (v["name"].as_str().unwrap_or(id)) }
                                td { (v["kind"].as_str().unwrap_or("")) }
                                td.state { (words::volume_state(v["state"].as_str().unwrap_or(""))) }
                                td.location { (v["location"].as_str().unwrap_or("").replace('_', " ")) }
                                td { (v["verified_copies"].as_i64().unwrap_or(0)) }
                                td { (human_bytes(v["bytes_written"].as_u64().unwrap_or(0)))
                                    @if let Some(cap) = v["capacity_bytes"].as_u64() { " of " (human_bytes(cap)) } }
                                @if can {
                                    td {
                                        @if v["location"] != json!("in_drive") {
                                            @if let Some(s) = &c.session {
                                                form.inline method="post" action="/archive" {
                                                    (csrf_field(s))
                                                    input type="hidden" name="volume" value=(v["name"].as_str().unwrap_or(id));
                                                    select name="location" aria-label="location" {
                                                        @for l in ["onsite_shelf", "offsite_vault", "returned", "retired"] {
                                                            option value=(l) selected[v["location"] == json!(l)] { (l.replace('_', " ")) }
                                                        }
                                                    }
                                                    button type="submit" name="action" value="location" { "Set location" }
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
        }
    }
}

async fn archive_view(panel: &Panel, c: &Ctx, message: Option<&str>) -> Response {
    let p = panel.clone();
    // An eject or load still running shows with a bar; one that ended shows its outcome once.
    let job = match panel.0.archive_job.lock() {
        Ok(mut g) => match &*g {
            ArchiveJob::Running(w) => Some((None, w.clone())),
            ArchiveJob::Done(..) => match std::mem::take(&mut *g) {
                ArchiveJob::Done(ok, m) => Some((Some(ok), m)),
                _ => None,
            },
            ArchiveJob::None => None,
        },
        Err(_) => None,
    };
    let (running, ended) = match &job {
        Some((None, w)) => (Some(w.as_str()), None),
        Some((Some(ok), m)) => (None, Some((*ok, m.as_str()))),
        None => (None, None),
    };
    let message = message.or(ended.filter(|e| e.0).map(|e| e.1));
    let failed = ended.filter(|e| !e.0).map(|e| e.1);
    match blocking(move || read::archive_json(&p)).await {
        Ok(a) => {
            // While a drive writes or checks, the page follows it; while images wait, it
            // looks again now and then. Never after an action (its message would go).
            let targets = a["targets"].as_array().cloned().unwrap_or_default();
            let busy = targets
                .iter()
                .any(|t| words::archive_busy(t["activity"].as_str().unwrap_or("")));
            let waiting = targets
                .iter()
                .any(|t| t["queue"]["instances"].as_i64().unwrap_or(0) > 0);
            let busy = busy || running.is_some();
            let refresh = match (message.or(failed), busy, waiting) {
                (Some(_), _, _) => None,
                (None, true, _) => Some("3"),
                (None, false, true) => Some("15"),
                _ => None,
            };
            let tz = box_time_zone(panel).await;
            let body = html! {
                @if let Some(e) = failed { p.error id="archive-error" { (e) } }
                @if let Some(w) = running {
                    div.work id="archive-job" {
                        p { strong { (w) } }
                        progress aria-label="the archive at work" {}
                        p.small { "This page follows it by itself and says when it is done." }
                    }
                }
                (archive_body(c, &a, message, &tz))
            };
            page_every(c, "Archive", refresh, body)
        }
        Err(e) => fail(c, e),
    }
}

/// GET /archive.
pub(super) async fn archive(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let c = ctx(&panel, &caller, "/archive").await;
    archive_view(&panel, &c, None).await
}

/// An eject or load the Archive page started: while it runs the page shows it with a bar and
/// follows it; its outcome is shown once on the next view.
#[derive(Debug, Default)]
pub(crate) enum ArchiveJob {
    /// Nothing outlasted its answer.
    #[default]
    None,
    /// Running: what, in words.
    Running(String),
    /// Ended: the message, and whether it was done.
    Done(bool, String),
}

/// How long the Archive page waits for an eject or load before it answers "started" (an
/// eject first writes and checks what waits: minutes on a real drive).
const ARCHIVE_FORM_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn set_job(panel: &Panel, job: ArchiveJob) {
    if let Ok(mut g) = panel.0.archive_job.lock() {
        *g = job;
    }
}

/// The Archive page's forms: eject, load, or a volume's location.
#[derive(Deserialize)]
pub(super) struct ArchiveForm {
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    volume: String,
    #[serde(default)]
    location: String,
}

/// POST /archive: eject or load (answered "started" when it outlasts a short wait), or set
/// a volume's location.
pub(super) async fn archive_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<ArchiveForm>,
) -> Response {
    let target = Some(f.target.clone()).filter(|t| !t.is_empty());
    let r = match f.action.as_str() {
        action @ ("eject" | "load") => {
            let busy = matches!(
                panel.0.archive_job.lock().as_deref(),
                Ok(ArchiveJob::Running(_))
            );
            if busy {
                Err(WebError::Conflict(
                    "the archive is still busy with the last eject or load".into(),
                ))
            } else {
                let what = if action == "eject" {
                    "Ejecting: the box copies what waits, checks it, then unloads the medium."
                } else {
                    "Taking the medium in the drive into use."
                };
                set_job(&panel, ArchiveJob::Running(what.into()));
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (p, who) = (panel.clone(), caller.clone());
                let location = Some(f.location.clone()).filter(|l| !l.is_empty());
                let eject = action == "eject";
                tokio::spawn(async move {
                    let r = if eject {
                        actions::eject(&p, &who, EjectInput { target, location }).await
                    } else {
                        actions::load(&p, &who, LoadInput { target }).await
                    };
                    match tx.send(r) {
                        Ok(()) => set_job(&p, ArchiveJob::None),
                        // The page answered "started": the next view shows the outcome.
                        Err(r) => set_job(
                            &p,
                            match r {
                                Ok(m) => ArchiveJob::Done(true, m),
                                Err(e) => ArchiveJob::Done(false, e.public_message()),
                            },
                        ),
                    }
                });
                match tokio::time::timeout(ARCHIVE_FORM_WAIT, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(WebError::Internal("archive task ended".into())),
                    Err(_) => {
                        let c = ctx(&panel, &caller, "/archive").await;
                        return archive_view(&panel, &c, None).await;
                    }
                }
            }
        }
        "location" => {
            let input = LocationInput {
                volume: f.volume.clone(),
                location: f.location.clone(),
            };
            actions::set_location(&panel, &caller, &input).await
        }
        _ => Err(WebError::BadRequest("unknown archive action".into())),
    };
    let c = ctx(&panel, &caller, "/archive").await;
    match r {
        Ok(m) => archive_view(&panel, &c, Some(&m)).await,
        Err(e) => fail(&c, e),
    }
}
