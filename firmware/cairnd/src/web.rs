//! Wiring of the web panel: its own tokio runtime thread beside the synchronous DICOM server.
//! `cairnd run` serves HTTPS with the device certificate (made at first start); `cairnd demo`
//! serves plain HTTP when the panel listens on loopback only, HTTPS otherwise.

use anyhow::{Context, Result};
use cairn_config::Config;
use cairn_store::Store;
use cairn_web::auth::HashCost;
use cairn_web::{Panel, PanelOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

/// How `cairnd` was started, as far as the panel cares.
pub struct PanelMode {
    /// The config file the Settings page edits.
    pub config_path: Option<PathBuf>,
    /// `cairnd demo`.
    pub demo: bool,
}

/// The running panel.
pub struct PanelHandle {
    thread: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// Where it listens, for the console.
    pub url: String,
    /// The one-time setup code, while no account exists.
    pub setup_code: Option<String>,
}

impl PanelHandle {
    /// Stop serving (in-flight requests get 3 s) and wait for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Bind the panel's port and start serving it on its own runtime thread. `nofile` is the
/// process's descriptor limit: the panel's connection cap leaves the rest of `cairnd` its
/// reserve (see `cairn_web::listen::panel_descriptor_cap`).
pub fn start(config: &Config, store: &Store, mode: &PanelMode, nofile: u64) -> Result<PanelHandle> {
    let limits = cairn_web::listen::ConnLimits::from_config(&config.http)
        .within_descriptors(nofile, config.dicom.max_associations);
    if limits.max_connections < config.http.max_connections {
        tracing::warn!(
            configured = config.http.max_connections,
            allowed = limits.max_connections,
            nofile,
            "the descriptor limit leaves the panel fewer connections than [http] max_connections"
        );
    }
    let data_dir = config.store.data_dir.clone();
    let https = !(mode.demo && config.http.bind.is_loopback());
    let addr = SocketAddr::new(config.http.bind, config.http.port);
    let std_listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen for the web panel on {addr} (is another program using the port?)")
    })?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let tls = if https {
        let cert = config
            .http
            .tls_cert
            .clone()
            .unwrap_or_else(|| data_dir.join("tls/cert.pem"));
        let key = config
            .http
            .tls_key
            .clone()
            .unwrap_or_else(|| data_dir.join("tls/key.pem"));
        let mut names = vec!["cairn.local".to_string(), "localhost".to_string()];
        if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
            let h = h.trim();
            if !h.is_empty() {
                names.push(h.to_string());
            }
        }
        if !config.http.bind.is_unspecified() {
            names.push(config.http.bind.to_string());
        }
        if cairn_web::tls::ensure_device_cert(&cert, &key, &names)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            tracing::info!(cert = %cert.display(), "made the panel's device certificate");
        }
        Some(cairn_web::tls::server_config(&cert, &key).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else {
        None
    };
    let panel = Panel::open(
        PanelOptions {
            data_dir,
            config_path: mode.config_path.clone(),
            https,
            session_idle_secs: config.http.session_idle_secs,
            hash_cost: HashCost::Production,
        },
        store.clone(),
    )
    .map_err(|e| anyhow::anyhow!("web panel: {e}"))?;
    // The lifecycle the panel shows and approves is decided with the rules in force, read as
    // the lifecycle thread reads them (the config file's folder for a rule file's path).
    let config_dir = mode
        .config_path
        .as_deref()
        .and_then(std::path::Path::parent)
        .unwrap_or(&config.store.data_dir);
    panel.set_lifecycle(cairn_web::LifecycleSettings {
        rules: std::sync::Arc::new(config.lifecycle.rule_set(config_dir)?),
        archive_after: config
            .lifecycle
            .archive_after()
            .context("[lifecycle] archive_after")?,
        require_sync: config.clock_sync_required(),
    });
    // The Settings page's "Restart the box now": SIGHUP, which `run` takes as a clean stop
    // followed by a new start of this program.
    panel.set_restart_hook(|| {
        if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGHUP) {
            tracing::error!(error = %e, "cannot ask for a restart");
        }
    });
    let setup_code = panel.setup_code();
    let router = panel.router();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("panel")
        .enable_all()
        .build()
        .context("web panel runtime")?;
    let thread = std::thread::Builder::new()
        .name("panel".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "web panel listener");
                        return;
                    }
                };
                let (inner_tx, inner_rx) = tokio::sync::oneshot::channel::<()>();
                let serve = cairn_web::serve(listener, router, tls, limits, async {
                    let _ = inner_rx.await;
                });
                tokio::select! {
                    r = serve => if let Err(e) = r { tracing::error!(error = %e, "web panel stopped") },
                    _ = async {
                        let _ = stop_rx.await;
                        let _ = inner_tx.send(());
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    } => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .context("web panel thread")?;
    let host = match local.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!(
        "{}://{}:{}/",
        if https { "https" } else { "http" },
        host,
        local.port()
    );
    Ok(PanelHandle {
        thread,
        stop: stop_tx,
        url,
        setup_code,
    })
}
