//! The web panel and its JSON API (`/api/v1`), served by axum.
//!
//! Owns: the pages (server-rendered with maud, which escapes every value) and the JSON API with
//! its OpenAPI document, both thin adapters over one set of actions (`actions`) and read
//! models; accounts, roles, sessions and login throttling (`web.db`, see [`auth`]); the device
//! certificate and the HTTPS listener ([`tls`]).
//! Reads the store through `cairn-store`'s queries, the RAID and alarm state through the files
//! `cairnd`'s monitor publishes, and asks the monitor to act through its request files: the same
//! calls `cairnctl` makes. Changes are audited through the store's writer.
//! Must never: write `cairn.db` or the data directory's objects, log a patient name or ID, or
//! serve a route that is not in [`routes::ROUTES`] with its permission.

mod actions;
mod api;
pub mod auth;
mod data;
mod error;
mod extract;
mod guard;
pub mod listen;
mod openapi;
mod pages;
mod read;
mod reply;
pub mod routes;
mod settings;
pub mod tls;
mod words;

use auth::{AuthDb, Clock, HashCost, Session, Throttle};
use axum::http::HeaderValue;
use axum::middleware;
use axum::Router;
use cairn_audit::AuditEvent;
use cairn_retention::{Period, RuleSet};
use cairn_store::{DataDir, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub use error::WebError;

/// The session cookie's name.
pub const COOKIE: &str = "cairn_session";
/// The header API clients send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest request body accepted (forms and JSON).
const MAX_BODY: usize = 64 * 1024;

/// How the panel is run.
#[derive(Debug, Clone)]
pub struct PanelOptions {
    /// The data directory (`cairn.db`, `raid.json`, `alarm.json`, `requests/`; `web.db` goes here).
    pub data_dir: PathBuf,
    /// The configuration file the Settings page edits (none: settings are read-only).
    pub config_path: Option<PathBuf>,
    /// Served over HTTPS: cookies are `Secure` and the expected Origin is `https://`.
    pub https: bool,
    /// A session unused this long ends.
    pub session_idle_secs: u64,
    /// Password hashing cost.
    pub hash_cost: HashCost,
}

pub(crate) struct Inner {
    pub(crate) opts: PanelOptions,
    pub(crate) data: DataDir,
    pub(crate) store: Store,
    pub(crate) auth: AuthDb,
    pub(crate) throttle: Throttle,
    pub(crate) clock: Clock,
    pub(crate) setup_code: Mutex<Option<String>>,
    /// How the box restarts itself (installed by `cairnd`; none: the panel cannot).
    pub(crate) restart_hook: Mutex<Option<RestartHook>>,
    /// A saved setting waits for a restart.
    pub(crate) restart_pending: std::sync::atomic::AtomicBool,
    /// The Archive page's eject or load that outlasted its answer (see `pages`).
    pub(crate) archive_job: Mutex<pages::ArchiveJob>,
    /// The lifecycle settings (see [`Panel::set_lifecycle`]).
    pub(crate) lifecycle: RwLock<Arc<LifecycleSettings>>,
}

/// What the panel's lifecycle views and actions decide with: the `[lifecycle]` settings
/// `cairnd` started with.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// The retention rule set in force.
    pub rules: Arc<RuleSet>,
    /// How old a study must be for the archive tier (`None`: the setting `"0"`).
    pub archive_after: Option<Period>,
    /// Whether the lifecycle clock must also be synchronised by the kernel (the appliance).
    pub require_sync: bool,
}

impl LifecycleSettings {
    /// The defaults of a box without a `[lifecycle]` section: the `fr` rules, three years.
    pub fn defaults() -> Result<LifecycleSettings, WebError> {
        let rules = RuleSet::builtin("fr")
            .map_err(|e| WebError::Internal(format!("built-in retention rules: {e}")))?;
        Ok(LifecycleSettings {
            rules: Arc::new(rules),
            archive_after: Period::years(3),
            require_sync: false,
        })
    }
}

/// What restarts the box (see [`Panel::set_restart_hook`]).
pub(crate) type RestartHook = Arc<dyn Fn() + Send + Sync>;

/// The panel: shared state of every request. Cheap to clone.
#[derive(Clone)]
pub struct Panel(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Panel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Panel")
            .field("data_dir", &self.0.opts.data_dir)
            .finish_non_exhaustive()
    }
}

impl Panel {
    /// Open `web.db`; when no account exists, make the one-time setup code.
    pub fn open(opts: PanelOptions, store: Store) -> Result<Panel, WebError> {
        let auth = AuthDb::open(&opts.data_dir.join("web.db"), opts.hash_cost)?;
        let code = if auth.user_count()? == 0 {
            Some(auth::new_setup_code()?)
        } else {
            None
        };
        Ok(Panel(Arc::new(Inner {
            data: DataDir::new(&opts.data_dir),
            opts,
            store,
            auth,
            throttle: Throttle::default(),
            clock: Clock::default(),
            setup_code: Mutex::new(code),
            restart_hook: Mutex::new(None),
            restart_pending: std::sync::atomic::AtomicBool::new(false),
            archive_job: Mutex::new(pages::ArchiveJob::None),
            lifecycle: RwLock::new(Arc::new(LifecycleSettings::defaults()?)),
        })))
    }

    /// Decide lifecycle matters (retention shown, destruction approved) with `settings`, the
    /// ones the box's lifecycle thread uses; until then, the defaults.
    pub fn set_lifecycle(&self, settings: LifecycleSettings) {
        if let Ok(mut g) = self.0.lifecycle.write() {
            *g = Arc::new(settings);
        }
    }

    /// The lifecycle settings in force.
    pub(crate) fn lifecycle(&self) -> Arc<LifecycleSettings> {
        match self.0.lifecycle.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Let the Settings page restart the box: `hook` is called (once, from a panel thread,
    /// after the page answered) when an admin asks for a restart. `cairnd` stops cleanly and
    /// starts again; without a hook the panel offers no restart.
    pub fn set_restart_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut g) = self.0.restart_hook.lock() {
            *g = Some(Arc::new(hook));
        }
    }

    /// The one-time setup code, while no account exists (print it on the console).
    pub fn setup_code(&self) -> Option<String> {
        self.0.setup_code.lock().ok().and_then(|g| g.clone())
    }

    /// The clock sessions and throttling use (tests advance it).
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    /// Every route, behind the authorisation layer.
    pub fn router(&self) -> Router {
        pages::router()
            .merge(api::router())
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                guard::authorize,
            ))
            .fallback(|| async { WebError::NotFound("no such page".into()) })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn(reply::refusals_as_json))
            .layer(middleware::from_fn(guard::security_headers))
            .with_state(self.clone())
    }

    /// Record an audit row through the store's writer (durable before this returns).
    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        object: &str,
        detail: serde_json::Value,
    ) -> Result<(), WebError> {
        let store = self.0.store.clone();
        let ev = AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            object: object.to_string(),
            detail: detail.to_string(),
        };
        blocking(move || store.audit(ev).map_err(WebError::from)).await
    }
}

/// Run blocking work (SQLite, argon2, file waits) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WebError::Internal(format!("worker: {e}")))?
}

/// Who is asking: their session (when logged in) and address.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) session: Option<Session>,
    pub(crate) token: Option<String>,
    pub(crate) address: String,
}

impl Caller {
    /// The session of a route that needs one (the layer guarantees it).
    pub(crate) fn user(&self) -> Result<&Session, WebError> {
        self.session.as_ref().ok_or(WebError::Unauthorized)
    }

    /// The audit actor.
    pub(crate) fn actor(&self) -> String {
        self.session
            .as_ref()
            .map_or("anonymous".to_string(), |s| format!("user:{}", s.username))
    }
}

/// The `Set-Cookie` value for a new session (or an expired one when `token` is empty).
pub(crate) fn session_cookie(panel: &Panel, token: &str) -> HeaderValue {
    let secure = if panel.0.opts.https { "; Secure" } else { "" };
    let max_age = if token.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}{max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("cairn_session=; Max-Age=0"))
}

/// Serve `router` on `listener` until `shutdown` resolves, under `limits`: plain HTTP, or
/// HTTPS when `tls` is given. Each connection knows its peer address (for login throttling);
/// see [`listen`] for the limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    limits: listen::ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router, tls, limits, shutdown).await
}
