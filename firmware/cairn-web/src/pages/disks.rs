//! The Disks page: the bays, the arrays, and the disk swap's steps as a wizard.

use super::layout::{bar, csrf_field, ctx, fail, page, Ctx};
use crate::actions::{self, DiskInput};
use crate::data::{self, human_bytes, human_secs};
use crate::routes::Perm;
use crate::{blocking, Caller, Panel};
use axum::extract::State;
use axum::response::Response;
use axum::{Extension, Form};
use cairn_raid::{Blocked, MemberState};
use maud::{html, Markup};
use serde::Deserialize;

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

/// GET /disks.
pub(super) async fn disks(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let c = ctx(&panel, &caller, "/disks").await;
    disks_view(&panel, &c, None).await
}

/// The disk swap's form: a step and its bay.
#[derive(Deserialize)]
pub(super) struct DiskForm {
    action: String,
    bay: u32,
}

/// POST /disks: one step of the disk swap.
pub(super) async fn disks_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<DiskForm>,
) -> Response {
    let msg = actions::disk_action(
        &panel,
        &caller,
        &DiskInput {
            action: f.action,
            bay: f.bay,
        },
    )
    .await;
    let c = ctx(&panel, &caller, "/disks").await;
    match msg {
        Ok(m) => disks_view(&panel, &c, Some(&m)).await,
        Err(e) => fail(&c, e),
    }
}
