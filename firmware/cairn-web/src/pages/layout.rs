//! The frame every page shares: the header with its navigation and logout, the alarm banner,
//! error pages, progress bars and the time zone the pages show times in.

use crate::auth::Session;
use crate::routes::Perm;
use crate::{blocking, data, read, words, Caller, Panel, WebError};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use cairn_alarm::AlarmState;
use maud::{html, Markup, DOCTYPE};

/// What every page needs: who is looking and the alarm.
pub(super) struct Ctx {
    /// The session, when logged in.
    pub(super) session: Option<Session>,
    /// The alarm, for the banner.
    pub(super) alarm: AlarmState,
    /// The page's own path (the navigation marks it).
    pub(super) path: &'static str,
}

/// The context of a page at `path` for this caller (the alarm read now).
pub(super) async fn ctx(panel: &Panel, caller: &Caller, path: &'static str) -> Ctx {
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

/// The navigation: path, label and who sees it.
pub(super) const NAV: &[(&str, &str, Perm)] = &[
    ("/", "Overview", Perm::Any),
    ("/disks", "Disks", Perm::Any),
    ("/archive", "Archive", Perm::Any),
    ("/studies", "Studies", Perm::Patients),
    ("/lifecycle", "Lifecycle", Perm::Patients),
    ("/audit", "Audit", Perm::Admin),
    ("/settings", "Settings", Perm::Admin),
];

/// The hidden field that carries the session's CSRF token in a form.
pub(super) fn csrf_field(s: &Session) -> Markup {
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

/// A page, refreshed every 10 s when `refresh`.
pub(super) fn page(c: &Ctx, title: &str, refresh: bool, body: Markup) -> Response {
    page_every(c, title, refresh.then_some("10"), body)
}

/// A page with a meta refresh of `refresh` (see [`layout_every`]; none: never).
pub(super) fn page_every(c: &Ctx, title: &str, refresh: Option<&str>, body: Markup) -> Response {
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
pub(super) async fn box_time_zone(panel: &Panel) -> jiff::tz::TimeZone {
    match read::current_settings(panel).await {
        Ok(s) => words::time_zone(&s.time_zone),
        Err(_) => jiff::tz::TimeZone::UTC,
    }
}

/// An error as a page, for this page's session.
pub(super) fn fail(c: &Ctx, e: WebError) -> Response {
    error_page(c.session.clone(), e)
}

/// A progress bar with its figure.
pub(super) fn bar(percent: f64, label: &str) -> Markup {
    bar_saying(percent, label, "")
}

/// A progress bar whose figure is followed by a word ("42.0 % used").
pub(super) fn bar_saying(percent: f64, label: &str, word: &str) -> Markup {
    let p = percent.clamp(0.0, 100.0);
    html! {
        div.progress {
            progress max="100" value=(format!("{p:.1}")) aria-label=(label) {}
            span { (format!("{p:.1} %")) @if !word.is_empty() { " " (word) } }
        }
    }
}
