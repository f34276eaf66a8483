//! The alarm banner's Silence form.

use super::layout::{error_page, NAV};
use crate::actions::{self, SilenceInput};
use crate::{Caller, Panel};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

/// The Silence form: the page to go back to.
#[derive(Deserialize)]
pub(super) struct SilenceForm {
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

/// POST /alarm/silence: silence, then back to the page the banner was on.
pub(super) async fn silence_post(
    State(panel): State<Panel>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<SilenceForm>,
) -> Response {
    match actions::silence(&panel, &caller, &SilenceInput::default()).await {
        Ok(_) => Redirect::to(safe_back(&f.back)).into_response(),
        Err(e) => error_page(caller.session.clone(), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_only_to_own_pages() {
        assert_eq!(safe_back("//evil"), "/");
        assert_eq!(safe_back("/disks"), "/disks");
        assert_eq!(safe_back("/\t/evil.example"), "/");
    }
}
