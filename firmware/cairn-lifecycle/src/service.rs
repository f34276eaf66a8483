//! The daemon's side: the lifecycle thread's work at each tick, answering the requests in the
//! mailbox and then recomputing the patients whose facts changed.

use crate::death::{set_death, DeathChange};
use crate::holds::{add_hold, release_hold, HoldTarget};
use crate::recompute::{any_dirty, mark_other_rule_sets, recompute_all};
use crate::requests::{serve, Answer, Request};
use crate::LifecycleError;
use cairn_retention::RuleSet;
use cairn_store::Store;
use jiff::civil::Date;
use rusqlite::Connection;
use std::sync::Arc;

/// The system's date today in UTC. The daemon decides on the lifecycle clock instead
/// ([`crate::clock::today`]: this date plus a demo box's offset).
pub fn today() -> Date {
    jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date()
}

/// The lifecycle work of the daemon, owned by its `lifecycle` thread.
pub struct Service {
    store: Store,
    rules: Arc<RuleSet>,
    /// Whether expiries computed with another rule set still have to be marked dirty.
    rule_set_unchecked: bool,
    /// A read-only connection on the index, to see without the writer whether anything is to
    /// be recomputed (opened at the first tick).
    reader: Option<Connection>,
    /// When the tier pass runs, and with which `archive_after`.
    tier: crate::tier::TierSchedule,
    /// Whether the lifecycle clock may be trusted (date-dependent passes wait when not).
    clock: crate::clock_watch::ClockWatch,
    /// The daily destruction pass of `auto_destroy = true` (off by default).
    auto_destroy: crate::destroy::AutoDestroy,
}

impl Service {
    /// The service on `store` with the configured `rules`. Patients whose expiry was computed
    /// with another rule set are marked dirty now (or, if the store is busy failing, at the
    /// first [`Service::tick`]), so that the next pass recomputes them.
    pub fn new(store: Store, rules: RuleSet) -> Service {
        let mut service = Service {
            store,
            rules: Arc::new(rules),
            rule_set_unchecked: true,
            reader: None,
            tier: crate::tier::TierSchedule::new(cairn_retention::Period::years(3)),
            clock: crate::clock_watch::ClockWatch::new(false),
            auto_destroy: crate::destroy::AutoDestroy::new(false),
        };
        if let Err(e) = service.check_rule_set() {
            tracing::warn!(error = %e, "cannot check the rule set of stored expiries yet");
        }
        service
    }

    /// The service with `archive_after` (`[lifecycle] archive_after`; `None` for `"0"`) instead
    /// of the default three years.
    pub fn with_archive_after(mut self, archive_after: Option<cairn_retention::Period>) -> Service {
        self.tier.set_archive_after(archive_after);
        self
    }

    /// The service without the immutable attribute on archived studies' files (`false`), for
    /// a demo whose data directory a person must be able to delete; on by default.
    pub fn with_immutable_files(mut self, on: bool) -> Service {
        self.tier.set_immutable_files(on);
        self
    }

    /// With `[lifecycle] auto_destroy = true`: every patient due is destroyed once a day,
    /// approved by `system`, without waiting for a person.
    pub fn with_auto_destroy(mut self, on: bool) -> Service {
        self.auto_destroy = crate::destroy::AutoDestroy::new(on);
        self
    }

    /// On the appliance: the date-dependent passes also wait until the kernel says the clock
    /// is synchronised (the demo and tests do not ask for it).
    pub fn with_clock_sync_required(mut self, yes: bool) -> Service {
        self.clock.set_require_sync(yes);
        self
    }

    /// The last check of the lifecycle clock (`None` before the first tick): whether the
    /// date-dependent passes run, and why not.
    pub fn clock_check(&self) -> Option<&crate::clock::ClockCheck> {
        self.clock.last()
    }

    /// Answer pending requests, recompute dirty patients, then, when the lifecycle clock is
    /// trusted, move studies that are old enough and fully copied to the archive tier (`tier`).
    pub fn tick(&mut self) -> Result<(), LifecycleError> {
        self.check_rule_set()?;
        let data = self.store.data_dir().root().to_path_buf();
        serve(&data, |req| self.answer(req));
        if self.anything_dirty()? {
            recompute_all(&self.store, &self.rules)?;
        }
        if let Some(today) = self.clock.tick(&self.store)? {
            self.tier.tick(&self.store, today)?;
            self.auto_destroy.tick(&self.store, &self.rules, today)?;
        }
        Ok(())
    }

    /// Carry out one request through the store's writer and say how it went.
    pub fn answer(&self, req: Request) -> Answer {
        let done = match req {
            Request::SetDeath {
                patient_id,
                issuer,
                date,
                reason,
                by,
            } => {
                let change = DeathChange {
                    patient_id,
                    issuer,
                    date,
                    reason,
                    by,
                };
                let today = crate::clock::today(self.store.data_dir().root()).unwrap_or(today());
                crate::run(&self.store, move |c, now| set_death(c, now, today, &change))
                    .map(|message| (message, None))
            }
            Request::AddHold {
                patient_id,
                issuer,
                study_uid,
                reason,
                by,
            } => HoldTarget::from_parts(patient_id, issuer, study_uid).and_then(|target| {
                let on = target.to_string();
                crate::run(&self.store, move |c, now| {
                    add_hold(c, now, &target, &reason, &by)
                })
                .map(|id| (format!("hold {id} placed on {on}"), Some(id)))
            }),
            Request::ReleaseHold { id, reason, by } => crate::run(&self.store, move |c, now| {
                release_hold(c, now, id, &reason, &by)
            })
            .map(|()| (format!("hold {id} released"), None)),
            Request::Reject {
                study_uid,
                series_uid,
                reason,
                by,
            } => {
                crate::reject::RejectTarget::from_parts(study_uid, series_uid).and_then(|target| {
                    let r = crate::reject::Rejection { target, reason, by };
                    crate::reject::run_reject(&self.store, r).map(|words| (words, None))
                })
            }
            Request::ApproveDestruction {
                patient_id,
                issuer,
                all,
                reason,
                by,
            } => crate::destroy::DestroyTarget::from_parts(patient_id, issuer, all).and_then(
                |target| {
                    let approval = crate::destroy::Approval { target, reason, by };
                    // a clock behind the audit trail decides nothing
                    let today = self.clock.trusted_today(&self.store)?;
                    crate::destroy::run_approval(&self.store, &self.rules, today, approval)
                },
            ),
        };
        match done {
            Ok((message, id)) => Answer {
                ok: true,
                message,
                id,
                failed: false,
            },
            Err(e) if e.is_bad_input() => Answer::refused(e.to_string()),
            Err(e) => {
                tracing::error!(error = %e, "a lifecycle request failed");
                Answer::failed(e.to_string())
            }
        }
    }

    /// Whether a patient is marked dirty, read without the writer (each of its transactions
    /// ends with a flush of the disk, too dear for every idle tick).
    fn anything_dirty(&mut self) -> Result<bool, LifecycleError> {
        let reader = match self.reader.take() {
            Some(reader) => reader,
            None => crate::open_read(self.store.data_dir())?,
        };
        let dirty = any_dirty(&reader);
        if dirty.is_ok() {
            self.reader = Some(reader);
        }
        dirty
    }

    fn check_rule_set(&mut self) -> Result<(), LifecycleError> {
        if !self.rule_set_unchecked {
            return Ok(());
        }
        let name = self.rules.name().to_owned();
        let marked = crate::run(&self.store, move |c, _| {
            Ok((mark_other_rule_sets(c, &name)?, vec![]))
        })?;
        if marked > 0 {
            tracing::info!(
                patients = marked,
                rules = self.rules.name(),
                "expiries to recompute with the configured rules"
            );
        }
        self.rule_set_unchecked = false;
        Ok(())
    }
}
