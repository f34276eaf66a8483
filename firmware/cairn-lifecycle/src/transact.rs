//! Running a change through the store's writer, keeping its refusal: a change that is refused
//! is rolled back entirely (nothing it wrote stays, no audit row), and the caller gets the
//! change's own [`LifecycleError`], not a store error.

use crate::LifecycleError;
use cairn_audit::AuditEvent;
use cairn_store::{Store, StoreError};
use rusqlite::Connection;
use std::sync::{Arc, Mutex};

/// Run `change` (a function of the writer's connection and the commit time, returning its value
/// and its audit rows) in the store's writer: its rows and audit rows commit together, or, when
/// it returns an error, nothing of it does.
pub fn run<T, F>(store: &Store, change: F) -> Result<T, LifecycleError>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &str) -> Result<(T, Vec<AuditEvent>), LifecycleError> + Send + 'static,
{
    let refusal: Arc<Mutex<Option<LifecycleError>>> = Arc::new(Mutex::new(None));
    let slot = refusal.clone();
    let done = store.transact(move |conn, now| match change(conn, now) {
        Ok(done) => Ok(done),
        Err(LifecycleError::Store(e)) => Err(e),
        Err(LifecycleError::Db(e)) => Err(StoreError::Db(e)),
        Err(refused) => {
            let message = refused.to_string();
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(refused);
            }
            // An error makes the writer roll this work back; the refusal itself is in `slot`.
            Err(StoreError::BadSearch(message))
        }
    });
    match done {
        Ok(value) => Ok(value),
        Err(e) => {
            let refused = refusal.lock().ok().and_then(|mut slot| slot.take());
            Err(refused.unwrap_or(LifecycleError::Store(e)))
        }
    }
}
