//! Changes to the configuration file, and restarting the box so that they apply.

use crate::settings::{self, SettingsChange};
use crate::{blocking, Caller, Panel, WebError};
use serde_json::json;
use std::sync::atomic::Ordering;

/// Change settings in the config file; one audit row per changed key.
pub(crate) async fn change_settings(
    panel: &Panel,
    caller: &Caller,
    ch: SettingsChange,
) -> Result<settings::Changes, WebError> {
    let Some(path) = panel.0.opts.config_path.clone() else {
        return Err(WebError::Unavailable(
            "this box was started without a configuration file the panel may edit".into(),
        ));
    };
    let changed = blocking(move || settings::change(&path, &ch)).await?;
    for (key, old, new) in &changed {
        let now = settings::applies_at_once(key);
        if !now {
            panel.0.restart_pending.store(true, Ordering::SeqCst);
        }
        panel
            .audit(
                &caller.actor(),
                "setting-change",
                key,
                json!({"old": old, "new": new, "applies": if now { "now" } else { "next start" }}),
            )
            .await?;
    }
    Ok(changed)
}

/// Whether the panel can restart the box (`cairnd` installed its hook).
fn can_restart(panel: &Panel) -> bool {
    panel.0.restart_hook.lock().is_ok_and(|g| g.is_some())
}

/// A saved setting waits for a restart, and the panel can do it.
pub(crate) fn restart_offered(panel: &Panel) -> bool {
    can_restart(panel) && panel.0.restart_pending.load(Ordering::SeqCst)
}

/// Restart the box (audited first); the hook runs shortly after, once the page answered.
pub(crate) async fn restart(panel: &Panel, caller: &Caller) -> Result<(), WebError> {
    let hook = panel
        .0
        .restart_hook
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .ok_or_else(|| {
            WebError::Unavailable(
                "this box cannot restart itself from the panel: restart cairnd".into(),
            )
        })?;
    panel
        .audit(&caller.actor(), "restart", "cairnd", json!({}))
        .await?;
    tracing::info!(by = %caller.actor(), "restart asked from the panel");
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        hook();
    });
    Ok(())
}
