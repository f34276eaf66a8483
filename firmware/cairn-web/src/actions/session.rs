//! Logging in and out, and the first boot's setup.

use crate::auth::{self, Role, ACCOUNT_FAILS, ADDRESS_FAILS};
use crate::{blocking, Caller, Panel, WebError};
use serde::Deserialize;
use serde_json::json;

/// A user name and password (the API's login body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// The account.
    pub(crate) username: String,
    /// Its password.
    pub(crate) password: String,
}

/// The first boot's answer: the setup code and the first admin (the API's setup body).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupInput {
    /// The code `cairnd` printed on its console.
    pub(crate) code: String,
    /// The first admin's name.
    pub(crate) username: String,
    /// Their password.
    pub(crate) password: String,
}

/// A successful login.
pub(crate) struct LoggedIn {
    /// The session cookie's value.
    pub(crate) token: String,
    /// The session's CSRF token.
    pub(crate) csrf: String,
    /// The account's role.
    pub(crate) role: Role,
}

/// Check a login, throttled per address and per account; audited either way.
pub(crate) async fn login(
    panel: &Panel,
    caller: &Caller,
    input: &Credentials,
) -> Result<LoggedIn, WebError> {
    let (address, username, password) = (
        caller.address.as_str(),
        input.username.as_str(),
        input.password.as_str(),
    );
    let now = panel.0.clock.now();
    let (akey, ukey) = (format!("a:{address}"), format!("u:{username}"));
    let wait = [&akey, &ukey]
        .iter()
        .filter_map(|k| panel.0.throttle.locked(k, now))
        .max();
    if let Some(retry_after) = wait {
        return Err(WebError::TooManyRequests { retry_after });
    }
    let valid_name = auth::valid_username(username).is_ok();
    let ok = if valid_name && password.len() <= 1024 {
        let (p, u, pw) = (panel.clone(), username.to_string(), password.to_string());
        blocking(move || p.0.auth.check_password(&u, &pw)).await?
    } else {
        false
    };
    // A mistyped name is not recorded: it could be a password or a patient's name.
    let actor = if valid_name {
        format!("user:{username}")
    } else {
        "anonymous".to_string()
    };
    if !ok {
        panel.0.throttle.fail(&akey, ADDRESS_FAILS, now);
        panel.0.throttle.fail(&ukey, ACCOUNT_FAILS, now);
        panel
            .audit(
                &actor,
                "login",
                "panel",
                json!({"ok": false, "address": address}),
            )
            .await?;
        return Err(WebError::BadLogin);
    }
    panel.0.throttle.clear(&ukey);
    panel.0.throttle.clear(&akey);
    let (p, u) = (panel.clone(), username.to_string());
    let (token, csrf, role) = blocking(move || {
        let (t, c) = p.0.auth.create_session(&u, p.0.clock.now())?;
        let role =
            p.0.auth
                .users()?
                .into_iter()
                .find(|x| x.username == u)
                .map_or(Role::Reader, |x| x.role);
        Ok((t, c, role))
    })
    .await?;
    panel
        .audit(
            &actor,
            "login",
            "panel",
            json!({"ok": true, "address": address}),
        )
        .await?;
    tracing::info!(user = %username, "panel login");
    Ok(LoggedIn { token, csrf, role })
}

/// First boot: the setup code, then the first admin. Throttled per address like a login.
pub(crate) async fn setup(
    panel: &Panel,
    caller: &Caller,
    input: &SetupInput,
) -> Result<LoggedIn, WebError> {
    let address = caller.address.as_str();
    let now = panel.0.clock.now();
    let akey = format!("setup:{address}");
    if let Some(retry_after) = panel.0.throttle.locked(&akey, now) {
        return Err(WebError::TooManyRequests { retry_after });
    }
    let expected = panel
        .setup_code()
        .ok_or_else(|| WebError::Conflict("the box is set up already: log in".into()))?;
    let typed: String = input.code.chars().filter(|c| c.is_ascii_digit()).collect();
    let want: String = expected.chars().filter(|c| c.is_ascii_digit()).collect();
    if !auth::same_secret(&typed, &want) {
        panel.0.throttle.fail(&akey, ACCOUNT_FAILS, now);
        panel
            .audit(
                "anonymous",
                "setup",
                "panel",
                json!({"ok": false, "address": address}),
            )
            .await?;
        return Err(WebError::Forbidden(
            "that is not the setup code cairnd printed on its console".into(),
        ));
    }
    let username = input.username.as_str();
    auth::valid_username(username)?;
    auth::valid_password(&input.password)?;
    let (p, u, pw) = (panel.clone(), username.to_string(), input.password.clone());
    blocking(move || {
        // Only while no account exists: a second setup is refused.
        if p.0.auth.user_count()? > 0 {
            return Err(WebError::Conflict(
                "the box is set up already: log in".into(),
            ));
        }
        p.0.auth.create_user(&u, Role::Admin, &pw, p.0.clock.now())
    })
    .await?;
    if let Ok(mut g) = panel.0.setup_code.lock() {
        *g = None;
    }
    panel
        .audit(
            &format!("user:{username}"),
            "user-create",
            &format!("user:{username}"),
            json!({"role": "admin", "first_boot": true, "address": address}),
        )
        .await?;
    let credentials = Credentials {
        username: username.to_string(),
        password: input.password.clone(),
    };
    login(panel, caller, &credentials).await
}

/// End the caller's session; audited.
pub(crate) async fn logout(panel: &Panel, caller: &Caller) -> Result<(), WebError> {
    if let Some(t) = caller.token.clone() {
        let p = panel.clone();
        blocking(move || p.0.auth.delete_session(&t)).await?;
    }
    panel
        .audit(
            &caller.actor(),
            "logout",
            "panel",
            json!({"address": caller.address}),
        )
        .await
}
