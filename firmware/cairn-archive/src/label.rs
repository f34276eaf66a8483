//! The volume label: the first tape file (one record of JSON padded with spaces) or
//! `CAIRN-VOLUME.json` in an optical disc's first session.

use crate::ArchiveError;
use serde::{Deserialize, Serialize};

/// Label format version.
pub const LABEL_VERSION: u32 = 1;
/// The optical label's file name.
pub const OPTICAL_LABEL: &str = "CAIRN-VOLUME.json";

/// What a volume says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Always `cairn-volume`.
    pub format: String,
    /// [`LABEL_VERSION`].
    pub format_version: u32,
    /// The volume id (`<box>-T<yyyymmdd-hhmmss>-<xxxx>`, `O` for optical).
    pub volume_id: String,
    /// The box that labelled it.
    pub box_id: String,
    /// `tape` or `optical`.
    pub kind: String,
    /// Record size in bytes (tape) or 2048 (optical).
    pub block_size: u32,
    /// When it was labelled (RFC 3339).
    pub labelled_at: String,
}

impl Label {
    /// A new label for a blank volume.
    pub fn new(box_id: &str, kind: &str, block_size: u32) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
        let stamp = now
            .format(&fmt)
            .unwrap_or_else(|_| now.unix_timestamp().to_string());
        // four hex digits of the sub-second time keep two labels of one second apart
        let stamp = format!("{stamp}-{:04x}", (now.nanosecond() / 1000) & 0xffff);
        let letter = if kind == "tape" { 'T' } else { 'O' };
        Self {
            format: "cairn-volume".into(),
            format_version: LABEL_VERSION,
            volume_id: format!("{box_id}-{letter}{stamp}"),
            box_id: box_id.into(),
            kind: kind.into(),
            block_size,
            labelled_at: cairn_store::now_rfc3339(),
        }
    }

    /// The label as one record of `size` bytes: JSON, a newline, spaces.
    pub fn to_record(&self, size: usize) -> Result<Vec<u8>, ArchiveError> {
        let mut v = serde_json::to_vec_pretty(self)
            .map_err(|e| ArchiveError::Format(format!("label: {e}")))?;
        v.push(b'\n');
        if v.len() > size {
            return Err(ArchiveError::Format("label larger than a record".into()));
        }
        v.resize(size, b' ');
        Ok(v)
    }

    /// Parse a label record (or file). None when it is not a cairn label.
    pub fn parse(bytes: &[u8]) -> Option<Label> {
        let end = bytes
            .iter()
            .rposition(|&b| !matches!(b, b' ' | b'\n' | 0))
            .map(|i| i + 1)
            .unwrap_or(0);
        let l: Label = serde_json::from_slice(&bytes[..end]).ok()?;
        (l.format == "cairn-volume").then_some(l)
    }
}
