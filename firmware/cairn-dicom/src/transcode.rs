//! Streaming conversion between Implicit and Explicit VR Little Endian, for sending a stored
//! object to a peer that accepted only the other one (C-GET, C-MOVE).
//!
//! Values are copied through in small chunks; sequences and items are written with undefined
//! lengths so that nothing has to be measured in advance. Memory does not depend on the object.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::{self, Read, Write};

use crate::dataset::{
    vr_has_long_length as long_length, ITEM, ITEM_DELIM, MAX_DEPTH, SEQ_DELIM, UNDEFINED,
};

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn dict_vr(tag: u32) -> Option<VR> {
    let t = Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16);
    let e = StandardDataDictionary.by_tag(t)?;
    Some(match e.vr() {
        VirtualVr::Exact(vr) => vr,
        VirtualVr::Xs => VR::US,
        _ => VR::OW,
    })
}

struct Conv<'a, R: Read, W: Write> {
    src: &'a mut R,
    out: &'a mut W,
    /// Reading explicit VR (else implicit).
    src_explicit: bool,
    /// Writing explicit VR (else implicit).
    dst_explicit: bool,
    pos: u64,
}

/// Convert a whole data set from `src` (to its end) into `out`. `src_explicit` says which of the
/// two Little Endian syntaxes the source is; the output is the other one.
pub fn convert<R: Read, W: Write>(src: &mut R, src_explicit: bool, out: &mut W) -> io::Result<()> {
    let mut c = Conv {
        src,
        out,
        src_explicit,
        dst_explicit: !src_explicit,
        pos: 0,
    };
    c.dataset(None, false, 0)
}

impl<R: Read, W: Write> Conv<'_, R, W> {
    fn read_exact(&mut self, buf: &mut [u8], eof_ok: bool) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.src.read(&mut buf[got..]) {
                Ok(0) if got == 0 && eof_ok => return Ok(false),
                Ok(0) => return Err(bad("data set truncated")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += buf.len() as u64;
        Ok(true)
    }

    fn tag(&mut self, eof_ok: bool) -> io::Result<Option<u32>> {
        let mut b = [0u8; 4];
        if !self.read_exact(&mut b, eof_ok)? {
            return Ok(None);
        }
        Ok(Some(
            ((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
                | u16::from_le_bytes([b[2], b[3]]) as u32,
        ))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, false)?;
        Ok(u32::from_le_bytes(b))
    }

    fn put_tag(&mut self, tag: u32) -> io::Result<()> {
        self.out.write_all(&((tag >> 16) as u16).to_le_bytes())?;
        self.out.write_all(&((tag & 0xFFFF) as u16).to_le_bytes())
    }

    fn put_header(&mut self, tag: u32, vr: VR, len: u32) -> io::Result<()> {
        self.put_tag(tag)?;
        if self.dst_explicit {
            self.out.write_all(vr.to_string().as_bytes())?;
            if long_length(vr) {
                self.out.write_all(&[0, 0])?;
                self.out.write_all(&len.to_le_bytes())
            } else {
                self.out.write_all(&(len as u16).to_le_bytes())
            }
        } else {
            self.out.write_all(&len.to_le_bytes())
        }
    }

    fn copy(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        while n > 0 {
            let k = (n as usize).min(buf.len());
            self.read_exact(&mut buf[..k], false)?;
            self.out.write_all(&buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Elements up to `end` (source position), an item delimiter, or the end of input.
    fn dataset(&mut self, end: Option<u64>, until_delim: bool, depth: usize) -> io::Result<()> {
        loop {
            if end.is_some_and(|e| self.pos >= e) {
                return Ok(());
            }
            let top = end.is_none() && !until_delim;
            let Some(tag) = self.tag(top)? else {
                return Ok(());
            };
            if tag == ITEM_DELIM {
                self.u32()?;
                if until_delim {
                    return Ok(());
                }
                return Err(bad("stray item delimiter"));
            }
            let (src_vr, len) = if self.src_explicit {
                let mut v = [0u8; 2];
                self.read_exact(&mut v, false)?;
                let vr = VR::from_binary(v).ok_or_else(|| bad("invalid VR"))?;
                let len = if long_length(vr) {
                    let mut r = [0u8; 2];
                    self.read_exact(&mut r, false)?;
                    self.u32()?
                } else {
                    let mut l = [0u8; 2];
                    self.read_exact(&mut l, false)?;
                    u16::from_le_bytes(l) as u32
                };
                (Some(vr), len)
            } else {
                (None, self.u32()?)
            };
            let known = src_vr.or_else(|| dict_vr(tag));
            let is_seq = match src_vr {
                Some(vr) => vr == VR::SQ || (vr == VR::UN && len == UNDEFINED),
                None => known == Some(VR::SQ) || (len == UNDEFINED && tag != 0x7FE0_0010),
            };
            if is_seq {
                if depth >= MAX_DEPTH {
                    return Err(bad("sequences nested too deeply"));
                }
                // An explicit UN of undefined length holds implicit-encoded items (PS3.5 6.2.2),
                // and a private sequence read from implicit VR becomes such a UN.
                let as_un = src_vr == Some(VR::UN) || (src_vr.is_none() && known.is_none());
                self.put_header(tag, if as_un { VR::UN } else { VR::SQ }, UNDEFINED)?;
                let saved = (self.src_explicit, self.dst_explicit);
                if as_un {
                    if src_vr == Some(VR::UN) {
                        self.src_explicit = false;
                    }
                    self.dst_explicit = false;
                }
                let r = self.items(
                    if len == UNDEFINED {
                        None
                    } else {
                        Some(self.pos + len as u64)
                    },
                    depth + 1,
                );
                (self.src_explicit, self.dst_explicit) = saved;
                r?;
                self.put_tag(SEQ_DELIM)?;
                self.out.write_all(&0u32.to_le_bytes())?;
                continue;
            }
            if len == UNDEFINED {
                return Err(bad(
                    "encapsulated pixel data cannot be converted without a codec",
                ));
            }
            let mut vr = known.unwrap_or(VR::UN);
            if self.dst_explicit && !long_length(vr) && len > 0xFFFF {
                vr = VR::UN;
            }
            self.put_header(tag, vr, len)?;
            self.copy(len as u64)?;
        }
    }

    fn items(&mut self, end: Option<u64>, depth: usize) -> io::Result<()> {
        loop {
            if end.is_some_and(|e| self.pos >= e) {
                return Ok(());
            }
            let tag = self.tag(false)?.unwrap_or(0);
            let len = self.u32()?;
            match tag {
                ITEM => {
                    self.put_tag(ITEM)?;
                    self.out.write_all(&UNDEFINED.to_le_bytes())?;
                    if len == UNDEFINED {
                        self.dataset(None, true, depth)?;
                    } else {
                        let e = self.pos + len as u64;
                        self.dataset(Some(e), false, depth)?;
                    }
                    self.put_tag(ITEM_DELIM)?;
                    self.out.write_all(&0u32.to_le_bytes())?;
                }
                SEQ_DELIM if end.is_none() => return Ok(()),
                _ => return Err(bad("unexpected element inside a sequence")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_to_implicit_and_back() {
        // (0008,0018) UI "1.2\0", (0008,1140) SQ defined length with one item holding
        // (0008,1150) UI "1.3\0", then (7FE0,0010) OW 4 bytes.
        let mut ex = Vec::new();
        ex.extend_from_slice(&[0x08, 0, 0x18, 0, b'U', b'I', 4, 0]);
        ex.extend_from_slice(b"1.2\0");
        let item_body: Vec<u8> =
            [&[0x08u8, 0, 0x50, 0x11, b'U', b'I', 4, 0][..], b"1.3\0"].concat();
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(item_body.len() as u32).to_le_bytes());
        item.extend_from_slice(&item_body);
        ex.extend_from_slice(&[0x08, 0, 0x40, 0x11, b'S', b'Q', 0, 0]);
        ex.extend_from_slice(&(item.len() as u32).to_le_bytes());
        ex.extend_from_slice(&item);
        ex.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4,
        ]);

        let mut im = Vec::new();
        convert(&mut &ex[..], true, &mut im).unwrap();
        // implicit: first element is tag + u32 length
        assert_eq!(&im[..8], &[0x08, 0, 0x18, 0, 4, 0, 0, 0]);
        let mut back = Vec::new();
        convert(&mut &im[..], false, &mut back).unwrap();
        // back in explicit VR: the UI and OW elements are identical; the sequence now has
        // undefined lengths, so walk it with the validator to be sure it parses
        assert_eq!(&back[..12], &ex[..12]);
        assert!(back.ends_with(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&back).unwrap();
        let w =
            crate::dataset::walk_file(f, 0, crate::syntax::Encoding::ExplicitLe, 1 << 20, &|_| {
                false
            })
            .unwrap();
        assert_eq!(w.length, back.len() as u64);
    }

    #[test]
    fn refuses_encapsulated() {
        let mut ex = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        ex.extend_from_slice(&UNDEFINED.to_le_bytes());
        let mut out = Vec::new();
        assert!(convert(&mut &ex[..], true, &mut out).is_err());
    }
}
