//! `[archive]` and `[[archive.targets]]`: the cold copies and when bundles close.

use crate::error::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[archive]`: the air-gapped copy on tape or optical disc, kept off the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// This box's id, written into every volume label (1 to 16 of `A-Z 0-9 -`).
    #[serde(default = "default_box_id")]
    pub box_id: String,
    /// A bundle closes once this many bytes are queued (at least 1 MiB).
    #[serde(default = "default_bundle_max_bytes")]
    pub bundle_max_bytes: u64,
    /// A bundle closes once its oldest image has waited this long (seconds, at least 1).
    #[serde(default = "default_bundle_max_age")]
    pub bundle_max_age_secs: u64,
    /// At most this many images per bundle.
    #[serde(default = "default_bundle_max_members")]
    pub bundle_max_members: usize,
    /// A new tape or disc whose printed name the drive cannot read is named by the box with
    /// this prefix and the next free number (`CAIRN01`); 1 to 12 of `A-Z 0-9`.
    #[serde(default = "default_volume_name_prefix")]
    pub volume_name_prefix: String,
    /// The cold targets; every stored image is queued for each.
    #[serde(default)]
    pub targets: Vec<ColdTarget>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            box_id: default_box_id(),
            bundle_max_bytes: default_bundle_max_bytes(),
            bundle_max_age_secs: default_bundle_max_age(),
            bundle_max_members: default_bundle_max_members(),
            volume_name_prefix: default_volume_name_prefix(),
            targets: Vec::new(),
        }
    }
}

/// What kind of medium a cold target writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdKind {
    /// LTO tape through the st driver (or the tape emulator).
    Tape,
    /// Optical disc through xorriso (or the disc emulator).
    Optical,
}

impl ColdKind {
    /// `tape` or `optical`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdKind::Tape => "tape",
            ColdKind::Optical => "optical",
        }
    }
}

/// `[[archive.targets]]`: one drive that receives a copy of every image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdTarget {
    /// Its name (1 to 32 of `A-Z a-z 0-9 _ -`), unique.
    pub name: String,
    /// `tape` or `optical`.
    pub kind: ColdKind,
    /// The real drive: the st non-rewinding device (`/dev/nst0`) or the burner (`/dev/sr0`).
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// Instead of `device`: an emulator directory (tape drive directory, or disc tray
    /// directory whose discs are `stdio:` image files).
    #[serde(default)]
    pub emulator: Option<PathBuf>,
    /// Optical emulator only: capacity of a new blank disc image in bytes.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
}

fn default_box_id() -> String {
    "CAIRN".into()
}
fn default_bundle_max_bytes() -> u64 {
    4 << 30
}
fn default_bundle_max_age() -> u64 {
    3600
}
fn default_bundle_max_members() -> usize {
    50_000
}
fn default_volume_name_prefix() -> String {
    "CAIRN".into()
}

impl ArchiveConfig {
    /// The first value of `[archive]` out of its range, if any.
    pub(crate) fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::invalid(path, key, message);
        let a = self;
        if a.box_id.is_empty()
            || a.box_id.len() > 16
            || !a
                .box_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("archive.box_id", "must be 1 to 16 of A-Z 0-9 -"));
        }
        if a.bundle_max_bytes < 1 << 20 {
            return Err(invalid(
                "archive.bundle_max_bytes",
                "must be at least 1048576",
            ));
        }
        if a.bundle_max_age_secs == 0 {
            return Err(invalid("archive.bundle_max_age_secs", "must be at least 1"));
        }
        if a.bundle_max_members == 0 {
            return Err(invalid("archive.bundle_max_members", "must be at least 1"));
        }
        if a.volume_name_prefix.is_empty()
            || a.volume_name_prefix.len() > 12
            || !a
                .volume_name_prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(invalid(
                "archive.volume_name_prefix",
                "must be 1 to 12 of A-Z 0-9",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for t in &a.targets {
            if t.name.is_empty()
                || t.name.len() > 32
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "archive.targets.name",
                    "must be 1 to 32 of A-Z a-z 0-9 _ -",
                ));
            }
            if !names.insert(t.name.clone()) {
                return Err(invalid(
                    "archive.targets.name",
                    "the same name is used twice",
                ));
            }
            if t.device.is_some() == t.emulator.is_some() {
                return Err(invalid(
                    "archive.targets",
                    "each target needs exactly one of device or emulator",
                ));
            }
            if t.capacity_bytes.is_some() && !(t.kind == ColdKind::Optical && t.emulator.is_some())
            {
                return Err(invalid(
                    "archive.targets.capacity_bytes",
                    "only for an optical emulator",
                ));
            }
        }
        Ok(())
    }
}
