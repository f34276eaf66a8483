//! The server-rendered pages (maud escapes every value it is given), one module a screen, over
//! the shared actions ([`crate::actions`]) and read models. No JavaScript: forms post with the
//! session's CSRF token in a hidden field; the overview and disks pages refresh themselves
//! every 10 s with a meta refresh.

mod alarm;
mod archive;
mod audit;
mod disks;
mod form;
mod layout;
mod lifecycle;
mod login;
mod overview;
mod retention;
mod settings;
mod setup;
mod studies;
mod users;

use crate::Panel;
use alarm::silence_post;
use archive::{archive, archive_post};
use audit::{audit, audit_csv};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use disks::{disks, disks_post};
use login::{login_page, login_post, logout_post};
use overview::overview;
use settings::{settings_page, settings_post};
use setup::{setup_page, setup_post};
use studies::{studies, study};

pub(crate) use archive::ArchiveJob;
pub(crate) use layout::error_page;

/// Every page's route (the authorisation layer is added by the panel).
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
        .merge(lifecycle::router())
}

const CSS: &str = include_str!("../panel.css");

async fn css() -> Response {
    let mut r = CSS.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r
}
