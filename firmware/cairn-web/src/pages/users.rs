//! The Settings page's Users card: the accounts, their roles, and the forms that add and
//! change one.

use super::form::Fields;
use super::layout::csrf_field;
use crate::actions::{self, NewUser, UserChange};
use crate::auth::{Role, Session, User};
use crate::{Caller, Panel, WebError};
use maud::{html, Markup};

/// The Users card.
pub(super) fn users_card(session: &Session, users: &[User]) -> Markup {
    html! {
        section.card {
            h2 { "Users" }
            table id="users" {
                thead { tr { th { "Name" } th { "Role" } th { "State" } th { "" } } }
                tbody {
                    @for u in users {
                        tr {
                            td { (u.username) } td { (u.role.as_str()) } td { @if u.disabled { "disabled" } @else { "active" } }
                            td { form.inline method="post" action="/settings" {
                                (csrf_field(session))
                                input type="hidden" name="op" value="user-role";
                                input type="hidden" name="username" value=(u.username);
                                select name="role" aria-label="role" {
                                    @for r in Role::ALL { option value=(r.as_str()) selected[r == u.role] { (r.as_str()) } }
                                }
                                button type="submit" { "Set role" }
                                @if u.disabled {
                                    button type="submit" name="disabled" value="false" { "Enable" }
                                } @else {
                                    button type="submit" name="disabled" value="true" { "Disable" }
                                }
                            } }
                        }
                    }
                }
            }
            form method="post" action="/settings" {
                (csrf_field(session))
                input type="hidden" name="op" value="add-user";
                label { "Name" input type="text" name="username" maxlength="32" required pattern="[a-z0-9._-]+"; }
                label { "Role"
                    select name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } } }
                }
                label { "Password (10 characters or more)" input type="password" name="password" minlength="10" required autocomplete="new-password"; }
                button type="submit" { "Add user" }
            }
        }
    }
}

/// The form that adds an account.
pub(super) async fn add_user(
    panel: &Panel,
    caller: &Caller,
    f: &Fields<'_>,
) -> Result<String, WebError> {
    let input = NewUser {
        username: f.get("username"),
        role: f.get("role"),
        password: f.raw("password").to_string(),
    };
    actions::create_user(panel, caller, &input).await?;
    Ok(format!("User {} added.", input.username))
}

/// The form that sets an account's role, or disables or enables it.
pub(super) async fn change_user(
    panel: &Panel,
    caller: &Caller,
    f: &Fields<'_>,
) -> Result<String, WebError> {
    let name = f.get("username");
    let ch = UserChange {
        role: if f.has("disabled") {
            None
        } else {
            Some(f.get("role"))
        },
        password: None,
        disabled: f.has("disabled").then(|| f.flag("disabled")),
    };
    actions::update_user(panel, caller, &name, ch).await?;
    Ok(format!("User {name} changed."))
}
