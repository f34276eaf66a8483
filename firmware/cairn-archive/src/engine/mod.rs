//! The archive writer's policy: per cold target, take the queued instances, close a bundle by
//! size, by age, or on request (flush, eject), write it, read it back, and only then record
//! the copies as verified and drop their queue rows. Runs in `cairnd`'s archive thread; tests
//! drive it directly with the `cairn-hal` emulators.
//!
//! Failure rules: early warning (tape) or no room (optical): the bundle is `incomplete` on that
//! volume, the volume becomes `full`, and the whole bundle is written again on the next volume;
//! a write or verify error: the bundle is `failed`, the volume goes to `error`; in every case
//! the queue rows stay until a verified copy exists, so nothing queued is lost.
//!
//! Split by job, each module using only those listed before it: `status` (what is published
//! about a target, rendered in one place), `unpack` (objects from a bundle back into the
//! store), `drive` (everything that differs between tape and optical), `target` (one target,
//! its policy and context), `archiver` (the targets together, the live status file), then the
//! jobs: `probe` (probing and loading), `write` (bundles), `eject` (after a flush), `scan`,
//! `restore`, `recycle` (erasing a volume whose every copy was removed). This module runs the
//! loop and carries out requests.

mod archiver;
mod drive;
mod eject;
mod probe;
mod recycle;
mod restore;
mod scan;
mod status;
mod target;
mod unpack;
mod write;

pub use archiver::Archiver;
pub use drive::{Drive, Opener};
pub use target::{Outcome, Policy, TargetSpec};
pub use unpack::{restore_from_dir, restore_from_tar};

use crate::catalog::{self, Location};
use crate::requests::{self, Answer, Request};
use crate::ArchiveError;
use status::{Activity, DriveState};
use std::time::{Duration, Instant};

impl Archiver {
    /// Carry out one request.
    pub fn handle(&mut self, req: Request) -> Answer {
        let r = match req {
            Request::Flush { target, by } => {
                tracing::info!(%by, "archive flush requested");
                self.flush(target.as_deref())
            }
            Request::Eject {
                target,
                location,
                by,
            } => {
                let loc = location.as_deref().unwrap_or("onsite_shelf");
                match Location::parse(loc) {
                    Some(l) => self.eject(target.as_deref(), l, &by),
                    None => Err(ArchiveError::Refused(format!(
                        "unknown location {loc:?}: use onsite_shelf, offsite_vault, returned or retired"
                    ))),
                }
            }
            Request::Load { target, by } => self.load(target.as_deref(), &by),
            Request::LabelUnreadable { target, by } => {
                self.label_unreadable(target.as_deref(), &by)
            }
            Request::SetLocation {
                volume,
                location,
                by,
            } => match Location::parse(&location) {
                Some(l) => catalog::set_location(&self.store, &volume, l, &by)
                    .map(|_| format!("volume {volume} recorded at {location}")),
                None => Err(ArchiveError::Refused(format!(
                    "unknown location {location:?}: use onsite_shelf, offsite_vault, returned or retired"
                ))),
            },
            Request::Scan { target, by } => self.scan(target.as_deref(), &by),
            Request::Restore { study, by } => self.restore(&study, &by),
            Request::Recycle { volume, by } => self.recycle(&volume, &by),
        };
        self.publish();
        match r {
            Ok(message) => Answer { ok: true, message },
            Err(e) => Answer {
                ok: false,
                message: e.to_string(),
            },
        }
    }

    /// Answer every pending request file.
    pub fn handle_requests(&mut self) {
        let data = self.data.root().to_path_buf();
        requests::serve(&data, |req| self.handle(req));
    }

    /// The archive thread's loop: requests, bundles, status, until `stop` is set.
    /// Stop it with the flag from [`Archiver::stop_flag`]: the bundle in progress is finished
    /// and verified first. `on_medium_needed` hears whether a medium is needed after the first
    /// pass, then on every change.
    pub fn run(mut self, on_medium_needed: &dyn Fn(bool)) {
        let mut last_tick = Instant::now() - Duration::from_secs(10);
        let mut was_needed: Option<bool> = None;
        let mut passed = false;
        while !self.stopping() {
            self.handle_requests();
            if last_tick.elapsed() >= Duration::from_secs(1) {
                self.tick(false);
                last_tick = Instant::now();
                passed = true;
            }
            // after the first pass, every change is told at once (a load or eject too)
            let needed = self.medium_needed();
            if passed && was_needed != Some(needed) {
                on_medium_needed(needed);
                was_needed = Some(needed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for t in &mut self.targets {
            t.status.activity = Activity::Stopped;
            t.status.drive = DriveState::Unknown;
        }
        self.publish();
    }
}
