//! The server-rendered pages (maud escapes every value it is given). No JavaScript: forms post
//! with the session's CSRF token in a hidden field; the overview and disks pages refresh
//! themselves every 10 s with a meta refresh.

use crate::api::{self, Q};
use crate::auth::Session;
use crate::data::{self, human_bytes, human_secs, AuditFilter, StudySearch};
use crate::routes::Perm;
use crate::settings::{PeerSetting, SettingsChange};
use crate::{blocking, session_cookie, words, Caller, Panel, WebError};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use cairn_alarm::AlarmState;
use cairn_raid::{Blocked, MemberState};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(crate) fn router() -> Router<Panel> {
    Router::new()
        .route("/", get(overview))
        .route("/disks", get(disks).post(disks_post))
        .route("/archive", get(archive).post(archive_post))
        .route("/studies", get(studies))
        .route("/studies/{uid}", get(study))
        .route("/audit", get(audit))
        .route("/audit.csv", get(audit_csv))
        .route("/settings", get(settings_page).post(settings_post))
        .route("/alarm/silence", post(silence_post))
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout_post))
        .route("/setup", get(setup_page).post(setup_post))
        .route("/static/panel.css", get(css))
}

const CSS: &str = include_str!("panel.css");

async fn css() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}

/// What every page needs: who is looking and the alarm.
struct Ctx {
    session: Option<Session>,
    alarm: AlarmState,
    path: &'static str,
}

async fn ctx(panel: &Panel, caller: &Caller, path: &'static str) -> Ctx {
    let p = panel.clone();
    let alarm = blocking(move || data::alarm(&p.0.data))
        .await
        .unwrap_or_default();
    Ctx {
        session: caller.session.clone(),
        alarm,
        path,
    }
}

const NAV: &[(&str, &str, Perm)] = &[
    ("/", "Overview", Perm::Any),
    ("/disks", "Disks", Perm::Any),
    ("/archive", "Archive", Perm::Any),
    ("/studies", "Studies", Perm::Patients),
    ("/audit", "Audit", Perm::Admin),
    ("/settings", "Settings", Perm::Admin),
];

fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

fn banner(c: &Ctx) -> Markup {
    let Some(s) = &c.session else {
        return html! {};
    };
    let sounding: Vec<_> = c.alarm.events.iter().filter(|e| !e.silenced).collect();
    let quiet: Vec<_> = c.alarm.events.iter().filter(|e| e.silenced).collect();
    html! {
        @if !sounding.is_empty() {
            div.banner.alarm role="alert" id="alarm-banner" {
                div.msg {
                    strong { "Alarm: " }
                    @for (i, e) in sounding.iter().enumerate() {
                        @if i > 0 { "; " }
                        (words::without_device_names(&e.message))
                    }
                }
                form method="post" action="/alarm/silence" {
                    (csrf_field(s))
                    input type="hidden" name="back" value=(c.path);
                    button.silence type="submit" id="silence" { "Silence" }
                }
            }
        } @else if !quiet.is_empty() {
            div.banner.quiet id="alarm-banner" {
                div.msg {
                    "Alarm silenced: "
                    @for (i, e) in quiet.iter().enumerate() {
                        @if i > 0 { "; " }
                        (words::without_device_names(&e.message))
                        @if let Some(by) = &e.silenced_by { " (by " (by) ")" }
                    }
                    ". It stays on screen until the cause is fixed."
                }
            }
        }
    }
}

fn layout(c: &Ctx, title: &str, refresh: bool, body: Markup) -> Markup {
    layout_every(c, title, refresh.then_some("10"), body)
}

/// The page frame; `refresh`: the meta refresh's content (`"3"`: reload every 3 s;
/// `"15; url=/settings"`).
fn layout_every(c: &Ctx, title: &str, refresh: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(r) = refresh { meta http-equiv="refresh" content=(r); }
                title { (title) " · cairn" }
                link rel="stylesheet" href="/static/panel.css";
            }
            body {
                header.top {
                    a.brand href="/" { "cairn" }
                    @if let Some(s) = &c.session {
                        nav {
                            @for (href, label, perm) in NAV {
                                @if perm.allows(s.role) {
                                    a href=(href) class=@if *href == c.path { "here" } { (label) }
                                }
                            }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(s))
                            span.who { (s.username) " · " (s.role.as_str()) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                (banner(c))
                main { (body) }
            }
        }
    }
}

fn page(c: &Ctx, title: &str, refresh: bool, body: Markup) -> Response {
    page_every(c, title, refresh.then_some("10"), body)
}

/// A page with a meta refresh of `refresh` (see [`layout_every`]; none: never).
fn page_every(c: &Ctx, title: &str, refresh: Option<&str>, body: Markup) -> Response {
    axum::response::Html(layout_every(c, title, refresh, body).into_string()).into_response()
}

/// An error as a page (the authorisation layer uses it too).
pub(crate) fn error_page(session: Option<Session>, e: WebError) -> Response {
    let c = Ctx {
        session,
        alarm: AlarmState::default(),
        path: "",
    };
    let status = e.status();
    let msg = e.public_message();
    let mut r = (
        status,
        axum::response::Html(
            layout(
                &c,
                "Problem",
                false,
                html! {
                    section.card {
                        h1 { "That did not work" }
                        p.error { (msg) }
                        p { a href="/" { "Back to the overview" } }
                    }
                },
            )
            .into_string(),
        ),
    )
        .into_response();
    if let WebError::TooManyRequests { retry_after } = e {
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// The time zone the pages show times in (`http.time_zone`, read from the configuration
/// each time so that a change applies at once; UTC when there is none).
async fn box_time_zone(panel: &Panel) -> jiff::tz::TimeZone {
    match api::current_settings(panel).await {
        Ok(s) => words::time_zone(&s.time_zone),
        Err(_) => jiff::tz::TimeZone::UTC,
    }
}

fn fail(c: &Ctx, e: WebError) -> Response {
    error_page(c.session.clone(), e)
}

fn bar(percent: f64, label: &str) -> Markup {
    bar_saying(percent, label, "")
}

/// A progress bar whose figure is followed by a word ("42.0 % used").
fn bar_saying(percent: f64, label: &str, word: &str) -> Markup {
    let p = percent.clamp(0.0, 100.0);
    html! {
        div.progress {
            progress max="100" value=(format!("{p:.1}")) aria-label=(label) {}
            span { (format!("{p:.1} %")) @if !word.is_empty() { " " (word) } }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Overview

async fn overview(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    let c = ctx(&panel, &caller, "/").await;
    let p = panel.clone();
    let o = match blocking(move || data::overview(&p.0.data)).await {
        Ok(o) => o,
        Err(e) => return fail(&c, e),
    };
    let st = &o.storage;
    let tz = box_time_zone(&panel).await;
    let rebuild = o.raid.as_ref().and_then(|r| {
        r.arrays
            .iter()
            .find(|a| a.progress.as_ref().is_some_and(|p| p.is_rebuild()))
    });
    let used_pct = if st.total_bytes > 0 {
        (st.total_bytes - st.free_bytes) as f64 * 100.0 / st.total_bytes as f64
    } else {
        0.0
    };
    page(
        &c,
        "Overview",
        true,
        html! {
            section class={"verdict " (o.health.state)} id="verdict" {
                h1 { (words::without_device_names(&o.health.headline)) }
                @if !o.health.action.is_empty() {
                    p.action { (words::without_device_names(&o.health.action)) }
                }
                @if let Some(p) = rebuild.as_ref().and_then(|a| a.progress.as_ref()) {
                    div.rebuild id="rebuild" {
                        (bar(p.percent, "rebuild"))
                        @match p.eta_secs {
                            Some(eta) => p.eta { "about " (human_secs(eta)) " left" },
                            None => p.eta { "working out the time left" },
                        }
                    }
                }
                @if !o.health.action_page.is_empty() {
                    a.button href=(o.health.action_page) { "Show me what to do" }
                }
            }
            div.tiles {
                section.tile {
                    h2 { "Storage" }
                    p.big { (human_bytes(st.free_bytes)) " free" }
                    (bar_saying(used_pct, "storage used", "used"))
                    p.small { (human_bytes(st.images_bytes.max(0) as u64)) " of images; "
                        (human_bytes(st.total_bytes)) " in all" }
                }
                section.tile {
                    h2 { "Images received today" }
                    p.big id="images-today" { (o.images_today) }
                    p.small id="images-stored" { (words::count(o.instances, "image", "images")) " stored in all, in " (words::count(o.studies, "study", "studies")) }
                }
                section.tile {
                    h2 { "Last verified archive copy" }
                    @match &o.last_verified_copy {
                        Some(t) => p.big { (words::local_time(t, &tz).get(0..16).unwrap_or("")) },
                        None => p.big { "none yet" },
                    }
                    p.small { a href="/archive" { "Archive" } }
                }
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Disks

fn state_word(s: MemberState) -> &'static str {
    match s {
        MemberState::InSync => "working",
        MemberState::Rebuilding => "rebuilding",
        MemberState::Spare => "spare",
        MemberState::Faulty => "FAILED",
        MemberState::Missing => "missing",
        MemberState::Other => "other",
    }
}

fn disks_body(c: &Ctx, raid: &data::Raid, message: Option<&str>) -> Markup {
    let can_act = c
        .session
        .as_ref()
        .is_some_and(|s| Perm::Disks.allows(s.role));
    let member = |bay: u32| {
        raid.arrays.iter().find_map(|a| {
            a.members
                .iter()
                .find(|m| m.bay == Some(bay))
                .map(|m| (a, m))
        })
    };
    let faulty: Vec<u32> = raid
        .arrays
        .iter()
        .flat_map(|a| a.members.iter())
        .filter(|m| matches!(m.state, MemberState::Faulty))
        .filter_map(|m| m.bay)
        .collect();
    let empty_bays: Vec<u32> = raid
        .bays
        .iter()
        .filter(|b| b.device.is_none())
        .map(|b| b.bay)
        .collect();
    let rebuilding = raid.arrays.iter().find(|a| a.rebuild_percent.is_some());
    let blocked = raid.blocked.first();
    let step = if !faulty.is_empty() && c.alarm.sounding() {
        1
    } else if !faulty.is_empty() {
        2
    } else if !empty_bays.is_empty() || blocked.is_some() {
        3
    } else if rebuilding.is_some() {
        4
    } else {
        0
    };
    let swap_bay = faulty
        .first()
        .or(empty_bays.first())
        .copied()
        .or(blocked.map(|b| match b {
            Blocked::NeedsConfirmation { bay, .. } | Blocked::TooSmall { bay, .. } => *bay,
        }));
    html! {
        @if let Some(m) = message { p.notice { (m) } }
        h1 { "Disks" }
        div.bays id="bays" {
            @for b in &raid.bays {
                @let m = member(b.bay);
                @let cls = match m.map(|(_, m)| m.state) {
                    _ if b.device.is_none() => "bay empty",
                    Some(MemberState::Faulty) => "bay failed",
                    Some(MemberState::Rebuilding) => "bay rebuilding",
                    Some(MemberState::InSync) => "bay ok",
                    _ => "bay other",
                };
                div class=(cls) data-bay=(b.bay) {
                    div.num { "Bay " (b.bay) }
                    div.state {
                        @if b.device.is_none() { "empty" }
                        @else if let Some((_, m)) = m { (state_word(m.state)) }
                        @else { "not in the array" }
                    }
                    @if let Some(size) = b.size_bytes { div.small { (human_bytes(size)) } }
                    @if let Some((_, m)) = m {
                        @if matches!(m.state, MemberState::Faulty | MemberState::Missing) {
                            // md has given up on it: whatever SMART last said, it is not ok
                            div class="smart failing" { "failed: replace this disk" }
                        } @else if let Some(sm) = &m.smart {
                            @let v = serde_json::to_value(sm.verdict).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                            div class={"smart " (v)} { "SMART " (v) }
                        }
                    }
                    @if b.fault { div.led { "fault light on" } }
                }
            }
        }
        @for a in &raid.arrays {
            section.card {
                h2 { (a.name) " · " (a.level) " · " (a.health.as_str()) }
                @if let Some(p) = &a.progress {
                    @let what = if p.is_rebuild() { "Rebuild" } else { "Scrub (checking every disk)" };
                    p { (what) }
                    (bar(p.percent, what))
                    @if let Some(eta) = p.eta_secs { p.small { "about " (human_secs(eta)) " left" } }
                }
                @if a.mismatch_cnt > 0 { p.small { "last scrub counted " (a.mismatch_cnt) " mismatched sectors" } }
                @for m in &a.members {
                    @if let Some(sm) = &m.smart {
                        @for w in &sm.warnings {
                            p.warning { "Bay " (m.bay.map_or("?".to_string(), |b| b.to_string())) ": " (w) }
                        }
                    }
                }
            }
        }
        section.card.wizard id="swap" {
            h2 { "Replacing a disk" }
            @if step == 0 { p { "Every disk works. Nothing to do." } }
            ol {
                li class=@if step == 1 { "now" } { "Silence the alarm (the button at the top)." }
                li class=@if step == 2 { "now" } {
                    "Pull the failed disk"
                    @if let Some(b) = swap_bay { " in bay " (b) }
                    ". Its fault light is on."
                    @if can_act && step == 2 {
                        @if let (Some(b), Some(s)) = (swap_bay, &c.session) {
                            form.inline method="post" action="/disks" {
                                (csrf_field(s))
                                input type="hidden" name="bay" value=(b);
                                button type="submit" name="action" value="locate" { "Light bay " (b) }
                                button type="submit" name="action" value="remove" { "Take it out of the array first" }
                            }
                        }
                    }
                }
                li class=@if step == 3 { "now" } {
                    "Slide in a new disk at least as large. A blank disk is added by itself."
                    @if let Some(Blocked::NeedsConfirmation { bay, .. }) = blocked {
                        p.warning { "The disk in bay " (bay) " is not blank." }
                        @if can_act {
                            @if let Some(s) = &c.session {
                                form.inline method="post" action="/disks" {
                                    (csrf_field(s))
                                    input type="hidden" name="bay" value=(bay);
                                    button type="submit" name="action" value="confirm" { "Wipe it and use it" }
                                }
                            }
                        }
                    }
                    @if let Some(Blocked::TooSmall { bay, .. }) = blocked {
                        p.warning { "The disk in bay " (bay) " is too small: use a larger one." }
                    }
                }
                li class=@if step == 4 { "now" } {
                    "Wait for the rebuild to reach 100 %. Leave every disk in place."
                    @if let Some(a) = rebuilding { (bar(a.rebuild_percent.unwrap_or(0.0), "rebuild")) }
                }
            }
        }
    }
}

async fn disks_view(panel: &Panel, c: &Ctx, message: Option<&str>) -> Response {
    let p = panel.clone();
    match blocking(move || data::raid(&p.0.data)).await {
        Ok(Some(r)) => page(c, "Disks", message.is_none(), disks_body(c, &r, message)),
        Ok(None) => page(
            c,
            "Disks",
            false,
            html! { h1 { "Disks" } p { "No disk monitor runs on this box: there is no disk status to show." } },
        ),
        Err(e) => fail(c, e),
    }
}

async fn disks(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    let c = ctx(&panel, &caller, "/disks").await;
    disks_view(&panel, &c, None).await
}

#[derive(Deserialize)]
struct DiskForm {
    action: String,
    bay: u32,
}

async fn disks_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<DiskForm>,
) -> Response {
    let msg = api::disk_action(&panel, &caller, &f.action, f.bay).await;
    let c = ctx(&panel, &caller, "/disks").await;
    match msg {
        Ok(m) => disks_view(&panel, &c, Some(&m)).await,
        Err(e) => fail(&c, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Archive

/// The archive as the pages and the API show it: `cairn-archive`'s status (targets, drive,
/// volume in the drive, queue, last verified bundle) and its volume list.
pub(crate) fn archive_json(panel: &Panel) -> Result<Value, WebError> {
    let data = &panel.0.data;
    let status = cairn_archive::archive_status(data).map_err(archive_error)?;
    let volumes = cairn_archive::list_volumes(data).map_err(archive_error)?;
    let mut v = serde_json::to_value(&status).map_err(|e| WebError::Internal(e.to_string()))?;
    v["available"] = json!(!status.targets.is_empty() || !volumes.is_empty());
    v["volumes"] = serde_json::to_value(&volumes).map_err(|e| WebError::Internal(e.to_string()))?;
    v["last_verified_copy"] = json!(data::last_verified_copy(data));
    Ok(v)
}

fn archive_error(e: cairn_archive::ArchiveError) -> WebError {
    match e.kind() {
        cairn_archive::ErrorKind::Refused => WebError::Conflict(e.to_string()),
        cairn_archive::ErrorKind::MediumNeeded => WebError::Conflict(e.to_string()),
        _ => WebError::Internal(e.to_string()),
    }
}

/// How long an eject may take: it flushes and verifies the open bundle first.
const EJECT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

fn has_targets(panel: &Panel) -> Result<bool, WebError> {
    Ok(!cairn_archive::archive_status(&panel.0.data)
        .map_err(archive_error)?
        .targets
        .is_empty())
}

/// Hand a request to the daemon's archive thread (the same call `cairnctl archive` makes).
async fn archive_request(
    panel: &Panel,
    req: cairn_archive::Request,
    wait: std::time::Duration,
) -> Result<String, WebError> {
    let p = panel.clone();
    blocking(move || {
        if !has_targets(&p)? {
            return Err(WebError::Unavailable(
                "no tape or disc drive is configured on this box".into(),
            ));
        }
        let a = cairn_archive::request(&p.0.data, &req, wait)
            .map_err(|e| WebError::Unavailable(format!("the archive did not answer: {e}")))?;
        if a.ok {
            Ok(a.message)
        } else {
            Err(WebError::Conflict(a.message))
        }
    })
    .await
}

/// Eject the volume of a target (answers once its open bundle is written and verified).
pub(crate) async fn archive_eject(
    panel: &Panel,
    caller: &Caller,
    target: Option<String>,
    location: Option<String>,
) -> Result<String, WebError> {
    if let Some(l) = &location {
        if cairn_archive::Location::parse(l).is_none_or(|l| l == cairn_archive::Location::InDrive) {
            return Err(WebError::BadRequest(
                "location is onsite_shelf, offsite_vault, returned or retired".into(),
            ));
        }
    }
    let req = cairn_archive::Request::Eject {
        target,
        location,
        by: caller.actor(),
    };
    archive_request(panel, req, EJECT_WAIT).await
}

/// Take the medium now in a drive into use.
pub(crate) async fn archive_load(
    panel: &Panel,
    caller: &Caller,
    target: Option<String>,
) -> Result<String, WebError> {
    let req = cairn_archive::Request::Load {
        target,
        by: caller.actor(),
    };
    archive_request(panel, req, std::time::Duration::from_secs(120)).await
}

/// Record where a volume is (in-process through the store's writer; audited by the archive
/// crate).
pub(crate) async fn archive_location(
    panel: &Panel,
    caller: &Caller,
    volume: &str,
    location: &str,
) -> Result<String, WebError> {
    let loc = cairn_archive::Location::parse(location).ok_or_else(|| {
        WebError::BadRequest("location is onsite_shelf, offsite_vault, returned or retired".into())
    })?;
    let (p, v, by) = (panel.clone(), volume.to_string(), caller.actor());
    blocking(move || cairn_archive::set_location(&p.0.store, &v, loc, &by).map_err(archive_error))
        .await?;
    Ok(format!(
        "{volume} is now recorded as {}",
        location.replace('_', " ")
    ))
}

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
    match blocking(move || archive_json(&p)).await {
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

async fn archive(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    let c = ctx(&panel, &caller, "/archive").await;
    archive_view(&panel, &c, None).await
}

#[derive(Deserialize)]
struct ArchiveForm {
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    volume: String,
    #[serde(default)]
    location: String,
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

async fn archive_post(
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
                        archive_eject(&p, &who, target, location).await
                    } else {
                        archive_load(&p, &who, target).await
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
        "location" => archive_location(&panel, &caller, &f.volume, &f.location).await,
        _ => Err(WebError::BadRequest("unknown archive action".into())),
    };
    let c = ctx(&panel, &caller, "/archive").await;
    match r {
        Ok(m) => archive_view(&panel, &c, Some(&m)).await,
        Err(e) => fail(&c, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Studies

/// A DICOM person name for people: `DOE^JOHN` -> `DOE, JOHN`.
fn person(pn: &str) -> String {
    let first = pn.split('=').next().unwrap_or("");
    let parts: Vec<&str> = first.split('^').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [] => String::new(),
        [family] => family.to_string(),
        [family, rest @ ..] => format!("{family}, {}", rest.join(" ")),
    }
}

/// A DICOM date `YYYYMMDD` as `YYYY-MM-DD`; anything else (received text need not be digits)
/// is shown as received.
fn date(d: &str) -> String {
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8])
    } else {
        d.to_string()
    }
}

async fn studies(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Q(s): Q<StudySearch>,
) -> Response {
    let c = ctx(&panel, &caller, "/studies").await;
    let searched = !s.is_empty();
    let form = s.clone();
    let result = if searched {
        let p = panel.clone();
        Some(blocking(move || data::search_studies(&p.0.data, &s)).await)
    } else {
        None
    };
    let (hits, more, error) = match result {
        Some(Ok((h, m))) => (h, m, None),
        Some(Err(e)) => (Vec::new(), false, Some(e.public_message())),
        None => (Vec::new(), false, None),
    };
    page(
        &c,
        "Studies",
        false,
        html! {
            h1 { "Studies" }
            form.search method="get" action="/studies" {
                label { "Patient name" input type="search" name="name" value=(form.name) autocomplete="off"; }
                label { "Patient ID" input type="search" name="id" value=(form.id) autocomplete="off"; }
                label { "Date (YYYYMMDD or range)" input type="search" name="date" value=(form.date) placeholder="20240101-20240131"; }
                label { "Modality" input type="search" name="modality" value=(form.modality) placeholder="CT"; }
                label { "Accession" input type="search" name="accession" value=(form.accession); }
                button type="submit" { "Search" }
            }
            @if let Some(e) = error { p.error { (e) } }
            @if searched {
                p.small id="study-count" { (hits.len()) " found" @if more { " (more: narrow the search)" } }
                table.studies id="studies" {
                    thead { tr { th { "Date" } th { "Patient" } th { "ID" } th { "Modality" } th { "Accession" } th { "Description" } th { "Images" } } }
                    tbody {
                        @for h in &hits {
                            tr {
                                td { a href={"/studies/" (h.study_uid)} { (date(&h.date)) } }
                                td.patient { a href={"/studies/" (h.study_uid)} { (person(&h.patient_name)) } }
                                td { (h.patient_id) }
                                td { (h.modalities) }
                                td { (h.accession) }
                                td { (h.description) }
                                td { (h.instances) }
                            }
                        }
                    }
                }
            } @else {
                p.small { "Type part of a name, an ID, a date, a modality or an accession number." }
            }
        },
    )
}

async fn study(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> Response {
    let c = ctx(&panel, &caller, "/studies").await;
    let p = panel.clone();
    let d = match blocking(move || data::study(&p.0.data, &uid)).await {
        Ok(d) => d,
        Err(e) => return fail(&c, e),
    };
    let s = &d.study;
    page(
        &c,
        "Study",
        false,
        html! {
            h1.patient { (person(&s.patient_name)) }
            dl.facts {
                dt { "Patient ID" } dd { (s.patient_id) }
                dt { "Study date" } dd { (date(&s.date)) }
                dt { "Accession" } dd { (s.accession) }
                dt { "Description" } dd { (s.description) }
                dt { "Size" } dd { (human_bytes(d.bytes as u64)) " in " (s.instances) " images" }
                dt { "Kept until" } dd { @match &d.retention_until { Some(r) => (r), None => "no retention rule set: kept" } }
                dt { "Study UID" } dd.uid { (s.study_uid) }
            }
            @if !d.conflicts.is_empty() {
                h2 { "Values that differ between images" }
                p.small { "The first value received is kept. Later images carried these; check which is right." }
                table id="conflicts" {
                    thead { tr { th { "Field" } th { "Kept" } th { "Received" } th { "Received at" } } }
                    tbody {
                        @for cf in &d.conflicts {
                            tr {
                                td { (cf.label) }
                                td { (cf.kept) }
                                td { (cf.received) @if cf.reason == "invalid" { " (not a valid value: not used)" } }
                                td { (cf.received_at) }
                            }
                        }
                    }
                }
            }
            h2 { "Series" }
            table {
                thead { tr { th { "#" } th { "Modality" } th { "Description" } th { "Images" } th { "Size" } } }
                tbody {
                    @for se in &d.series {
                        tr { td { (se.number) } td { (se.modality) } td { (se.description) } td { (se.instances) } td { (human_bytes(se.bytes as u64)) } }
                    }
                }
            }
            h2 { "Copies" }
            table {
                thead { tr { th { "Where" } th { "Images" } th { "Checked" } } }
                tbody {
                    @for cp in &d.copies {
                        tr { td { (cp.place) } td { (cp.instances) } td { @if cp.verified { "verified" } @else { "not yet verified" } } }
                    }
                }
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Audit

/// Rows on one page of the Audit page.
const AUDIT_PAGE_ROWS: usize = 50;

async fn audit(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Q(mut f): Q<AuditFilter>,
) -> Response {
    let c = ctx(&panel, &caller, "/audit").await;
    let tz_name = api::current_settings(&panel)
        .await
        .map_or_else(|_| "UTC".to_string(), |s| s.time_zone);
    let tz = words::time_zone(&tz_name);
    f.limit = Some(AUDIT_PAGE_ROWS);
    // From and To are days where the box is, like the times shown.
    f.days_in = Some(tz_name.clone());
    let page_no = f.page.unwrap_or(1);
    let p = panel.clone();
    let ff = f.clone();
    let r = blocking(move || {
        Ok((
            data::audit_rows(&p.0.data, &ff)?,
            data::audit_count(&p.0.data, &ff)?,
            data::audit_actions(&p.0.data)?,
        ))
    })
    .await;
    let (rows, count, actions) = match r {
        Ok(x) => x,
        Err(e) => return fail(&c, e),
    };
    let pages = (count.max(0) as usize).div_ceil(AUDIT_PAGE_ROWS).max(1);
    // The filters travel in every link: paging, the CSV export, a bookmark.
    let query = |page: Option<usize>| {
        let mut q = vec![
            ("actor", f.actor.clone()),
            ("action", f.action.clone()),
            ("from", f.from.clone()),
            ("to", f.to.clone()),
        ];
        if let Some(p) = page {
            q.push(("page", p.to_string()));
        }
        serde_urlencoded::to_string(q).unwrap_or_default()
    };
    page(
        &c,
        "Audit",
        false,
        html! {
            h1 { "Audit trail" }
            form.search method="get" action="/audit" {
                label { "Person" input type="search" name="actor" value=(f.actor) placeholder="user:alice"; }
                label { "Action"
                    select name="action" {
                        option value="" { "any" }
                        @for a in &actions { option value=(a) selected[*a == f.action] { (a) } }
                    }
                }
                label { "From" input type="date" name="from" value=(f.from); }
                label { "To" input type="date" name="to" value=(f.to); }
                button type="submit" { "Filter" }
                a.button href={"/audit.csv?" (query(None))} download="cairn-audit.csv" id="csv" { "Export CSV" }
            }
            p.small id="audit-count" { (count) " entries, page " (page_no) " of " (pages) "; times in " (tz_name) }
            table.audit id="audit" {
                thead { tr { th { "#" } th { "When (" (tz_name) ")" } th { "Who" } th { "What" } th { "On" } th { "Details" } } }
                tbody {
                    @for r in &rows {
                        tr data-seq=(r.seq) { td { (r.seq) } td.when { (words::local_time(&r.at, &tz)) } td { (r.actor) } td { (r.action) } td.uid { (r.object) } td.detail { (words::audit_detail(&r.action, &r.object, &r.detail)) } }
                    }
                }
            }
            div.pages {
                @if page_no > 1 { a.button href={"/audit?" (query(Some(page_no - 1)))} id="newer" { "Newer" } }
                span { "page " (page_no) " of " (pages) }
                @if page_no < pages { a.button href={"/audit?" (query(Some(page_no + 1)))} id="older" { "Older" } }
            }
        },
    )
}

async fn audit_csv(State(panel): State<Panel>, Q(mut f): Q<AuditFilter>) -> Response {
    f.format = "csv".into();
    // The page's export: the same days as the page shows (the API's are UTC days).
    f.days_in = api::current_settings(&panel)
        .await
        .ok()
        .map(|s| s.time_zone);
    match api::audit_response(&panel, f).await {
        Ok(r) => r,
        Err(e) => error_page(None, e),
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

async fn settings_view(panel: &Panel, c: &Ctx, message: Option<(bool, String)>) -> Response {
    let s = api::current_settings(panel).await;
    let p = panel.clone();
    let users = blocking(move || p.0.auth.users()).await.unwrap_or_default();
    let restart = api::restart_offered(panel);
    let Some(session) = &c.session else {
        return fail(c, WebError::Unauthorized);
    };
    page(
        c,
        "Settings",
        false,
        html! {
            @if let Some((ok, m)) = &message { p class=@if *ok { "notice" } @else { "error" } id="settings-message" { (m) } }
            h1 { "Settings" }
            @if restart {
                section.card.restart-offer {
                    form method="post" action="/settings" {
                        (csrf_field(session))
                        input type="hidden" name="op" value="restart";
                        p { "Saved settings wait for a restart of the box. It takes about 10 seconds; devices sending images meanwhile try again by themselves." }
                        button type="submit" id="restart" { "Restart the box now" }
                    }
                }
            }
            @match &s {
                Err(e) => p.error { (e.public_message()) },
                Ok(s) => {
                    section.card {
                        h2 { "DICOM" }
                        form method="post" action="/settings" {
                            (csrf_field(session))
                            input type="hidden" name="op" value="dicom";
                            label { "AE title of this box" input type="text" name="ae_title" value=(s.ae_title) maxlength="16" required; }
                            label.check { input type="checkbox" name="accept_unknown_peers" value="true" checked[s.accept_unknown_peers]; "Accept devices not listed below" }
                            label { "Check every disk every (days, 0 = never)" input type="number" name="scrub_interval_days" min="0" max="365" value=(s.scrub_interval_days); }
                            label { "Write waiting images to the archive at least every (seconds)" input type="number" name="archive_max_age_secs" min="1" value=(s.archive_max_age_secs); }
                            label { "Log out after idle (seconds)" input type="number" name="session_idle_secs" min="60" max="86400" value=(s.session_idle_secs); }
                            label { "Time zone of the times shown (applies at once)" input type="text" name="time_zone" value=(s.time_zone) list="time-zones" autocomplete="off" required; }
                            datalist id="time-zones" { @for z in jiff::tz::db().available() { option value=(z.as_str()) {} } }
                            button type="submit" { "Save" }
                            p.small { "Saved to the configuration file. The time zone applies at once; the rest when the box restarts." }
                        }
                    }
                    section.card {
                        h2 { "Devices (peers)" }
                        table id="peers" {
                            thead { tr { th { "AE title" } th { "Host" } th { "Port" } th { "Store" } th { "Query" } th { "Retrieve" } th { "" } } }
                            tbody {
                                @for p in &s.peers {
                                    tr {
                                        td { (p.ae) } td { (p.host) } td { (p.port) }
                                        td { @if p.store { "yes" } } td { @if p.query { "yes" } } td { @if p.retrieve { "yes" } }
                                        td { form.inline method="post" action="/settings" {
                                            (csrf_field(session))
                                            input type="hidden" name="op" value="remove-peer";
                                            input type="hidden" name="ae" value=(p.ae);
                                            button type="submit" { "Remove" }
                                        } }
                                    }
                                }
                            }
                        }
                        form method="post" action="/settings" {
                            (csrf_field(session))
                            input type="hidden" name="op" value="add-peer";
                            label { "AE title" input type="text" name="ae" maxlength="16" required; }
                            label { "Host" input type="text" name="host" required; }
                            label { "Port" input type="number" name="port" min="1" max="65535" value="104" required; }
                            label.check { input type="checkbox" name="store" value="true"; "may send images" }
                            label.check { input type="checkbox" name="query" value="true"; "may query" }
                            label.check { input type="checkbox" name="retrieve" value="true"; "may retrieve" }
                            button type="submit" { "Add device" }
                        }
                    }
                }
            }
            section.card {
                h2 { "Users" }
                table id="users" {
                    thead { tr { th { "Name" } th { "Role" } th { "State" } th { "" } } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { (u.username) } td { (u.role.as_str()) } td { @if u.disabled { "disabled" } @else { "active" } }
                                td { form.inline method="post" action="/settings" {
                                    (csrf_field(session))
                                    input type="hidden" name="op" value="user-role";
                                    input type="hidden" name="username" value=(u.username);
                                    select name="role" aria-label="role" {
                                        @for r in crate::auth::Role::ALL { option value=(r.as_str()) selected[r == u.role] { (r.as_str()) } }
                                    }
                                    button type="submit" { "Set role" }
                                    @if u.disabled {
                                        button type="submit" name="disabled" value="false" { "Enable" }
                                    } @else {
                                        button type="submit" name="disabled" value="true" { "Disable" }
                                    }
                                } }
                            }
                        }
                    }
                }
                form method="post" action="/settings" {
                    (csrf_field(session))
                    input type="hidden" name="op" value="add-user";
                    label { "Name" input type="text" name="username" maxlength="32" required pattern="[a-z0-9._-]+"; }
                    label { "Role"
                        select name="role" { @for r in crate::auth::Role::ALL { option value=(r.as_str()) { (r.as_str()) } } }
                    }
                    label { "Password (10 characters or more)" input type="password" name="password" minlength="10" required autocomplete="new-password"; }
                    button type="submit" { "Add user" }
                }
            }
        },
    )
}

async fn settings_page(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let c = ctx(&panel, &caller, "/settings").await;
    settings_view(&panel, &c, None).await
}

async fn settings_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let flag = |k: &str| f.get(k).is_some_and(|v| v == "true");
    if f.get("op").is_some_and(|op| op == "restart") {
        let r = api::restart(&panel, &caller).await;
        let c = ctx(&panel, &caller, "/settings").await;
        return match r {
            Ok(()) => page_every(
                &c,
                "Restarting",
                Some("15; url=/settings"),
                html! {
                    section.card.narrow id="restarting" {
                        h1 { "Restarting the box" }
                        p { "The box stops cleanly and starts again with the saved settings. This page comes back by itself in about 15 seconds." }
                        p.small { a href="/settings" { "Back to the settings" } }
                    }
                },
            ),
            Err(e) => {
                let status = e.status();
                let mut resp = settings_view(&panel, &c, Some((false, e.public_message()))).await;
                *resp.status_mut() = status;
                resp
            }
        };
    }
    let r: Result<String, WebError> = async {
        match get("op").as_str() {
            "dicom" => {
                let num = |k: &str| -> Result<u64, WebError> {
                    get(k)
                        .parse()
                        .map_err(|_| WebError::BadRequest(format!("{k}: a whole number")))
                };
                let ch = SettingsChange {
                    ae_title: Some(get("ae_title")),
                    accept_unknown_peers: Some(flag("accept_unknown_peers")),
                    scrub_interval_days: Some(
                        u32::try_from(num("scrub_interval_days")?)
                            .map_err(|_| WebError::BadRequest("scrub interval too large".into()))?,
                    ),
                    session_idle_secs: Some(num("session_idle_secs")?),
                    archive_max_age_secs: Some(num("archive_max_age_secs")?),
                    time_zone: f.contains_key("time_zone").then(|| get("time_zone")),
                    peers: None,
                };
                let changed = api::change_settings(&panel, &caller, ch).await?;
                Ok(if changed.is_empty() {
                    "Nothing changed.".to_string()
                } else if changed
                    .iter()
                    .all(|(k, _, _)| crate::settings::applies_at_once(k))
                {
                    "Saved: in use now.".to_string()
                } else {
                    "Saved. The box uses the new settings after its next start.".to_string()
                })
            }
            op @ ("add-peer" | "remove-peer") => {
                let mut peers = api::current_settings(&panel).await?.peers;
                if op == "add-peer" {
                    let port = get("port")
                        .parse()
                        .map_err(|_| WebError::BadRequest("port: 1 to 65535".into()))?;
                    peers.push(PeerSetting {
                        ae: get("ae"),
                        host: get("host"),
                        port,
                        store: flag("store"),
                        query: flag("query"),
                        retrieve: flag("retrieve"),
                    });
                } else {
                    let ae = get("ae");
                    peers.retain(|p| p.ae != ae);
                }
                api::change_settings(
                    &panel,
                    &caller,
                    SettingsChange {
                        peers: Some(peers),
                        ..Default::default()
                    },
                )
                .await?;
                Ok("Saved. The box uses the new device list after its next start.".to_string())
            }
            "add-user" => {
                let name = get("username");
                api::create_user(
                    &panel,
                    &caller,
                    &name,
                    &get("role"),
                    f.get("password").map_or("", |s| s),
                )
                .await?;
                Ok(format!("User {name} added."))
            }
            "user-role" => {
                let name = get("username");
                let ch = api::UserChange {
                    role: if f.contains_key("disabled") {
                        None
                    } else {
                        Some(get("role"))
                    },
                    password: None,
                    disabled: f.get("disabled").map(|v| v == "true"),
                };
                api::update_user(&panel, &caller, &name, ch).await?;
                Ok(format!("User {name} changed."))
            }
            _ => Err(WebError::BadRequest("unknown settings action".into())),
        }
    }
    .await;
    let c = ctx(&panel, &caller, "/settings").await;
    let (status, msg) = match r {
        Ok(m) => (StatusCode::OK, (true, m)),
        Err(e) => (e.status(), (false, e.public_message())),
    };
    let mut resp = settings_view(&panel, &c, Some(msg)).await;
    *resp.status_mut() = status;
    resp
}

// ---------------------------------------------------------------------------------------------
// Alarm, login, logout, setup

#[derive(Deserialize)]
struct SilenceForm {
    #[serde(default)]
    back: String,
}

/// Where the Silence form returns: one of the panel's own pages (the navigation's paths,
/// exactly), else the overview. Nothing the client sent is echoed into `Location`.
fn safe_back(b: &str) -> &'static str {
    NAV.iter()
        .map(|(href, _, _)| *href)
        .find(|href| *href == b)
        .unwrap_or("/")
}

async fn silence_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<SilenceForm>,
) -> Response {
    match api::silence(&panel, &caller, None).await {
        Ok(_) => Redirect::to(safe_back(&f.back)).into_response(),
        Err(e) => error_page(caller.session.clone(), e),
    }
}

fn login_body(message: Option<&str>, username: &str) -> Markup {
    html! {
        section.card.narrow {
            h1 { "Log in" }
            @if let Some(m) = message { p.error id="login-error" { (m) } }
            form method="post" action="/login" {
                label { "User name" input type="text" name="username" value=(username) autocomplete="username" autocapitalize="none" required autofocus; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        }
    }
}

async fn login_page(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    if panel.setup_code().is_some() {
        return Redirect::to("/setup").into_response();
    }
    if caller.session.is_some() {
        return Redirect::to("/").into_response();
    }
    let c = Ctx {
        session: None,
        alarm: AlarmState::default(),
        path: "/login",
    };
    page(&c, "Log in", false, login_body(None, ""))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<LoginForm>,
) -> Response {
    match api::login(&panel, &caller.address, &f.username, &f.password).await {
        Ok(l) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&panel, &l.token));
            r
        }
        Err(e) => {
            let c = Ctx {
                session: None,
                alarm: AlarmState::default(),
                path: "/login",
            };
            let name = if crate::auth::valid_username(&f.username).is_ok() {
                f.username.as_str()
            } else {
                ""
            };
            let mut r = page(
                &c,
                "Log in",
                false,
                login_body(Some(&e.public_message()), name),
            );
            *r.status_mut() = e.status();
            r
        }
    }
}

async fn logout_post(State(panel): State<Panel>, Extension(caller): Extension<Caller>) -> Response {
    let _ = api::logout(&panel, &caller).await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&panel, ""));
    r
}

fn setup_body(message: Option<&str>) -> Markup {
    html! {
        section.card.narrow {
            h1 { "Welcome: set up the box" }
            p { "cairnd printed a one-time setup code on its console when it started. Type it here, then choose the administrator's name and password." }
            @if let Some(m) = message { p.error id="setup-error" { (m) } }
            form method="post" action="/setup" {
                label { "Setup code" input type="text" name="code" inputmode="numeric" autocomplete="off" required autofocus placeholder="0000-0000-0000"; }
                label { "Administrator name" input type="text" name="username" value="admin" autocapitalize="none" required pattern="[a-z0-9._-]+"; }
                label { "Password (10 characters or more)" input type="password" name="password" minlength="10" required autocomplete="new-password"; }
                label { "Password again" input type="password" name="password2" minlength="10" required autocomplete="new-password"; }
                button type="submit" { "Create the administrator" }
            }
        }
    }
}

async fn setup_page(State(panel): State<Panel>) -> Response {
    if panel.setup_code().is_none() {
        return Redirect::to("/login").into_response();
    }
    let c = Ctx {
        session: None,
        alarm: AlarmState::default(),
        path: "/setup",
    };
    page(&c, "Setup", false, setup_body(None))
}

#[derive(Deserialize)]
struct SetupForm {
    code: String,
    username: String,
    password: String,
    password2: String,
}

async fn setup_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<SetupForm>,
) -> Response {
    let r = if f.password != f.password2 {
        Err(WebError::BadRequest("the two passwords differ".into()))
    } else {
        api::setup(&panel, &caller.address, &f.code, &f.username, &f.password).await
    };
    match r {
        Ok(l) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&panel, &l.token));
            r
        }
        Err(WebError::Conflict(_)) => Redirect::to("/login").into_response(),
        Err(e) => {
            let c = Ctx {
                session: None,
                alarm: AlarmState::default(),
                path: "/setup",
            };
            let mut r = page(&c, "Setup", false, setup_body(Some(&e.public_message())));
            *r.status_mut() = e.status();
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_people() {
        assert_eq!(person("DOE^JOHN^^^"), "DOE, JOHN");
        assert_eq!(person("DOE"), "DOE");
        assert_eq!(date("20240131"), "2024-01-31");
        assert_eq!(date("123é567"), "123é567");
        assert_eq!(safe_back("//evil"), "/");
        assert_eq!(safe_back("/disks"), "/disks");
        assert_eq!(safe_back("/\t/evil.example"), "/");
    }
}
