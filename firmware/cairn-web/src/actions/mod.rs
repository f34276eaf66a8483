//! Every state-changing action the pages' forms and the JSON API share, so that a form and an
//! API call do the same thing: the same checks, the same audit rows, the same answers. Each
//! takes its typed input and the caller and returns a typed result or a [`crate::WebError`].
//! Which roles may ask is the route table's matter: the authorisation layer checks it before
//! a handler runs.

mod archive;
mod config;
mod lifecycle;
mod monitor;
mod session;
mod users;

pub(crate) use archive::{eject, load, set_location, EjectInput, LoadInput, LocationInput};
pub(crate) use config::{change_settings, restart, restart_offered};
pub(crate) use lifecycle::{
    approve_destruction, place_hold, record_death, reject_study, release, ApproveInput, DeathInput,
    HoldInput, RejectInput, ReleaseInput,
};
pub(crate) use monitor::{disk_action, silence, DiskInput, SilenceInput};
pub(crate) use session::{login, logout, setup, Credentials, LoggedIn, SetupInput};
pub(crate) use users::{create_user, update_user, NewUser, UserChange};
