//! The volume label: the first tape file (one record of JSON padded with spaces) or
//! `CAIRN-VOLUME.json` in an optical disc's first session.

use crate::ArchiveError;
use serde::{Deserialize, Serialize};

/// Label format version (2 added `name`; a version 1 label reads with an empty name).
pub const LABEL_VERSION: u32 = 2;
/// The longest short name.
pub const NAME_MAX: usize = 16;
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
    /// The volume id (`<box>-T<yyyymmdd-hhmmss>-<xxxx>`, `O` for optical): unique, internal.
    pub volume_id: String,
    /// The short name printed on the cartridge or disc (`DEMO01`, `CAIRN03`), the one people
    /// read and type. Empty on labels written before names existed: then the volume id is
    /// its name.
    #[serde(default)]
    pub name: String,
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
    /// A new label for a blank volume called `name` (see [`valid_name`]).
    pub fn new(box_id: &str, kind: &str, block_size: u32, name: &str) -> Self {
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
            name: name.into(),
            box_id: box_id.into(),
            kind: kind.into(),
            block_size,
            labelled_at: cairn_store::now_rfc3339(),
        }
    }

    /// What people call this volume: its short name, or its volume id when it has none.
    pub fn short_name(&self) -> &str {
        if self.name.is_empty() {
            &self.volume_id
        } else {
            &self.name
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

/// Whether `name` can be a volume's short name: 1 to [`NAME_MAX`] of `A-Z 0-9`, as printed on
/// a cartridge's barcode label (`DEMO01`, `TAPE02`, `000123L8`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The name the box gives a volume whose drive cannot read a usable printed name: `prefix`
/// and the next number no name in `taken` uses (two digits at least: `CAIRN01`).
pub fn next_name<'a>(prefix: &str, taken: impl IntoIterator<Item = &'a str>) -> String {
    let highest = taken
        .into_iter()
        .filter_map(|n| n.strip_prefix(prefix))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|d| d.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("{prefix}{:02}", highest + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["DEMO01", "TAPE02", "CAIRN01", "000123L8", "A"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "demo01",
            "TAPE-02",
            "TAPE 02",
            "ABCDEFGHIJKLMNOPQ",
            "DEMO-T20261202",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(next_name("CAIRN", []), "CAIRN01");
        assert_eq!(
            next_name("CAIRN", ["CAIRN01", "CAIRN07", "DEMO01", "CAIRNX"]),
            "CAIRN08"
        );
        assert_eq!(next_name("C", ["C99"]), "C100");
    }

    #[test]
    fn a_version_1_label_reads_with_its_id_as_name() {
        let v1 = br#"{"format":"cairn-volume","format_version":1,"volume_id":"B-T20260101-000000-0001","box_id":"B","kind":"tape","block_size":262144,"labelled_at":"2026-01-01T00:00:00Z"}"#;
        let l = Label::parse(v1).expect("a version 1 label parses");
        assert_eq!(
            (l.name.as_str(), l.short_name()),
            ("", "B-T20260101-000000-0001")
        );
        let l2 = Label::new("B", "tape", 262144, "TAPE02");
        let back = Label::parse(&l2.to_record(4096).expect("fits")).expect("parses");
        assert_eq!(back.short_name(), "TAPE02");
        assert_eq!(back, l2);
    }
}
