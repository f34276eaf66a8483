//! The two kinds of cold medium and what differs between them in words and block sizes.

use crate::RECORD_SIZE;

/// A cold target's kind of medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumKind {
    /// Tape cartridges (fixed 256 KiB records between filemarks).
    Tape,
    /// Optical discs (one ISO 9660 session per bundle).
    Optical,
}

impl MediumKind {
    /// The name used in the config, the catalog and labels (`tape`, `optical`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediumKind::Tape => "tape",
            MediumKind::Optical => "optical",
        }
    }

    /// Parse a config or catalog name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tape" => Some(MediumKind::Tape),
            "optical" => Some(MediumKind::Optical),
            _ => None,
        }
    }

    /// The block size written into a new label of this kind.
    pub fn block_size(self) -> u32 {
        match self {
            MediumKind::Tape => RECORD_SIZE as u32,
            MediumKind::Optical => crate::optical::OPTICAL_BLOCK,
        }
    }

    /// Where a person writes a volume's short name on this kind of medium.
    pub fn where_to_write_name(self) -> &'static str {
        match self {
            MediumKind::Tape => "the cartridge's label",
            MediumKind::Optical => "the disc",
        }
    }
}
