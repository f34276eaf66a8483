//! Wiring of the patient lifecycle: one thread that, once a second, answers the requests
//! dropped in `requests/lifecycle/` (dates of death, legal holds, rejections, destruction
//! approvals), recomputes the expiry of the patients whose facts changed and runs the
//! date-dependent passes (storage tiers, unattended destruction when configured). The policy lives in `cairn-lifecycle` (and the rules in
//! `cairn-retention`); every change goes through the store's writer.

use anyhow::{Context, Result};
use cairn_config::LifecycleConfig;
use cairn_lifecycle::{LifecycleError, Service};
use cairn_retention::RuleSet;
use cairn_store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the thread looks for requests and patients to recompute.
const TICK: Duration = Duration::from_secs(1);
/// How often it checks whether it was asked to stop, while it waits for the next tick.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The running lifecycle thread.
pub struct LifecycleHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl LifecycleHandle {
    /// Stop after the pass in progress (if any) and wait for the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the lifecycle thread panicked");
        }
    }
}

/// How the lifecycle thread treats the machine it runs on.
pub struct Host {
    /// The date-dependent passes also wait for a synchronised system clock
    /// ([`cairn_config::Config::clock_sync_required`]).
    pub require_clock_sync: bool,
    /// Archived studies' files get the immutable attribute (`cairnd run`); `cairnd demo`
    /// leaves it off, so that a person can delete the demo's folder.
    pub immutable_files: bool,
}

/// Start the lifecycle thread with the configured rule set and the rest of `[lifecycle]`
/// (when studies move to the archive tier, whether due patients are destroyed unattended).
pub fn start(
    store: Store,
    rules: RuleSet,
    config: &LifecycleConfig,
    host: Host,
) -> Result<LifecycleHandle> {
    let archive_after = config
        .archive_after()
        .context("[lifecycle] archive_after")?;
    tracing::info!(
        rules = rules.name(),
        archive_after = %config.archive_after,
        auto_destroy = config.auto_destroy,
        require_clock_sync = host.require_clock_sync,
        immutable_files = host.immutable_files,
        "lifecycle"
    );
    store.set_immutable_files(host.immutable_files);
    let mut service = Service::new(store, rules)
        .with_archive_after(archive_after)
        .with_auto_destroy(config.auto_destroy)
        .with_clock_sync_required(host.require_clock_sync)
        .with_immutable_files(host.immutable_files);
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("lifecycle".into())
        .spawn(move || run(&mut service, &stopping))
        .context("cannot start the lifecycle thread")?;
    Ok(LifecycleHandle { stop, thread })
}

/// Tick every [`TICK`] until `stop`. A failed pass is logged (the error names tables and
/// counts, never a patient) and tried again at the next tick.
fn run(service: &mut Service, stop: &AtomicBool) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match service.tick() {
            Ok(()) if failing => {
                tracing::info!("the lifecycle pass works again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                // once per run of failures, not once a second
                if !failing {
                    log_failure(&e);
                }
                failing = true;
            }
        }
        while !stop.load(Ordering::Relaxed) && started.elapsed() < TICK {
            std::thread::sleep(STOP_POLL);
        }
    }
}

/// Log a failed pass. A refusal's message may name a patient, which never goes into the log;
/// a failure of the store or the index names only tables and counts.
fn log_failure(e: &LifecycleError) {
    if e.is_bad_input() {
        tracing::error!(
            "the lifecycle pass was refused by the index's data; trying again each second"
        );
    } else {
        tracing::error!(error = %e, "the lifecycle pass failed; trying again each second");
    }
}
