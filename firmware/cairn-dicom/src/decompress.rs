//! Decompression of a stored object for a peer that accepts only an uncompressed syntax
//! (C-GET, C-MOVE): encapsulated pixel data (RLE, JPEG baseline/extended/lossless) decoded with
//! dicom-rs's pure-Rust decoders and written back as native pixel data in an Explicit VR Little
//! Endian data set.
//!
//! Every element other than the pixel data, Photometric Interpretation and Planar Configuration
//! is copied byte for byte, so text keeps its character set and encoding. The object is decoded
//! in memory: objects whose decoded pixel data would exceed [`MAX_DECODED_BYTES`] (or whose file
//! is larger than that) are refused with [`DecompressError::TooLarge`], and one conversion runs
//! at a time in the process (its [`Permit`] is held until the object is sent), so the memory it
//! takes is bounded by about four times that cap (file, parsed object, decoded pixels, output):
//! 512 MiB at the very worst, a few MB for usual images.
//!
//! Not handled: encapsulated pixel data nested in a sequence (an icon image) is copied as it
//! is. JPEG-LS and JPEG 2000 have no decoder in this build ([`can_decode`] says so).

use dicom_core::Tag;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::sync::{Condvar, Mutex};
use thiserror::Error;

use crate::dataset::{ITEM, ITEM_DELIM, SEQ_DELIM, UNDEFINED};
use crate::syntax::{self, Encoding};

/// Largest decoded pixel data (and largest stored file) decompressed in memory: 128 MiB.
pub const MAX_DECODED_BYTES: u64 = 128 << 20;

const PHOTOMETRIC: u32 = 0x0028_0004;
const PLANAR_CONFIGURATION: u32 = 0x0028_0006;
const PIXEL_DATA: u32 = 0x7FE0_0010;
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Why an object could not be decompressed.
#[derive(Debug, Error)]
pub enum DecompressError {
    /// The stored syntax has no decoder in this build (JPEG-LS, JPEG 2000, ...).
    #[error("no decoder for transfer syntax {0}")]
    NoDecoder(String),
    /// Over the in-memory cap.
    #[error("{what} of {bytes} bytes is over the {cap} byte limit for decompression in memory")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
    /// The file does not parse.
    #[error("the stored object does not parse: {0}")]
    Parse(String),
    /// The codec failed on the pixel data.
    #[error("the pixel data does not decode: {0}")]
    Decode(String),
}

/// True when the box can decode pixel data stored in `ts` (an encapsulated syntax with a decoder
/// in this build).
pub fn can_decode(ts: &str) -> bool {
    if ts == syntax::EXPLICIT_LE || syntax::encoding(ts) != Some(Encoding::ExplicitLe) {
        return false;
    }
    TransferSyntaxRegistry
        .get(ts)
        .is_some_and(|t| t.is_encapsulated_pixel_data() && t.can_decode_all())
}

/// One conversion at a time in the process (memory bound).
struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

static GATE: Gate = Gate {
    busy: Mutex::new(false),
    free: Condvar::new(),
};

/// Held while a conversion's buffers are alive.
pub struct Permit(());

impl Permit {
    /// Wait for the process's one conversion slot.
    pub fn acquire() -> Permit {
        let mut busy = GATE.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = GATE.free.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Permit(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut busy = GATE.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy = false;
        GATE.free.notify_one();
    }
}

/// Decode the whole Part-10 file `file` (stored in `ts`) into an Explicit VR Little Endian data
/// set (without meta group) with native pixel data.
pub fn to_explicit_le(file: &[u8], ts: &str) -> Result<Vec<u8>, DecompressError> {
    if !can_decode(ts) {
        return Err(DecompressError::NoDecoder(ts.to_string()));
    }
    if file.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecompressError::TooLarge {
            what: "stored file",
            bytes: file.len() as u64,
            cap: MAX_DECODED_BYTES,
        });
    }
    if file.len() < 132 || &file[128..132] != b"DICM" {
        return Err(DecompressError::Parse("not a Part-10 file".into()));
    }
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&file[128..])
        .map_err(|e| DecompressError::Parse(e.to_string()))?;
    let int = |tag: Tag| -> Option<u64> {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .and_then(|s| s.trim().parse().ok())
    };
    let rows = int(Tag(0x0028, 0x0010)).unwrap_or(0);
    let cols = int(Tag(0x0028, 0x0011)).unwrap_or(0);
    let spp = int(Tag(0x0028, 0x0002)).unwrap_or(1);
    let bits = int(Tag(0x0028, 0x0100)).unwrap_or(8);
    let frames = int(Tag(0x0028, 0x0008)).unwrap_or(1).max(1);
    let expected = rows
        .saturating_mul(cols)
        .saturating_mul(spp)
        .saturating_mul(bits.div_ceil(8))
        .saturating_mul(frames);
    if expected > MAX_DECODED_BYTES {
        return Err(DecompressError::TooLarge {
            what: "decoded pixel data",
            bytes: expected,
            cap: MAX_DECODED_BYTES,
        });
    }
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| DecompressError::Decode(e.to_string()))?;
    let bits_allocated = decoded.bits_allocated();
    // RLE only unpacks bytes: the colour model is the stored one. The JPEG decoder turns YCbCr
    // into RGB and says so.
    let photometric = if ts == RLE_LOSSLESS {
        obj.element(Tag(0x0028, 0x0004))
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| decoded.photometric_interpretation().to_string())
    } else {
        decoded.photometric_interpretation().to_string()
    };
    let planar = (decoded.samples_per_pixel() > 1).then(|| decoded.planar_configuration() as u16);
    let pixels = decoded.data();
    if pixels.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecompressError::TooLarge {
            what: "decoded pixel data",
            bytes: pixels.len() as u64,
            cap: MAX_DECODED_BYTES,
        });
    }
    let body = dataset_body(file)?;
    let replacement = Replacement {
        photometric,
        planar,
        pixels,
        pixel_vr: if bits_allocated > 8 { *b"OW" } else { *b"OB" },
    };
    rewrite(body, &replacement)
}

/// The data set bytes of a Part-10 file (after its meta group).
fn dataset_body(file: &[u8]) -> Result<&[u8], DecompressError> {
    let bad = || DecompressError::Parse("the meta group does not parse".into());
    let head = file.get(132..144).ok_or_else(bad)?;
    if head[0..4] != [2, 0, 0, 0] || &head[4..6] != b"UL" {
        return Err(bad());
    }
    let group_len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    file.get(144usize.checked_add(group_len).ok_or_else(bad)?..)
        .ok_or_else(bad)
}

struct Replacement<'a> {
    photometric: String,
    planar: Option<u16>,
    pixels: &'a [u8],
    pixel_vr: [u8; 2],
}

/// Copy the top-level elements of an Explicit VR LE data set, replacing the three that
/// change with native pixel data (and adding Planar Configuration where it is needed).
fn rewrite(body: &[u8], r: &Replacement<'_>) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(r.pixels.len() + body.len().min(1 << 20) + 64);
    let mut pos = 0usize;
    let mut wrote_planar = false;
    let mut wrote_pixels = false;
    while pos < body.len() {
        let (tag, end) = element_end(body, pos, 0)?;
        if tag > PLANAR_CONFIGURATION && !wrote_planar {
            put_planar(&mut out, r.planar);
            wrote_planar = true;
        }
        match tag {
            PHOTOMETRIC => {
                let mut v = r.photometric.clone().into_bytes();
                if v.len() % 2 == 1 {
                    v.push(b' ');
                }
                put_short(&mut out, PHOTOMETRIC, *b"CS", &v);
            }
            PLANAR_CONFIGURATION => {
                put_planar(&mut out, r.planar);
                wrote_planar = true;
            }
            PIXEL_DATA => {
                put_pixels(&mut out, r)?;
                wrote_pixels = true;
            }
            _ => out.extend_from_slice(&body[pos..end]),
        }
        pos = end;
    }
    if !wrote_planar {
        put_planar(&mut out, r.planar);
    }
    if !wrote_pixels {
        return Err(DecompressError::Parse("no pixel data".into()));
    }
    Ok(out)
}

fn put_planar(out: &mut Vec<u8>, planar: Option<u16>) {
    if let Some(p) = planar {
        put_short(out, PLANAR_CONFIGURATION, *b"US", &p.to_le_bytes());
    }
}

fn put_tag(out: &mut Vec<u8>, tag: u32) {
    out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
    out.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
}

fn put_short(out: &mut Vec<u8>, tag: u32, vr: [u8; 2], value: &[u8]) {
    put_tag(out, tag);
    out.extend_from_slice(&vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

fn put_pixels(out: &mut Vec<u8>, r: &Replacement<'_>) -> Result<(), DecompressError> {
    let padded = r.pixels.len() + r.pixels.len() % 2;
    let len = u32::try_from(padded).map_err(|_| DecompressError::TooLarge {
        what: "decoded pixel data",
        bytes: padded as u64,
        cap: MAX_DECODED_BYTES,
    })?;
    put_tag(out, PIXEL_DATA);
    out.extend_from_slice(&r.pixel_vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(r.pixels);
    if r.pixels.len() % 2 == 1 {
        out.push(0);
    }
    Ok(())
}

fn truncated() -> DecompressError {
    DecompressError::Parse("the data set is truncated".into())
}

fn u16_at(b: &[u8], pos: usize) -> Result<u16, DecompressError> {
    b.get(pos..pos + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(truncated)
}

fn u32_at(b: &[u8], pos: usize) -> Result<u32, DecompressError> {
    b.get(pos..pos + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(truncated)
}

fn tag_at(b: &[u8], pos: usize) -> Result<u32, DecompressError> {
    Ok(((u16_at(b, pos)? as u32) << 16) | u16_at(b, pos + 2)? as u32)
}

/// The tag of the Explicit VR LE element at `pos` and the offset just past it (sequences and
/// encapsulated pixel data of undefined length included).
fn element_end(b: &[u8], pos: usize, depth: usize) -> Result<(u32, usize), DecompressError> {
    if depth > crate::dataset::MAX_DEPTH {
        return Err(DecompressError::Parse("sequences nested too deeply".into()));
    }
    let tag = tag_at(b, pos)?;
    let vr = b.get(pos + 4..pos + 6).ok_or_else(truncated)?;
    let long = matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    );
    let (len, start) = if long {
        (u32_at(b, pos + 8)?, pos + 12)
    } else {
        (u16_at(b, pos + 6)? as u32, pos + 8)
    };
    if len != UNDEFINED {
        let end = start.checked_add(len as usize).ok_or_else(truncated)?;
        if end > b.len() {
            return Err(truncated());
        }
        return Ok((tag, end));
    }
    // Undefined length: items up to the sequence delimiter. An item of undefined length inside
    // an SQ holds a data set up to its item delimiter; inside pixel data or UN they are defined.
    let mut p = start;
    loop {
        let t = tag_at(b, p)?;
        let l = u32_at(b, p + 4)?;
        p += 8;
        match t {
            SEQ_DELIM => return Ok((tag, p)),
            ITEM if l != UNDEFINED => {
                p = p.checked_add(l as usize).ok_or_else(truncated)?;
                if p > b.len() {
                    return Err(truncated());
                }
            }
            ITEM => loop {
                if tag_at(b, p)? == ITEM_DELIM {
                    p += 8;
                    break;
                }
                p = element_end(b, p, depth + 1)?.1;
            },
            _ => {
                return Err(DecompressError::Parse(
                    "unexpected element in a sequence".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_short(&mut v, tag, *vr, value);
        v
    }

    #[test]
    fn rewrite_replaces_the_three_and_copies_the_rest() {
        let mut body = explicit(0x0008_0018, b"UI", b"1.2\0");
        // (0008,1140) SQ undefined length with one undefined-length item
        put_tag(&mut body, 0x0008_1140);
        body.extend_from_slice(b"SQ\0\0");
        body.extend_from_slice(&UNDEFINED.to_le_bytes());
        put_tag(&mut body, ITEM);
        body.extend_from_slice(&UNDEFINED.to_le_bytes());
        body.extend_from_slice(&explicit(0x0008_1150, b"UI", b"1.3\0"));
        put_tag(&mut body, ITEM_DELIM);
        body.extend_from_slice(&[0; 4]);
        put_tag(&mut body, SEQ_DELIM);
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&explicit(0x0028_0002, b"US", &3u16.to_le_bytes()));
        body.extend_from_slice(&explicit(PHOTOMETRIC, b"CS", b"YBR_FULL_422"));
        let copied = body.clone();
        // encapsulated pixel data: empty offset table, one fragment
        put_tag(&mut body, PIXEL_DATA);
        body.extend_from_slice(b"OB\0\0");
        body.extend_from_slice(&UNDEFINED.to_le_bytes());
        put_tag(&mut body, ITEM);
        body.extend_from_slice(&[0; 4]);
        put_tag(&mut body, ITEM);
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&[1, 2, 3, 4]);
        put_tag(&mut body, SEQ_DELIM);
        body.extend_from_slice(&[0; 4]);
        let r = Replacement {
            photometric: "RGB".into(),
            planar: Some(0),
            pixels: &[9, 8, 7],
            pixel_vr: *b"OB",
        };
        let out = rewrite(&body, &r).unwrap();
        let photometric_at = copied.len() - 20;
        assert_eq!(&out[..photometric_at], &copied[..photometric_at]);
        let mut want = explicit(PHOTOMETRIC, b"CS", b"RGB ");
        want.extend_from_slice(&explicit(PLANAR_CONFIGURATION, b"US", &[0, 0]));
        put_tag(&mut want, PIXEL_DATA);
        want.extend_from_slice(b"OB\0\0");
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(&[9, 8, 7, 0]);
        assert_eq!(&out[photometric_at..], &want[..]);
    }

    #[test]
    fn truncated_or_pixel_less_data_sets_are_refused() {
        let r = Replacement {
            photometric: "MONOCHROME2".into(),
            planar: None,
            pixels: &[0, 0],
            pixel_vr: *b"OW",
        };
        let body = explicit(0x0008_0018, b"UI", b"1.2\0");
        assert!(matches!(rewrite(&body, &r), Err(DecompressError::Parse(_))));
        assert!(matches!(
            rewrite(&body[..body.len() - 1], &r),
            Err(DecompressError::Parse(_))
        ));
        // a sequence whose delimiter never comes
        let mut seq = Vec::new();
        put_tag(&mut seq, 0x0008_1140);
        seq.extend_from_slice(b"SQ\0\0");
        seq.extend_from_slice(&UNDEFINED.to_le_bytes());
        assert!(rewrite(&seq, &r).is_err());
    }

    #[test]
    fn decoders_present() {
        assert!(can_decode("1.2.840.10008.1.2.5")); // RLE
        assert!(can_decode("1.2.840.10008.1.2.4.50")); // JPEG baseline
        assert!(can_decode("1.2.840.10008.1.2.4.70")); // JPEG lossless SV1
        assert!(!can_decode(syntax::EXPLICIT_LE));
        assert!(!can_decode(syntax::IMPLICIT_LE));
        assert!(!can_decode("1.2.840.10008.1.2.1.99"));
        assert!(!can_decode("1.2.3"));
    }

    #[test]
    fn refuses_what_is_not_a_part10_file() {
        let e = to_explicit_le(&[0u8; 200], "1.2.840.10008.1.2.5").unwrap_err();
        assert!(matches!(e, DecompressError::Parse(_)), "{e}");
        let e = to_explicit_le(&[0u8; 200], "1.2.840.10008.1.2.4.80").unwrap_err();
        assert!(matches!(e, DecompressError::NoDecoder(_)), "{e}");
    }
}
