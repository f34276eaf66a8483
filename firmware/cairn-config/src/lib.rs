//! cairn's configuration file: TOML, validated on load, unknown keys rejected.
//!
//! Owns: the schema of `cairn.toml` and the commented default written on first demo run.
//! Must never: touch hardware or the store; a config error names the key and the problem.

mod archive;
mod default_file;
mod dicom;
mod error;
mod hardware;
mod http;
mod lifecycle;
mod store;

pub use archive::{ArchiveConfig, ColdKind, ColdTarget};
pub use default_file::{default_toml, Defaults};
pub use dicom::{DicomConfig, Peer};
pub use error::ConfigError;
pub use hardware::HardwareConfig;
pub use http::{valid_time_zone, HttpConfig};
pub use lifecycle::{LifecycleConfig, RulesSource};
pub use store::StoreConfig;

use serde::Deserialize;
use std::path::Path;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DICOM node.
    pub dicom: DicomConfig,
    /// The hot store.
    pub store: StoreConfig,
    /// The web panel.
    #[serde(default)]
    pub http: HttpConfig,
    /// The hardware: board file, RAID monitor, alarm. Optional.
    #[serde(default)]
    pub hardware: HardwareConfig,
    /// The archive: cold targets (tape, optical) and when bundles close. Optional.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Retention rules and what happens to studies with age. Optional.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// The first value out of its range, section by section in a fixed order.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.dicom.check(path)?;
        self.http.check(path)?;
        self.archive.check(path)?;
        self.store.check(path)?;
        self.lifecycle.check(path)
    }

    /// The peer with this AE title, if configured.
    pub fn peer(&self, ae: &str) -> Option<&Peer> {
        self.dicom.peers.iter().find(|p| p.ae.as_str() == ae)
    }
}

#[cfg(test)]
mod shipped;
#[cfg(test)]
mod tests;
