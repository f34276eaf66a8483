//! What the pages and the API show, read through the same calls `cairnctl` uses: the store's
//! queries, `raid.json` and `alarm.json` as the monitor publishes them, and requests to the
//! monitor through `requests/`. Blocking: call from [`crate::blocking`].

mod audit;
mod lifecycle;
mod monitor;
mod overview;
mod studies;

// One flat vocabulary for the pages and the API: every item is `crate::data::X`.
pub use audit::*;
pub use lifecycle::*;
pub use monitor::*;
pub use overview::*;
pub use studies::*;

/// A failed statement on a connection already open (opening one fails as the store's errors
/// do): the database's own failure, as the pages have always reported it.
fn statement_error(e: cairn_store::StoreError) -> crate::WebError {
    match e {
        cairn_store::StoreError::Db(e) => e.into(),
        e => e.into(),
    }
}

/// A size for people: `1.5 GB` (the wording `cairnctl` shares).
pub use cairn_core::human_bytes;

/// A duration for people: `12 min`.
pub fn human_secs(s: u64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
    }
}
