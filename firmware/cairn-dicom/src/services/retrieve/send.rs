//! Sending one stored instance as a C-STORE-RQ (the sub-operations of C-GET and C-MOVE): which
//! accepted context carries it, the conversion its stored syntax needs, and the check that the
//! file still hashes to the SHA-256 that names it.
//!
//! An object stored in the context's syntax streams straight from its file and is hashed while
//! it goes out. Any other object is hashed before it is converted, so damaged bytes never reach
//! a converter: Implicit <-> Explicit VR Little Endian and inflating a deflated data set stream
//! (memory: one PDU), encapsulated pixel data is decompressed in memory ([`crate::decompress`],
//! capped). A problem with the object (missing, damaged, not convertible) is a failed
//! sub-operation and leaves the association usable; only a failure on the wire breaks it.

use crate::damage::Damage;
use crate::dimse::{command, CommandBuilder};
use crate::pdu;
use crate::syntax::{self, Encoding};
use cairn_store::find::InstanceRef;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::net::TcpStream;

/// Why an instance could not be delivered, the association staying usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The stored object is missing or damaged.
    Damaged(Damage),
    /// It cannot be sent in any accepted syntax (no context, no decoder, over the cap).
    Unconvertible(String),
}

/// What sending one instance came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The C-STORE-RQ went out whole, from a file that hashed to its name.
    Intact,
    /// The C-STORE-RQ went out whole, but the file did not hash to its name (found while it
    /// streamed): the sub-operation counts as failed.
    Damaged,
    /// Nothing went out.
    Withheld(Problem),
}

/// The connection failed in the middle of a message: the association cannot go on.
#[derive(Debug)]
pub(crate) struct Broken(pub String);

fn broken(e: io::Error) -> Broken {
    Broken(e.to_string())
}

/// True when an object stored in `stored` can be sent on a context of syntax `offered`.
pub(crate) fn can_convert(stored: &str, offered: &str) -> bool {
    if stored == offered {
        return true;
    }
    if offered != syntax::EXPLICIT_LE && offered != syntax::IMPLICIT_LE {
        return false;
    }
    stored == syntax::EXPLICIT_LE
        || stored == syntax::IMPLICIT_LE
        || syntax::encoding(stored) == Some(Encoding::DeflatedLe)
            && stored != "1.2.840.10008.1.2.4.95"
        || crate::decompress::can_decode(stored)
}

/// The context to send an object stored in `stored` on, among `(transfer syntax, context ID)`
/// pairs for its SOP class: one in the stored syntax, else Explicit VR LE, else Implicit VR LE
/// when the box can convert to it.
pub(crate) fn pick_context<'a>(
    stored: &str,
    contexts: impl Iterator<Item = (&'a str, u8)> + Clone,
) -> Option<(u8, String)> {
    let found = |ts: &str| {
        contexts
            .clone()
            .find(|(t, _)| *t == ts)
            .map(|(t, id)| (id, t.to_string()))
    };
    found(stored).or_else(|| {
        [syntax::EXPLICIT_LE, syntax::IMPLICIT_LE]
            .into_iter()
            .filter(|ts| can_convert(stored, ts))
            .find_map(found)
    })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    /// Read what is left and return the hex SHA-256 of everything.
    fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

/// Offset of the data set in one of our Part-10 files, read through `r` (which is left there).
fn read_head(r: &mut impl Read) -> io::Result<u64> {
    let mut head = [0u8; 144];
    r.read_exact(&mut head)?;
    if &head[128..132] != b"DICM" || head[132..136] != [2, 0, 0, 0] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Part-10 file",
        ));
    }
    let group_len = u32::from_le_bytes([head[140], head[141], head[142], head[143]]) as u64;
    io::copy(&mut r.by_ref().take(group_len), &mut io::sink())?;
    Ok(144 + group_len)
}

fn sha256_of(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    Hashing {
        inner: BufReader::with_capacity(256 * 1024, &mut *file),
        hash: Sha256::new(),
    }
    .finish()
}

/// Missing, unreadable or hash mismatch, for a file that could not be used.
fn classify(file: &mut File, sha256: &str) -> Problem {
    match sha256_of(file) {
        Ok(h) if h != sha256 => Problem::Damaged(Damage::HashMismatch),
        _ => Problem::Damaged(Damage::Unreadable),
    }
}

/// One C-STORE-RQ to send: where, and what.
pub(crate) struct Outgoing<'a> {
    /// The socket.
    pub sock: &'a mut TcpStream,
    /// The peer's largest PDU.
    pub peer_max_pdu: u32,
    /// The accepted context.
    pub context_id: u8,
    /// Its transfer syntax.
    pub context_ts: &'a str,
    /// The C-STORE-RQ's message ID.
    pub message_id: u16,
    /// For C-MOVE: the move originator's AE title and message ID.
    pub move_origin: Option<(&'a str, u16)>,
}

impl Outgoing<'_> {
    fn command(&self, inst: &InstanceRef) -> Vec<u8> {
        let mut b = CommandBuilder::new()
            .uid(0x0002, &inst.sop_class_uid)
            .u16(0x0100, command::C_STORE_RQ)
            .u16(0x0110, self.message_id)
            .u16(0x0700, 0)
            .u16(0x0800, 0x0000)
            .uid(0x1000, &inst.sop_instance_uid);
        if let Some((ae, id)) = self.move_origin {
            b = b.text(0x1030, ae).u16(0x1031, id);
        }
        b.encode()
    }

    fn send_command(&mut self, inst: &InstanceRef) -> Result<(), Broken> {
        let cmd = self.command(inst);
        pdu::send_message(self.sock, self.peer_max_pdu, self.context_id, &cmd, None).map_err(broken)
    }

    /// Send `inst` from its file in `data`.
    pub(crate) fn send(
        &mut self,
        inst: &InstanceRef,
        data: &cairn_store::DataDir,
    ) -> Result<Sent, Broken> {
        let stored = inst.transfer_syntax.as_str();
        if !can_convert(stored, self.context_ts) {
            return Ok(Sent::Withheld(Problem::Unconvertible(format!(
                "stored in {stored}, which cannot be sent as {}",
                self.context_ts
            ))));
        }
        let mut file = match File::open(data.object_path(&inst.sha256)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Sent::Withheld(Problem::Damaged(Damage::Missing)))
            }
            Err(e) => {
                tracing::warn!(sop_instance_uid = %inst.sop_instance_uid, error = %e,
                    "stored object cannot be opened");
                return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable)));
            }
        };
        if stored == self.context_ts {
            return self.send_as_stored(inst, file);
        }
        if crate::decompress::can_decode(stored) {
            return self.send_decompressed(inst, &mut file);
        }
        // Implicit <-> Explicit VR LE, or inflated: check the bytes first, then stream.
        match sha256_of(&mut file) {
            Ok(h) if h == inst.sha256 => {}
            Ok(_) => return Ok(Sent::Withheld(Problem::Damaged(Damage::HashMismatch))),
            Err(_) => return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable))),
        }
        let offset = match file
            .seek(SeekFrom::Start(0))
            .and_then(|_| read_head(&mut file))
        {
            Ok(o) => o,
            Err(_) => return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable))),
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable)));
        }
        self.send_command(inst)?;
        let reader = BufReader::with_capacity(64 * 1024, file);
        let to_explicit = self.context_ts == syntax::EXPLICIT_LE;
        let mut w = pdu::PdvWriter::new(self.sock, self.peer_max_pdu, self.context_id);
        let result = if syntax::encoding(stored) == Some(Encoding::DeflatedLe) {
            let mut inflated = BufReader::new(flate2::read::DeflateDecoder::new(reader));
            if to_explicit {
                io::copy(&mut inflated, &mut w).map(|_| ())
            } else {
                crate::transcode::convert(&mut inflated, true, &mut w)
            }
        } else {
            crate::transcode::convert(&mut { reader }, stored == syntax::EXPLICIT_LE, &mut w)
        };
        result.map_err(broken)?;
        w.finish().map_err(broken)?;
        Ok(Sent::Intact)
    }

    /// Stream the data set as stored, hashing the whole file on the way.
    fn send_as_stored(&mut self, inst: &InstanceRef, file: File) -> Result<Sent, Broken> {
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable))),
        };
        let mut reader = Hashing {
            inner: BufReader::with_capacity(64 * 1024, file),
            hash: Sha256::new(),
        };
        let offset = match read_head(&mut reader) {
            Ok(o) if o <= size => o,
            _ => {
                let mut file = reader.inner.into_inner();
                return Ok(Sent::Withheld(classify(&mut file, &inst.sha256)));
            }
        };
        self.send_command(inst)?;
        pdu::send_stream(
            self.sock,
            self.peer_max_pdu,
            self.context_id,
            &mut reader,
            size - offset,
        )
        .map_err(broken)?;
        Ok(match reader.finish() {
            Ok(h) if h == inst.sha256 => Sent::Intact,
            _ => Sent::Damaged,
        })
    }

    /// Decode the encapsulated pixel data in memory and send Explicit (or Implicit) VR LE.
    fn send_decompressed(&mut self, inst: &InstanceRef, file: &mut File) -> Result<Sent, Broken> {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > crate::decompress::MAX_DECODED_BYTES {
            // the hash still says whether it is damaged or just large
            if let Problem::Damaged(d) = classify(file, &inst.sha256) {
                if d == Damage::HashMismatch {
                    return Ok(Sent::Withheld(Problem::Damaged(d)));
                }
            }
            return Ok(Sent::Withheld(Problem::Unconvertible(format!(
                "stored file of {size} bytes is over the {} byte limit for decompression",
                crate::decompress::MAX_DECODED_BYTES
            ))));
        }
        let _permit = crate::decompress::Permit::acquire();
        let mut bytes = Vec::with_capacity(size as usize);
        if file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .is_err()
        {
            return Ok(Sent::Withheld(Problem::Damaged(Damage::Unreadable)));
        }
        if hex::encode(Sha256::digest(&bytes)) != inst.sha256 {
            return Ok(Sent::Withheld(Problem::Damaged(Damage::HashMismatch)));
        }
        let explicit = match crate::decompress::to_explicit_le(&bytes, &inst.transfer_syntax) {
            Ok(d) => d,
            Err(e) => return Ok(Sent::Withheld(Problem::Unconvertible(e.to_string()))),
        };
        drop(bytes);
        self.send_command(inst)?;
        if self.context_ts == syntax::EXPLICIT_LE {
            let len = explicit.len() as u64;
            pdu::send_stream(
                self.sock,
                self.peer_max_pdu,
                self.context_id,
                &mut &explicit[..],
                len,
            )
            .map_err(broken)?;
        } else {
            let mut w = pdu::PdvWriter::new(self.sock, self.peer_max_pdu, self.context_id);
            crate::transcode::convert(&mut &explicit[..], true, &mut w).map_err(broken)?;
            w.finish().map_err(broken)?;
        }
        Ok(Sent::Intact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RLE: &str = "1.2.840.10008.1.2.5";
    const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

    #[test]
    fn conversions() {
        assert!(can_convert(RLE, RLE));
        assert!(can_convert(RLE, syntax::EXPLICIT_LE));
        assert!(can_convert(RLE, syntax::IMPLICIT_LE));
        assert!(!can_convert(syntax::EXPLICIT_LE, RLE));
        assert!(!can_convert(JPEG_LS, syntax::EXPLICIT_LE));
        assert!(can_convert(DEFLATED, syntax::IMPLICIT_LE));
        assert!(can_convert(syntax::IMPLICIT_LE, syntax::EXPLICIT_LE));
        assert!(!can_convert("1.2.840.10008.1.2.2", syntax::EXPLICIT_LE));
    }

    #[test]
    fn picks_the_stored_syntax_first_then_explicit_then_implicit() {
        let ctx = [
            (syntax::IMPLICIT_LE, 1u8),
            (syntax::EXPLICIT_LE, 3),
            (RLE, 5),
        ];
        assert_eq!(
            pick_context(RLE, ctx.iter().copied()),
            Some((5, RLE.into()))
        );
        assert_eq!(
            pick_context(JPEG_LS, ctx.iter().copied()),
            None,
            "no decoder, no context in the stored syntax"
        );
        let le = [(syntax::IMPLICIT_LE, 1u8), (syntax::EXPLICIT_LE, 3)];
        assert_eq!(
            pick_context(RLE, le.iter().copied()),
            Some((3, syntax::EXPLICIT_LE.into()))
        );
        let only_rle = [(RLE, 7u8)];
        assert_eq!(
            pick_context(syntax::EXPLICIT_LE, only_rle.iter().copied()),
            None
        );
    }

    /// A stored Part-10 object: (file bytes, data set bytes).
    fn part10(ts: &str) -> (Vec<u8>, Vec<u8>) {
        let mut ts_value = ts.as_bytes().to_vec();
        if ts_value.len() % 2 == 1 {
            ts_value.push(0);
        }
        let mut meta = Vec::new();
        meta.extend_from_slice(&[2, 0, 0x10, 0, b'U', b'I']);
        meta.extend_from_slice(&(ts_value.len() as u16).to_le_bytes());
        meta.extend_from_slice(&ts_value);
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
        file.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        file.extend_from_slice(&meta);
        // (0008,0018) UI "1.2", (7FE0,0010) OW 8 bytes
        let mut ds = vec![0x08, 0, 0x18, 0, b'U', b'I', 4, 0];
        ds.extend_from_slice(b"1.2\0");
        ds.extend_from_slice(&[0xE0, 0x7F, 0x10, 0, b'O', b'W', 0, 0, 8, 0, 0, 0]);
        ds.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        file.extend_from_slice(&ds);
        (file, ds)
    }

    struct Stored {
        dir: tempfile::TempDir,
        inst: InstanceRef,
        path: std::path::PathBuf,
    }

    fn store(file: &[u8], ts: &str) -> Stored {
        let dir = tempfile::tempdir().unwrap();
        let sha = hex::encode(Sha256::digest(file));
        let data = cairn_store::DataDir::new(dir.path());
        let path = data.object_path(&sha);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, file).unwrap();
        let inst = InstanceRef {
            sop_instance_uid: "1.2".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            transfer_syntax: ts.into(),
            sha256: sha,
        };
        Stored { dir, inst, path }
    }

    /// Send `s` on a context of syntax `ctx`; returns the outcome and the data set bytes that
    /// reached the peer (`None`: nothing at all was sent).
    fn send(s: &Stored, ctx: &str) -> (Sent, Option<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let data = cairn_store::DataDir::new(s.dir.path());
        let sent = Outgoing {
            sock: &mut client,
            peer_max_pdu: 16384,
            context_id: 1,
            context_ts: ctx,
            message_id: 7,
            move_origin: None,
        }
        .send(&s.inst, &data)
        .map_err(|b| b.0)
        .unwrap();
        drop(client);
        let mut wire = Vec::new();
        server.read_to_end(&mut wire).unwrap();
        if wire.is_empty() {
            return (sent, None);
        }
        let mut dataset = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            assert_eq!(wire[pos], pdu::types::P_DATA);
            let len = u32::from_be_bytes(wire[pos + 2..pos + 6].try_into().unwrap()) as usize;
            for pdv in pdu::split_pdvs(&wire[pos + 6..pos + 6 + len]).unwrap() {
                if !pdv.is_command {
                    dataset.extend_from_slice(pdv.data);
                }
            }
            pos += 6 + len;
        }
        (sent, Some(dataset))
    }

    #[test]
    fn an_intact_object_goes_as_stored_or_converted() {
        let (file, ds) = part10(syntax::EXPLICIT_LE);
        let s = store(&file, syntax::EXPLICIT_LE);
        assert_eq!(
            send(&s, syntax::EXPLICIT_LE),
            (Sent::Intact, Some(ds.clone()))
        );
        let (sent, got) = send(&s, syntax::IMPLICIT_LE);
        assert_eq!(sent, Sent::Intact);
        let got = got.unwrap();
        // implicit: tag then a 4-byte length
        assert_eq!(&got[..8], &[0x08, 0, 0x18, 0, 4, 0, 0, 0]);
        assert!(got.ends_with(&[1, 2, 3, 4, 5, 6, 7, 8]));
    }

    #[test]
    fn a_missing_or_changed_file_is_a_failed_sub_operation() {
        let (file, _) = part10(syntax::EXPLICIT_LE);
        let s = store(&file, syntax::EXPLICIT_LE);
        let mut changed = file.clone();
        let last = changed.len() - 1;
        changed[last] ^= 0xFF;
        std::fs::write(&s.path, &changed).unwrap();
        // as stored: found while it streams, the peer already has the bytes
        let (sent, got) = send(&s, syntax::EXPLICIT_LE);
        assert_eq!(sent, Sent::Damaged);
        assert!(got.is_some());
        // a conversion checks first: nothing goes out
        assert_eq!(
            send(&s, syntax::IMPLICIT_LE),
            (Sent::Withheld(Problem::Damaged(Damage::HashMismatch)), None)
        );
        // a head that is not Part 10 any more
        std::fs::write(&s.path, &changed[200..]).unwrap();
        assert_eq!(
            send(&s, syntax::EXPLICIT_LE),
            (Sent::Withheld(Problem::Damaged(Damage::HashMismatch)), None)
        );
        std::fs::remove_file(&s.path).unwrap();
        assert_eq!(
            send(&s, syntax::EXPLICIT_LE),
            (Sent::Withheld(Problem::Damaged(Damage::Missing)), None)
        );
    }

    #[test]
    fn an_object_without_a_decoder_is_not_sent() {
        let (file, _) = part10(JPEG_LS);
        let s = store(&file, JPEG_LS);
        let (sent, got) = send(&s, syntax::EXPLICIT_LE);
        assert!(
            matches!(sent, Sent::Withheld(Problem::Unconvertible(_))),
            "{sent:?}"
        );
        assert_eq!(got, None);
        // a broken RLE object: the decoder refuses it before anything is sent
        let (file, _) = part10(RLE);
        let s = store(&file, RLE);
        let (sent, got) = send(&s, syntax::EXPLICIT_LE);
        assert!(
            matches!(sent, Sent::Withheld(Problem::Unconvertible(_))),
            "{sent:?}"
        );
        assert_eq!(got, None);
    }

    #[test]
    fn head_of_a_part10_file() {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        f.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0, 6, 0, 0, 0]);
        f.extend_from_slice(&[9; 6]);
        f.extend_from_slice(&[7; 10]);
        let mut r = &f[..];
        assert_eq!(read_head(&mut r).unwrap(), 150);
        assert_eq!(r, &[7; 10]);
        assert!(read_head(&mut &f[..100]).is_err());
        let mut bad = f.clone();
        bad[128] = b'X';
        assert!(read_head(&mut &bad[..]).is_err());
    }
}
