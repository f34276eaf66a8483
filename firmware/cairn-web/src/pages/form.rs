//! A posted form read as named fields (the Settings page's forms share one route and differ
//! by their `op` field).

use std::collections::HashMap;

/// The fields of a posted form.
pub(super) struct Fields<'a>(pub(super) &'a HashMap<String, String>);

impl Fields<'_> {
    /// A field, trimmed; empty when absent.
    pub(super) fn get(&self, k: &str) -> String {
        self.0
            .get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// A field as sent; empty when absent.
    pub(super) fn raw(&self, k: &str) -> &str {
        self.0.get(k).map_or("", |s| s)
    }

    /// A checkbox: sent with the value `true`.
    pub(super) fn flag(&self, k: &str) -> bool {
        self.0.get(k).is_some_and(|v| v == "true")
    }

    /// Whether the field was sent at all.
    pub(super) fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}
