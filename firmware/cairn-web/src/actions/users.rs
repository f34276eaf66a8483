//! Accounts: making one and changing one (role, password, disabled).

use crate::auth::Role;
use crate::{blocking, Caller, Panel, WebError};
use serde::Deserialize;
use serde_json::json;

/// A new account (the API's body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// Its name.
    pub(crate) username: String,
    /// `admin`, `technician`, `staff` or `reader`.
    pub(crate) role: String,
    /// Its password.
    pub(crate) password: String,
}

/// A change to an account (the API's body).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UserChange {
    /// A new role.
    pub(crate) role: Option<String>,
    /// A new password.
    pub(crate) password: Option<String>,
    /// Disable or enable the account.
    pub(crate) disabled: Option<bool>,
}

/// A role by name, or the sentence that lists the names.
fn parse_role(r: &str) -> Result<Role, WebError> {
    Role::parse(r).ok_or_else(|| {
        WebError::BadRequest("role must be admin, technician, staff or reader".into())
    })
}

/// Make an account; audited.
pub(crate) async fn create_user(
    panel: &Panel,
    caller: &Caller,
    input: &NewUser,
) -> Result<(), WebError> {
    let role = parse_role(&input.role)?;
    let username = input.username.as_str();
    let (p, u, pw) = (panel.clone(), username.to_string(), input.password.clone());
    blocking(move || p.0.auth.create_user(&u, role, &pw, p.0.clock.now())).await?;
    panel
        .audit(
            &caller.actor(),
            "user-create",
            &format!("user:{username}"),
            json!({"role": role.as_str()}),
        )
        .await
}

/// Change an account; audited (never the password itself).
pub(crate) async fn update_user(
    panel: &Panel,
    caller: &Caller,
    username: &str,
    ch: UserChange,
) -> Result<(), WebError> {
    let role = match &ch.role {
        Some(r) => Some(parse_role(r)?),
        None => None,
    };
    let detail = json!({
        "role": role.map(|r| r.as_str()),
        "password_changed": ch.password.is_some(),
        "disabled": ch.disabled,
    });
    let (p, u) = (panel.clone(), username.to_string());
    blocking(move || {
        p.0.auth
            .update_user(&u, role, ch.password.as_deref(), ch.disabled)
    })
    .await?;
    panel
        .audit(
            &caller.actor(),
            "user-change",
            &format!("user:{username}"),
            detail,
        )
        .await
}
