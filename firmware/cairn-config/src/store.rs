//! `[store]`: where the hot store lives.

use crate::error::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[store]`: where the hot store lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory (objects, index, spool).
    pub data_dir: PathBuf,
}

impl StoreConfig {
    /// The first value of `[store]` out of its range, if any.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                path,
                "store.data_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
