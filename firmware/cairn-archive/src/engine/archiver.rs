//! The archiver: every target, the store and the policy; its creation, the live status file it
//! publishes, and choosing targets by name.

use super::target::{Ctx, Policy, Target, TargetSpec};
use crate::catalog::{self, LiveStatus};
use crate::requests;
use crate::{ArchiveError, MediumKind};
use cairn_store::{DataDir, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The archive writer for every target.
pub struct Archiver {
    pub(super) store: Store,
    pub(super) data: DataDir,
    pub(super) policy: Policy,
    pub(super) targets: Vec<Target>,
    /// Set when the daemon stops: no new bundle is started.
    pub(super) stop: Arc<AtomicBool>,
    started: Instant,
}

impl Archiver {
    /// Catalog the targets, mark bundles left `writing` by a crash as `failed` (their instances
    /// are still queued), and get ready. Drives are opened on first use. Refused, changing
    /// nothing, when a target's kind is neither `tape` nor `optical`.
    pub fn new(store: Store, policy: Policy, specs: Vec<TargetSpec>) -> Result<Self, ArchiveError> {
        let data = store.data_dir().clone();
        let kinds = specs
            .iter()
            .map(|s| {
                MediumKind::parse(&s.kind).ok_or_else(|| {
                    ArchiveError::Refused(format!(
                        "cold target {}: unknown kind {:?} (tape or optical)",
                        s.name, s.kind
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pairs: Vec<(String, String)> = specs
            .iter()
            .zip(&kinds)
            .map(|(s, k)| (s.name.clone(), k.as_str().to_string()))
            .collect();
        let ids = catalog::sync_targets(&store, &pairs)?;
        store.transact(|c, now| {
            let n = c.execute(
                "UPDATE bundles SET state = 'failed', closed_at = ?1 WHERE state = 'writing'",
                [now],
            )?;
            let ev = (n > 0).then(|| cairn_audit::AuditEvent {
                actor: "system".into(),
                action: "bundle".into(),
                object: "archive".into(),
                detail: serde_json::json!({"failed_after_restart": n}).to_string(),
            });
            Ok(((), ev.into_iter().collect()))
        })?;
        let targets = specs
            .into_iter()
            .zip(kinds)
            .map(|(spec, kind)| {
                let id = ids
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .map(|(_, id)| *id)
                    .unwrap_or(0);
                Target::new(spec, kind, id)
            })
            .collect();
        Ok(Self {
            store,
            data,
            policy,
            targets,
            stop: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        })
    }

    /// The store this archiver writes through.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A flag that, once set, stops the archiver between bundles (and ends [`Archiver::run`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Publish the live status (`archive.json`, replaced whole: readers never see a mix).
    pub fn publish(&self) {
        let now = cairn_store::now_rfc3339();
        let s = LiveStatus {
            targets: self
                .targets
                .iter()
                .map(|t| {
                    let uptime_ms = self.started.elapsed().as_millis() as u64;
                    t.status.render(&t.name, &now, uptime_ms)
                })
                .collect(),
        };
        let path = self.data.root().join(requests::STATUS_FILE);
        if let Ok(b) = serde_json::to_vec_pretty(&s) {
            // NotSynced: a live status lost in a crash is published again on the next pass; a
            // failed write leaves the previous one, and the next pass tries again.
            let _ = cairn_files::atomic_write(&path, &b, cairn_files::Durability::NotSynced);
        }
    }

    /// Whether any target needs a medium now.
    pub fn medium_needed(&self) -> bool {
        self.targets.iter().any(|t| t.status.medium_needed)
    }

    /// The positions of the targets a request names (every target when `None`).
    pub(super) fn chosen(&self, name: Option<&str>) -> Result<Vec<usize>, ArchiveError> {
        match name {
            None => Ok((0..self.targets.len()).collect()),
            Some(n) => self
                .targets
                .iter()
                .position(|t| t.name == n)
                .map(|i| vec![i])
                .ok_or_else(|| ArchiveError::Refused(format!("no cold target named {n}"))),
        }
    }

    /// The context every target job needs, and the target at position `i`.
    pub(super) fn target(&mut self, i: usize) -> (Ctx<'_>, &mut Target) {
        let cx = Ctx {
            store: &self.store,
            data: &self.data,
            policy: &self.policy,
            stop: &self.stop,
            several: self.targets.len() > 1,
        };
        (cx, &mut self.targets[i])
    }
}
