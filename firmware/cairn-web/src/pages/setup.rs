//! The first boot's Setup page: the setup code and the first administrator.

use super::layout::{page, Ctx};
use crate::actions::{self, SetupInput};
use crate::{session_cookie, Caller, Panel, WebError};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cairn_alarm::AlarmState;
use maud::{html, Markup};
use serde::Deserialize;

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

/// GET /setup (to the login once an account exists).
pub(super) async fn setup_page(State(panel): State<Panel>) -> Response {
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

/// The setup form: the code, the first admin, the password twice.
#[derive(Deserialize)]
pub(super) struct SetupForm {
    code: String,
    username: String,
    password: String,
    password2: String,
}

/// POST /setup: the first admin and their session, or the form again with why not.
pub(super) async fn setup_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<SetupForm>,
) -> Response {
    let r = if f.password != f.password2 {
        Err(WebError::BadRequest("the two passwords differ".into()))
    } else {
        let input = SetupInput {
            code: f.code,
            username: f.username,
            password: f.password,
        };
        actions::setup(&panel, &caller, &input).await
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
