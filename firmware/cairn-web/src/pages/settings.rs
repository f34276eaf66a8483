//! The Settings page: DICOM settings, the devices (peers), the users, and the restart that
//! applies saved settings.

use super::form::Fields;
use super::layout::{csrf_field, ctx, fail, page, page_every, Ctx};
use super::users::{self, users_card};
use crate::settings::{self, PeerSetting, SettingsChange};
use crate::{actions, blocking, read, Caller, Panel, WebError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use maud::html;
use std::collections::HashMap;

/// The page, with the outcome of a form above it.
async fn settings_view(panel: &Panel, c: &Ctx, message: Option<(bool, String)>) -> Response {
    let s = read::current_settings(panel).await;
    let p = panel.clone();
    let users = blocking(move || p.0.auth.users()).await.unwrap_or_default();
    let restart = actions::restart_offered(panel);
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
            (users_card(session, &users))
        },
    )
}

/// GET /settings.
pub(super) async fn settings_page(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let c = ctx(&panel, &caller, "/settings").await;
    settings_view(&panel, &c, None).await
}

/// POST /settings: one of the page's forms, told apart by its `op` field.
pub(super) async fn settings_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let f = Fields(&form);
    if f.raw("op") == "restart" {
        return restart_post(&panel, &caller).await;
    }
    let r = match f.get("op").as_str() {
        "dicom" => dicom_post(&panel, &caller, &f).await,
        op @ ("add-peer" | "remove-peer") => peers_post(&panel, &caller, op, &f).await,
        "add-user" => users::add_user(&panel, &caller, &f).await,
        "user-role" => users::change_user(&panel, &caller, &f).await,
        _ => Err(WebError::BadRequest("unknown settings action".into())),
    };
    let c = ctx(&panel, &caller, "/settings").await;
    let (status, msg) = match r {
        Ok(m) => (StatusCode::OK, (true, m)),
        Err(e) => (e.status(), (false, e.public_message())),
    };
    let mut resp = settings_view(&panel, &c, Some(msg)).await;
    *resp.status_mut() = status;
    resp
}

/// The restart button: a page that comes back by itself once the box is up again.
async fn restart_post(panel: &Panel, caller: &Caller) -> Response {
    let r = actions::restart(panel, caller).await;
    let c = ctx(panel, caller, "/settings").await;
    match r {
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
            let mut resp = settings_view(panel, &c, Some((false, e.public_message()))).await;
            *resp.status_mut() = status;
            resp
        }
    }
}

/// The DICOM card's form.
async fn dicom_post(panel: &Panel, caller: &Caller, f: &Fields<'_>) -> Result<String, WebError> {
    let num = |k: &str| -> Result<u64, WebError> {
        f.get(k)
            .parse()
            .map_err(|_| WebError::BadRequest(format!("{k}: a whole number")))
    };
    let ch = SettingsChange {
        ae_title: Some(f.get("ae_title")),
        accept_unknown_peers: Some(f.flag("accept_unknown_peers")),
        scrub_interval_days: Some(
            u32::try_from(num("scrub_interval_days")?)
                .map_err(|_| WebError::BadRequest("scrub interval too large".into()))?,
        ),
        session_idle_secs: Some(num("session_idle_secs")?),
        archive_max_age_secs: Some(num("archive_max_age_secs")?),
        time_zone: f.has("time_zone").then(|| f.get("time_zone")),
        peers: None,
    };
    let changed = actions::change_settings(panel, caller, ch).await?;
    Ok(if changed.is_empty() {
        "Nothing changed.".to_string()
    } else if changed.iter().all(|(k, _, _)| settings::applies_at_once(k)) {
        "Saved: in use now.".to_string()
    } else {
        "Saved. The box uses the new settings after its next start.".to_string()
    })
}

/// The Devices card's forms: add a peer, or remove one.
async fn peers_post(
    panel: &Panel,
    caller: &Caller,
    op: &str,
    f: &Fields<'_>,
) -> Result<String, WebError> {
    let mut peers = read::current_settings(panel).await?.peers;
    if op == "add-peer" {
        let port = f
            .get("port")
            .parse()
            .map_err(|_| WebError::BadRequest("port: 1 to 65535".into()))?;
        peers.push(PeerSetting {
            ae: f.get("ae"),
            host: f.get("host"),
            port,
            store: f.flag("store"),
            query: f.flag("query"),
            retrieve: f.flag("retrieve"),
        });
    } else {
        let ae = f.get("ae");
        peers.retain(|p| p.ae != ae);
    }
    let ch = SettingsChange {
        peers: Some(peers),
        ..Default::default()
    };
    actions::change_settings(panel, caller, ch).await?;
    Ok("Saved. The box uses the new device list after its next start.".to_string())
}
