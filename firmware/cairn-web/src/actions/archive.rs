//! Requests to the archive: eject a volume, take a medium into use, record where a volume is.

use crate::read::archive_error;
use crate::{blocking, Caller, Panel, WebError};
use serde::Deserialize;
use std::time::Duration;

/// How long an eject may take: it flushes and verifies the open bundle first.
const EJECT_WAIT: Duration = Duration::from_secs(600);
/// How long taking a medium into use may take.
const LOAD_WAIT: Duration = Duration::from_secs(120);

/// Which volume to eject, and where it goes (the API's body; may be empty).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EjectInput {
    /// The cold target (the only one, or the first tape target, when absent).
    pub(crate) target: Option<String>,
    /// Where the volume goes (`onsite_shelf` when absent).
    pub(crate) location: Option<String>,
}

/// Whose drive's medium to take into use (the API's body; may be empty).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LoadInput {
    /// The cold target (the only one, or the first tape target, when absent).
    pub(crate) target: Option<String>,
}

/// Where a volume is now (the API's body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationInput {
    /// The volume's name.
    pub(crate) volume: String,
    /// `onsite_shelf`, `offsite_vault`, `returned` or `retired`.
    pub(crate) location: String,
}

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
    wait: Duration,
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
pub(crate) async fn eject(
    panel: &Panel,
    caller: &Caller,
    input: EjectInput,
) -> Result<String, WebError> {
    if let Some(l) = &input.location {
        if cairn_archive::Location::parse(l).is_none_or(|l| l == cairn_archive::Location::InDrive) {
            return Err(WebError::BadRequest(
                "location is onsite_shelf, offsite_vault, returned or retired".into(),
            ));
        }
    }
    let req = cairn_archive::Request::Eject {
        target: input.target,
        location: input.location,
        by: caller.actor(),
    };
    archive_request(panel, req, EJECT_WAIT).await
}

/// Take the medium now in a drive into use.
pub(crate) async fn load(
    panel: &Panel,
    caller: &Caller,
    input: LoadInput,
) -> Result<String, WebError> {
    let req = cairn_archive::Request::Load {
        target: input.target,
        by: caller.actor(),
    };
    archive_request(panel, req, LOAD_WAIT).await
}

/// Record where a volume is (in-process through the store's writer; audited by the archive
/// crate).
pub(crate) async fn set_location(
    panel: &Panel,
    caller: &Caller,
    input: &LocationInput,
) -> Result<String, WebError> {
    let loc = cairn_archive::Location::parse(&input.location).ok_or_else(|| {
        WebError::BadRequest("location is onsite_shelf, offsite_vault, returned or retired".into())
    })?;
    let (p, v, by) = (panel.clone(), input.volume.clone(), caller.actor());
    blocking(move || cairn_archive::set_location(&p.0.store, &v, loc, &by).map_err(archive_error))
        .await?;
    Ok(format!(
        "{} is now recorded as {}",
        input.volume,
        input.location.replace('_', " ")
    ))
}
