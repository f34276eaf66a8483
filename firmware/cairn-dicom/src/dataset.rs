//! A streaming data set walker: checks that a received data set parses to its end and picks
//! out the few top-level attributes the index needs, reading element headers only.
//!
//! Values are skipped (seeked over) unless wanted, so memory does not depend on the object.
//! Every length is checked against what is left before it is used; sequences nest at most
//! [`MAX_DEPTH`] levels (DCMTK's limit after IC-DCMTK-0003).

use crate::syntax::Encoding;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use thiserror::Error;

/// Deepest sequence nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Longest value kept for a wanted attribute.
const MAX_WANTED_VALUE: u32 = 4096;
pub(crate) const UNDEFINED: u32 = 0xFFFF_FFFF;
pub(crate) const ITEM: u32 = 0xFFFE_E000;
pub(crate) const ITEM_DELIM: u32 = 0xFFFE_E00D;
pub(crate) const SEQ_DELIM: u32 = 0xFFFE_E0DD;
const PIXEL_DATA: u32 = 0x7FE0_0010;

/// Why a data set was refused.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// Ended in the middle of an element.
    #[error("data set is truncated at byte {0}")]
    Truncated(u64),
    /// A VR that does not exist.
    #[error("element {0} at byte {1} has an invalid VR")]
    BadVr(TagText, u64),
    /// A length that runs past its container.
    #[error("element {0} at byte {1}: length {2} runs past the end of its container")]
    Overrun(TagText, u64, u32),
    /// Undefined length where the standard does not allow it.
    #[error("element {0} at byte {1} has an undefined length, which is not allowed for it")]
    UndefinedLength(TagText, u64),
    /// Too many nested sequences.
    #[error("sequences nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Something other than an item inside a sequence, or a stray delimiter.
    #[error("unexpected {0} at byte {1} inside a sequence")]
    BadItem(TagText, u64),
    /// File meta information (group 0002) inside the data set.
    #[error("data set contains file meta information element {0}")]
    MetaInDataset(TagText),
    /// More bytes than allowed (a deflate bomb).
    #[error("data set inflates beyond the object size limit")]
    TooLarge,
    /// Reading the spool file failed.
    #[error("reading the received data: {0}")]
    Io(#[from] io::Error),
}

/// A tag printed as `(gggg,eeee)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagText(pub u32);

impl std::fmt::Display for TagText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({:04X},{:04X})", self.0 >> 16, self.0 & 0xFFFF)
    }
}

/// What the walk found: the wanted top-level values (raw bytes) and tolerated oddities.
#[derive(Debug, Default)]
pub struct Walked {
    /// Raw values of wanted top-level attributes.
    pub values: BTreeMap<u32, Vec<u8>>,
    /// Minor violations worth a log line.
    pub warnings: Vec<String>,
    /// Data set length in bytes (after inflation for deflated syntaxes).
    pub length: u64,
}

enum Input {
    File { r: BufReader<File>, end: u64 },
    Stream { r: Box<dyn Read>, limit: u64 },
}

struct Walker<'a> {
    input: Input,
    pos: u64,
    explicit: bool,
    big_endian: bool,
    wanted: &'a dyn Fn(u32) -> bool,
    out: Walked,
}

/// Walk the data set that starts at `offset` in `file` and runs to its end.
pub fn walk_file(
    mut file: File,
    offset: u64,
    encoding: Encoding,
    max_bytes: u64,
    wanted: &dyn Fn(u32) -> bool,
) -> Result<Walked, DatasetError> {
    let end = file.metadata()?.len().saturating_sub(offset);
    file.seek(io::SeekFrom::Start(offset))?;
    let reader = BufReader::with_capacity(64 * 1024, file);
    let input = match encoding {
        Encoding::DeflatedLe => Input::Stream {
            r: Box::new(flate2::read::DeflateDecoder::new(reader)),
            limit: max_bytes,
        },
        _ => Input::File { r: reader, end },
    };
    let mut w = Walker {
        input,
        pos: 0,
        explicit: encoding != Encoding::ImplicitLe,
        big_endian: encoding == Encoding::ExplicitBe,
        wanted,
        out: Walked::default(),
    };
    w.dataset(End::Eof, 0)?;
    w.out.length = w.pos;
    Ok(w.out)
}

/// Walk a small data set held in memory (an N-ACTION's, say) with the same checks; a length
/// that runs past the end fails as truncated, without allocating for it.
pub fn walk_bytes(
    bytes: &[u8],
    encoding: Encoding,
    max_bytes: u64,
    wanted: &dyn Fn(u32) -> bool,
) -> Result<Walked, DatasetError> {
    let cursor = io::Cursor::new(bytes.to_vec());
    let r: Box<dyn Read> = match encoding {
        Encoding::DeflatedLe => Box::new(flate2::read::DeflateDecoder::new(cursor)),
        _ => Box::new(cursor),
    };
    let mut w = Walker {
        input: Input::Stream {
            r,
            limit: max_bytes,
        },
        pos: 0,
        explicit: encoding != Encoding::ImplicitLe,
        big_endian: encoding == Encoding::ExplicitBe,
        wanted,
        out: Walked::default(),
    };
    w.dataset(End::Eof, 0)?;
    w.out.length = w.pos;
    Ok(w.out)
}

#[derive(Clone, Copy)]
enum End {
    Eof,
    At(u64),
    ItemDelimiter,
}

/// VRs whose explicit header has a 4-byte length (PS3.5 7.1.2).
pub(crate) fn vr_has_long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

fn dictionary_says_sequence(tag: u32) -> Option<bool> {
    let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
    StandardDataDictionary
        .by_tag(t)
        .map(|e| matches!(e.vr(), VirtualVr::Exact(VR::SQ)))
}

impl Walker<'_> {
    fn remaining(&self) -> Option<u64> {
        match &self.input {
            Input::File { end, .. } => Some(end.saturating_sub(self.pos)),
            Input::Stream { .. } => None,
        }
    }

    /// Read exactly `buf.len()` bytes; `Ok(false)` on a clean end of input before any byte.
    fn read(&mut self, buf: &mut [u8], eof_ok: bool) -> Result<bool, DatasetError> {
        let mut got = 0;
        while got < buf.len() {
            let n = match &mut self.input {
                Input::File { r, .. } => r.read(&mut buf[got..]),
                Input::Stream { r, .. } => r.read(&mut buf[got..]),
            };
            match n {
                Ok(0) if got == 0 && eof_ok => return Ok(false),
                Ok(0) => return Err(DatasetError::Truncated(self.pos + got as u64)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(self.input, Input::Stream { .. }) => {
                    // a corrupt deflate stream reads as an I/O error: it is bad input
                    return Err(DatasetError::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        e,
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += buf.len() as u64;
        self.check_limit()?;
        Ok(true)
    }

    fn check_limit(&self) -> Result<(), DatasetError> {
        if let Input::Stream { limit, .. } = &self.input {
            if self.pos > *limit {
                return Err(DatasetError::TooLarge);
            }
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), DatasetError> {
        match &mut self.input {
            Input::File { r, .. } => {
                r.seek_relative(n as i64)?;
            }
            Input::Stream { r, .. } => {
                let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink())?;
                if copied < n {
                    return Err(DatasetError::Truncated(self.pos + copied));
                }
            }
        }
        self.pos += n;
        self.check_limit()
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Read a tag; `None` at a clean end of input.
    fn tag(&mut self, eof_ok: bool) -> Result<Option<u32>, DatasetError> {
        let mut b = [0u8; 4];
        if !self.read(&mut b, eof_ok)? {
            return Ok(None);
        }
        let g = self.u16([b[0], b[1]]) as u32;
        let e = self.u16([b[2], b[3]]) as u32;
        Ok(Some((g << 16) | e))
    }

    fn len32(&mut self) -> Result<u32, DatasetError> {
        let mut b = [0u8; 4];
        self.read(&mut b, false)?;
        Ok(self.u32(b))
    }

    fn fits(
        &self,
        tag: u32,
        at: u64,
        len: u32,
        container_end: Option<u64>,
    ) -> Result<(), DatasetError> {
        let over_input = self.remaining().is_some_and(|r| len as u64 > r);
        let over_container = container_end.is_some_and(|e| self.pos + len as u64 > e);
        if over_input || over_container {
            return Err(DatasetError::Overrun(TagText(tag), at, len));
        }
        Ok(())
    }

    fn dataset(&mut self, end: End, depth: usize) -> Result<(), DatasetError> {
        let container_end = match end {
            End::At(e) => Some(e),
            _ => None,
        };
        let mut last_tag = 0u32;
        loop {
            if let Some(e) = container_end {
                if self.pos == e {
                    return Ok(());
                }
            }
            let at = self.pos;
            let Some(tag) = self.tag(matches!(end, End::Eof))? else {
                return Ok(());
            };
            if tag == ITEM_DELIM {
                if matches!(end, End::ItemDelimiter) {
                    let len = self.len32()?;
                    if len != 0 {
                        self.out
                            .warnings
                            .push(format!("item delimiter with length {len}"));
                    }
                    return Ok(());
                }
                return Err(DatasetError::BadItem(TagText(tag), at));
            }
            if tag == ITEM || tag == SEQ_DELIM {
                return Err(DatasetError::BadItem(TagText(tag), at));
            }
            if depth == 0 && tag >> 16 == 0x0002 {
                return Err(DatasetError::MetaInDataset(TagText(tag)));
            }
            if tag < last_tag && self.out.warnings.len() < 16 {
                self.out
                    .warnings
                    .push(format!("element {} out of order", TagText(tag)));
            }
            last_tag = tag;
            self.element(tag, at, depth, container_end)?;
            if let Some(e) = container_end {
                if self.pos > e {
                    return Err(DatasetError::Overrun(TagText(tag), at, 0));
                }
            }
        }
    }

    fn element(
        &mut self,
        tag: u32,
        at: u64,
        depth: usize,
        container_end: Option<u64>,
    ) -> Result<(), DatasetError> {
        let (vr, len) = if self.explicit {
            let mut v = [0u8; 2];
            self.read(&mut v, false)?;
            let vr = VR::from_binary(v).ok_or(DatasetError::BadVr(TagText(tag), at))?;
            let len = if vr_has_long_length(vr) {
                let mut r = [0u8; 2];
                self.read(&mut r, false)?;
                self.len32()?
            } else {
                let mut l = [0u8; 2];
                self.read(&mut l, false)?;
                self.u16(l) as u32
            };
            (Some(vr), len)
        } else {
            (None, self.len32()?)
        };
        let is_private = (tag >> 16) % 2 == 1;
        let seq_by_dictionary = vr.is_none() && dictionary_says_sequence(tag).unwrap_or(false);
        if len == UNDEFINED {
            return match vr {
                Some(VR::SQ) => self.items(None, depth),
                Some(VR::UN) => {
                    // PS3.5 6.2.2: UN of undefined length holds an Implicit VR LE sequence.
                    let saved = (self.explicit, self.big_endian);
                    self.explicit = false;
                    self.big_endian = false;
                    let r = self.items(None, depth);
                    (self.explicit, self.big_endian) = saved;
                    r
                }
                Some(VR::OB) | Some(VR::OW) if tag == PIXEL_DATA => self.fragments(),
                None if tag == PIXEL_DATA => self.fragments(),
                None if seq_by_dictionary
                    || is_private
                    || dictionary_says_sequence(tag).is_none() =>
                {
                    self.items(None, depth)
                }
                _ => Err(DatasetError::UndefinedLength(TagText(tag), at)),
            };
        }
        self.fits(tag, at, len, container_end)?;
        if len % 2 == 1 && self.out.warnings.len() < 16 {
            self.out
                .warnings
                .push(format!("element {} has odd length {len}", TagText(tag)));
        }
        if vr == Some(VR::SQ) || seq_by_dictionary {
            let end = self.pos + len as u64;
            return self.items(Some(end), depth);
        }
        if depth == 0 && len <= MAX_WANTED_VALUE && (self.wanted)(tag) {
            let mut v = vec![0u8; len as usize];
            self.read(&mut v, false)?;
            self.out.values.insert(tag, v);
            return Ok(());
        }
        self.skip(len as u64)
    }

    /// Items of a sequence, up to `end` (defined length) or the sequence delimiter.
    fn items(&mut self, end: Option<u64>, depth: usize) -> Result<(), DatasetError> {
        if depth + 1 > MAX_DEPTH {
            return Err(DatasetError::TooDeep);
        }
        loop {
            if let Some(e) = end {
                if self.pos == e {
                    return Ok(());
                }
                if self.pos > e {
                    return Err(DatasetError::Overrun(TagText(ITEM), self.pos, 0));
                }
            }
            let at = self.pos;
            let tag = self.tag(false)?.unwrap_or(0);
            let len = self.len32()?;
            match tag {
                ITEM if len == UNDEFINED => self.dataset(End::ItemDelimiter, depth + 1)?,
                ITEM => {
                    self.fits(tag, at, len, end)?;
                    let item_end = self.pos + len as u64;
                    self.dataset(End::At(item_end), depth + 1)?;
                }
                SEQ_DELIM if end.is_none() => return Ok(()),
                _ => return Err(DatasetError::BadItem(TagText(tag), at)),
            }
        }
    }

    /// Encapsulated pixel data: items of defined length up to the sequence delimiter.
    fn fragments(&mut self) -> Result<(), DatasetError> {
        loop {
            let at = self.pos;
            let tag = self.tag(false)?.unwrap_or(0);
            let len = self.len32()?;
            match tag {
                ITEM if len != UNDEFINED => {
                    self.fits(tag, at, len, None)?;
                    self.skip(len as u64)?;
                }
                SEQ_DELIM => return Ok(()),
                _ => return Err(DatasetError::BadItem(TagText(tag), at)),
            }
        }
    }
}

/// Decode a text value with the data set's Specific Character Set (ISO_IR 192 is UTF-8,
/// ISO_IR 100 is Latin-1; the default repertoire is ASCII). Padding is trimmed.
pub fn decode_text(raw: &[u8], charset: &str) -> String {
    let trimmed = {
        let mut end = raw.len();
        while end > 0 && (raw[end - 1] == b' ' || raw[end - 1] == 0) {
            end -= 1;
        }
        let mut start = 0;
        while start < end && raw[start] == b' ' {
            start += 1;
        }
        &raw[start..end]
    };
    let latin1 = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    let cs = charset.trim();
    if cs.contains("ISO_IR 100") || cs.contains("ISO 2022 IR 100") {
        return latin1(trimmed);
    }
    match std::str::from_utf8(trimmed) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(trimmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn el_le(tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        b.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
        b.extend_from_slice(vr);
        let vr = VR::from_binary(*vr).unwrap();
        if vr_has_long_length(vr) {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
        b
    }

    fn walk(bytes: &[u8], enc: Encoding) -> Result<Walked, DatasetError> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"HEAD").unwrap();
        f.write_all(bytes).unwrap();
        walk_file(f, 4, enc, 1 << 30, &|t| {
            t == 0x0008_0018 || t == 0x0010_0010
        })
    }

    #[test]
    fn reads_wanted_values() {
        let mut d = el_le(0x0008_0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0");
        d.extend(el_le(0x0008_0018, b"UI", b"1.2.3.4\0"));
        d.extend(el_le(0x0010_0010, b"PN", b"Doe^John"));
        d.extend(el_le(0x7FE0_0010, b"OW", &[0u8; 64]));
        let w = walk(&d, Encoding::ExplicitLe).unwrap();
        assert_eq!(w.values[&0x0008_0018], b"1.2.3.4\0");
        assert_eq!(decode_text(&w.values[&0x0010_0010], ""), "Doe^John");
        assert_eq!(w.length, d.len() as u64);
    }

    #[test]
    fn refuses_overrun_and_truncation() {
        let mut d = el_le(0x0008_0018, b"UI", b"1.2.3.4\0");
        d.truncate(d.len() - 2);
        assert!(matches!(
            walk(&d, Encoding::ExplicitLe),
            Err(DatasetError::Overrun(..))
        ));
        let mut d = el_le(0x0008_0018, b"UI", b"1.2");
        d.push(0x10); // a dangling byte
        assert!(matches!(
            walk(&d, Encoding::ExplicitLe),
            Err(DatasetError::Truncated(_))
        ));
        // huge length on a non-sequence element
        let mut d = vec![0x10, 0, 0x10, 0, b'O', b'B', 0, 0];
        d.extend_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        assert!(matches!(
            walk(&d, Encoding::ExplicitLe),
            Err(DatasetError::Overrun(..))
        ));
    }

    #[test]
    fn refuses_bad_vr_and_meta() {
        let d = vec![0x10, 0, 0x10, 0, b'Z', b'Q', 2, 0, b'A', b'B'];
        assert!(matches!(
            walk(&d, Encoding::ExplicitLe),
            Err(DatasetError::BadVr(..))
        ));
        let d = el_le(0x0002_0010, b"UI", b"1.2.840.10008.1.2\0");
        assert!(matches!(
            walk(&d, Encoding::ExplicitLe),
            Err(DatasetError::MetaInDataset(_))
        ));
        // undefined length on a string element
        let mut d = vec![0x10, 0, 0x10, 0, b'L', b'O'];
        d.extend_from_slice(&[0xFF, 0xFF]);
        let mut d2 = vec![0x10, 0, 0x10, 0, b'U', b'T', 0, 0];
        d2.extend_from_slice(&UNDEFINED.to_le_bytes());
        assert!(walk(&d, Encoding::ExplicitLe).is_err());
        assert!(matches!(
            walk(&d2, Encoding::ExplicitLe),
            Err(DatasetError::UndefinedLength(..))
        ));
    }

    fn nested(levels: usize) -> Vec<u8> {
        // (0040,A730) SQ undefined length, one undefined-length item, nested `levels` times
        let mut d = Vec::new();
        for _ in 0..levels {
            d.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
            d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
        }
        for _ in 0..levels {
            d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        d
    }

    #[test]
    fn nesting_limit() {
        assert!(walk(&nested(5), Encoding::ExplicitLe).is_ok());
        assert!(walk(&nested(MAX_DEPTH), Encoding::ExplicitLe).is_ok());
        assert!(matches!(
            walk(&nested(MAX_DEPTH + 1), Encoding::ExplicitLe),
            Err(DatasetError::TooDeep)
        ));
        assert!(matches!(
            walk(&nested(1100), Encoding::ExplicitLe),
            Err(DatasetError::TooDeep)
        ));
    }

    #[test]
    fn implicit_and_big_endian() {
        // implicit: tag, u32 length, value
        let mut d = Vec::new();
        d.extend_from_slice(&[0x08, 0, 0x18, 0, 4, 0, 0, 0]);
        d.extend_from_slice(b"1.2\0");
        let w = walk(&d, Encoding::ImplicitLe).unwrap();
        assert_eq!(w.values[&0x0008_0018], b"1.2\0");
        let mut d = vec![0, 0x08, 0, 0x18, b'U', b'I', 0, 4];
        d.extend_from_slice(b"1.2\0");
        let w = walk(&d, Encoding::ExplicitBe).unwrap();
        assert_eq!(w.values[&0x0008_0018], b"1.2\0");
    }

    #[test]
    fn encapsulated_pixel_data() {
        let mut d = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]); // empty offset table
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(walk(&d, Encoding::ExplicitLe).is_ok());
        d.truncate(d.len() - 8);
        assert!(walk(&d, Encoding::ExplicitLe).is_err());
    }

    #[test]
    fn charsets() {
        assert_eq!(decode_text(b"M\xfcller^Hans ", "ISO_IR 100"), "Müller^Hans");
        assert_eq!(decode_text("Müller".as_bytes(), "ISO_IR 192"), "Müller");
        assert_eq!(decode_text(b"1.2.3\0", ""), "1.2.3");
    }
}
