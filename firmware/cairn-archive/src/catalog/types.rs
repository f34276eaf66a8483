//! The catalog's types: volume states and locations, volume, bundle, copy and status rows.

use serde::{Deserialize, Serialize};

/// A volume's recording state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    /// Nothing recorded (never stored in the catalog for long: loading labels it).
    Blank,
    /// Labelled, no bundle yet.
    Labelled,
    /// Holds bundles, takes more.
    Append,
    /// Past its early warning or out of space: takes no more.
    Full,
    /// Taken out of the drive.
    Ejected,
    /// A write or verify failed: takes no more, check it.
    Error,
}

impl VolumeState {
    /// The name stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Blank => "blank",
            VolumeState::Labelled => "labelled",
            VolumeState::Append => "append",
            VolumeState::Full => "full",
            VolumeState::Ejected => "ejected",
            VolumeState::Error => "error",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "blank" => VolumeState::Blank,
            "labelled" => VolumeState::Labelled,
            "append" => VolumeState::Append,
            "full" => VolumeState::Full,
            "ejected" => VolumeState::Ejected,
            "error" => VolumeState::Error,
            _ => return None,
        })
    }
    /// New bundles may be written.
    pub fn writable(self) -> bool {
        matches!(self, VolumeState::Labelled | VolumeState::Append)
    }
}

/// Where a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In its target's drive.
    InDrive,
    /// On the shelf on site.
    OnsiteShelf,
    /// In the offsite vault.
    OffsiteVault,
    /// Back from the vault.
    Returned,
    /// Out of service.
    Retired,
}

impl Location {
    /// The name stored in the index and used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::InDrive => "in_drive",
            Location::OnsiteShelf => "onsite_shelf",
            Location::OffsiteVault => "offsite_vault",
            Location::Returned => "returned",
            Location::Retired => "retired",
        }
    }
    /// Where the volume is, in words for a person ("in the offsite vault").
    pub fn words(self) -> &'static str {
        match self {
            Location::InDrive => "in the drive",
            Location::OnsiteShelf => "on the on-site shelf",
            Location::OffsiteVault => "in the offsite vault",
            Location::Returned => "returned",
            Location::Retired => "retired",
        }
    }
    /// Parse a name (`in_drive`, `onsite_shelf`, `offsite_vault`, `returned`, `retired`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_drive" => Location::InDrive,
            "onsite_shelf" => Location::OnsiteShelf,
            "offsite_vault" => Location::OffsiteVault,
            "returned" => Location::Returned,
            "retired" => Location::Retired,
            _ => return None,
        })
    }
}

/// One volume as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    /// Its short name, printed on the cartridge or disc: what people read and type
    /// (the volume id for volumes labelled before names existed).
    pub name: String,
    /// Volume id (from its label): unique, internal.
    pub volume_id: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// The box that labelled it.
    pub box_id: String,
    /// The cold target it belongs to.
    pub target: Option<String>,
    /// Recording state.
    pub state: VolumeState,
    /// Where it is.
    pub location: Location,
    /// Bytes of bundles written on it.
    pub bytes_written: i64,
    /// Capacity when known.
    pub capacity_bytes: Option<i64>,
    /// Bundles verified on it.
    pub verified_bundles: i64,
    /// Verified object copies on it.
    pub verified_copies: i64,
    /// It holds copies and every one of them was removed (rejected or expired): it may be
    /// recycled (`cairnctl archive recycle`).
    #[serde(default)]
    pub recyclable: bool,
    /// When labelled.
    pub labelled_at: String,
    /// Last state or location change.
    pub updated_at: String,
    /// Who made it.
    pub updated_by: String,
}

/// A bundle as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRow {
    /// What people call it: `<volume name>.<file number>` (`DEMO01.3`).
    pub name: String,
    /// `<volume id>.<file number>`: unique, internal.
    pub bundle_id: String,
    /// Its volume.
    pub volume_id: String,
    /// Tape file number or optical session number.
    pub file_number: i64,
    /// `writing`, `verified`, `incomplete`, `failed`.
    pub state: String,
    /// Objects in it.
    pub members: i64,
    /// Bytes (tar stream, or session files).
    pub bytes: i64,
    /// When verified.
    pub verified_at: Option<String>,
}

/// The archive queue of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Instances waiting for a verified copy.
    pub instances: i64,
    /// Their bytes.
    pub bytes: i64,
    /// When the oldest was queued.
    pub oldest_queued_at: Option<String>,
}

/// Status of one cold target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// Its name.
    pub name: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// Live drive state (`unknown` when the daemon has not published one).
    pub drive: String,
    /// What the archive thread is doing.
    pub activity: String,
    /// The volume in the drive, if the catalog knows one.
    pub volume: Option<VolumeRow>,
    /// The queue.
    pub queue: QueueStatus,
    /// The last verified bundle.
    pub last_verified: Option<BundleRow>,
    /// No writable medium while instances wait.
    pub medium_needed: bool,
    /// A sentence for people.
    pub message: String,
    /// The last error.
    pub last_error: Option<String>,
    /// When the archive thread last published this (empty: never).
    pub updated_at: String,
}

/// Status of the whole archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// One per enabled cold target.
    pub targets: Vec<TargetStatus>,
    /// Any target needs a medium.
    pub medium_needed: bool,
    /// Instances with at least one verified cold copy.
    pub instances_verified: i64,
    /// Current instances in the store.
    pub instances_total: i64,
}

/// One verified copy of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    /// The object.
    pub sha256: String,
    /// Its volume's id (internal).
    pub volume_id: String,
    /// Its volume's short name (what people read and type).
    pub volume_name: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// The bundle's tape file or disc session number.
    pub file_number: i64,
    /// Where the volume is (`in_drive`, `onsite_shelf`...).
    pub location: String,
}
