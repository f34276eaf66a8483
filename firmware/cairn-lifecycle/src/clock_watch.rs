//! The daemon's watch on the lifecycle clock: at each tick, whether the date-dependent passes
//! may run (see [`crate::clock::check`]), a change of the demo offset put in the audit trail
//! (`demo-clock`, by whoever set it), and a change of trust logged once, not every second.

use crate::clock::{check, read_offset, ClockCheck};
use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_store::Store;
use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension};

/// What the lifecycle thread knows of its clock.
#[derive(Debug)]
pub(crate) struct ClockWatch {
    /// The appliance: the kernel must say the clock is synchronised.
    require_sync: bool,
    /// The last check.
    last: Option<ClockCheck>,
    /// The demo offset last put in the audit trail (`Some(0)`: none), read from it at the
    /// first tick when the data directory has an offset file.
    audited_offset: Option<i64>,
    /// A read-only connection on the index (opened at the first tick).
    reader: Option<Connection>,
}

impl ClockWatch {
    /// A watch; `require_sync` on the appliance.
    pub fn new(require_sync: bool) -> ClockWatch {
        ClockWatch {
            require_sync,
            last: None,
            audited_offset: None,
            reader: None,
        }
    }

    /// Ask the kernel for a synchronised clock (the appliance) or not (demo, tests).
    pub fn set_require_sync(&mut self, yes: bool) {
        self.require_sync = yes;
    }

    /// The last check, if any.
    pub fn last(&self) -> Option<&ClockCheck> {
        self.last.as_ref()
    }

    /// Check the clock: the lifecycle date when date-dependent passes may run, `None` when
    /// they must wait (the reason is in [`ClockWatch::last`] and in the log).
    pub fn tick(&mut self, store: &Store) -> Result<Option<Date>, LifecycleError> {
        let root = store.data_dir().root().to_path_buf();
        let reader = match self.reader.take() {
            Some(r) => r,
            None => crate::open_read(store.data_dir())?,
        };
        let checked = check(&reader, &root, self.require_sync);
        let audited = match self.audited_offset {
            Some(o) => Ok(o),
            // without an offset file (every real box) the audit trail is not searched: a
            // removed offset file is not audited, a new one always is
            None if !crate::clock::offset_path(&root).exists() => Ok(0),
            None => last_audited_offset(&reader),
        };
        self.reader = Some(reader);
        let (checked, audited) = (checked?, audited?);
        self.audited_offset = Some(audited);
        self.audit_offset_change(store, &root, audited)?;
        match (&self.last, checked.ok) {
            (Some(prev), ok) if prev.ok == ok => {}
            (_, true) => tracing::info!(
                today = checked.today.as_deref().unwrap_or("?"),
                offset_days = checked.offset_days.unwrap_or(0),
                "lifecycle clock trusted"
            ),
            (_, false) => tracing::warn!(
                problem = checked.problem.as_deref().unwrap_or("?"),
                "lifecycle clock not trusted: tier and expiry passes wait"
            ),
        }
        let today = checked.trusted_today();
        self.last = Some(checked);
        Ok(today)
    }

    /// The lifecycle date for a decision asked for now (an approved destruction), checked
    /// afresh: refused, naming why, when the clock is not trusted.
    pub fn trusted_today(&self, store: &Store) -> Result<Date, LifecycleError> {
        trusted_today(store.data_dir(), self.require_sync)
    }

    /// Put a demo offset that differs from the last audited one in the audit trail.
    fn audit_offset_change(
        &mut self,
        store: &Store,
        root: &std::path::Path,
        audited: i64,
    ) -> Result<(), LifecycleError> {
        let Ok(offset) = read_offset(root) else {
            return Ok(()); // unreadable: the check says so
        };
        let days = offset.as_ref().map_or(0, |o| o.offset_days);
        if days == audited {
            return Ok(());
        }
        let (actor, set_at) = offset
            .map(|o| (o.set_by, o.set_at))
            .unwrap_or_else(|| ("system".into(), String::new()));
        store.audit(AuditEvent {
            actor,
            action: "demo-clock".into(),
            object: "clock".into(),
            detail: serde_json::json!({
                "offset_days": days,
                "from_days": audited,
                "set_at": set_at,
            })
            .to_string(),
        })?;
        tracing::info!(offset_days = days, "demo clock moved");
        self.audited_offset = Some(days);
        Ok(())
    }
}

/// The offset of the newest `demo-clock` audit row (0 when there is none).
fn last_audited_offset(conn: &Connection) -> Result<i64, LifecycleError> {
    let detail: Option<String> = conn
        .query_row(
            "SELECT detail FROM audit WHERE action = 'demo-clock' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(detail
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v.get("offset_days").and_then(serde_json::Value::as_i64))
        .unwrap_or(0))
}

/// The lifecycle date for a decision asked for now, on the clock of the data directory `data`
/// checked afresh (the daemon and the panel ask the same): a `BadRequest` naming why while the
/// clock is not trusted (behind the newest audit row, or not synchronised where it must be).
pub fn trusted_today(
    data: &cairn_store::DataDir,
    require_sync: bool,
) -> Result<Date, LifecycleError> {
    let reader = crate::open_read(data)?;
    let checked = check(&reader, data.root(), require_sync)?;
    checked.trusted_today().ok_or_else(|| {
        LifecycleError::BadRequest(format!(
            "the lifecycle clock cannot be trusted, nothing was done: {}",
            checked
                .problem
                .as_deref()
                .unwrap_or("its date cannot be read")
        ))
    })
}
