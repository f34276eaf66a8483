//! Requests to `cairnd`'s RAID and alarm monitor: silencing the alarm and the disk swap's
//! steps. The monitor does them and records their audit rows.

use crate::{blocking, data, Caller, Panel, WebError};
use cairn_raid::requests::Request as MonitorRequest;
use serde::Deserialize;

/// Which alarm to silence (the API's body; may be empty).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SilenceInput {
    /// One alarm event; none: every sounding one.
    pub(crate) id: Option<u64>,
}

/// One step of the disk swap (the API's body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskInput {
    /// `locate`, `unlocate`, `remove` or `confirm`.
    pub(crate) action: String,
    /// The bay.
    pub(crate) bay: u32,
}

/// Hand a request to the monitor; its refusal is a conflict.
async fn ask_monitor(panel: &Panel, req: MonitorRequest) -> Result<String, WebError> {
    let root = panel.0.opts.data_dir.clone();
    let a = blocking(move || data::monitor_request(&root, &req)).await?;
    if a.ok {
        Ok(a.message)
    } else {
        Err(WebError::Conflict(a.message))
    }
}

/// Silence the alarm through the monitor (which records the audit row).
pub(crate) async fn silence(
    panel: &Panel,
    caller: &Caller,
    input: &SilenceInput,
) -> Result<String, WebError> {
    let req = MonitorRequest::AlarmSilence {
        id: input.id,
        by: caller.actor(),
    };
    ask_monitor(panel, req).await
}

/// A disk swap step through the monitor (it audits what it does).
pub(crate) async fn disk_action(
    panel: &Panel,
    caller: &Caller,
    input: &DiskInput,
) -> Result<String, WebError> {
    let (by, bay) = (caller.actor(), input.bay);
    let req = match input.action.as_str() {
        "locate" => MonitorRequest::DiskLocate { bay, on: true },
        "unlocate" => MonitorRequest::DiskLocate { bay, on: false },
        "remove" => MonitorRequest::DiskRemove { bay, by },
        "confirm" => MonitorRequest::DiskConfirm { bay, by },
        _ => {
            return Err(WebError::BadRequest(
                "action must be locate, unlocate, remove or confirm".into(),
            ))
        }
    };
    ask_monitor(panel, req).await
}
