//! The Login page, logging in with its form, and logging out.

use super::layout::{page, Ctx};
use crate::actions::{self, Credentials};
use crate::{session_cookie, Caller, Panel};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cairn_alarm::AlarmState;
use maud::{html, Markup};
use serde::Deserialize;

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

/// GET /login (to setup while no account exists, to the overview when logged in).
pub(super) async fn login_page(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
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

/// The login form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
}

/// POST /login: the session cookie and the overview, or the form again with why not.
pub(super) async fn login_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<LoginForm>,
) -> Response {
    let input = Credentials {
        username: f.username,
        password: f.password,
    };
    match actions::login(&panel, &caller, &input).await {
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
            let name = if crate::auth::valid_username(&input.username).is_ok() {
                input.username.as_str()
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

/// POST /logout: the session ends and its cookie expires.
pub(super) async fn logout_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let _ = actions::logout(&panel, &caller).await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&panel, ""));
    r
}
