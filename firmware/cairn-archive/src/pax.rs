//! A small POSIX pax (`ustar` + per-file `x` extended headers) writer and reader.
//!
//! Only what a bundle needs: regular files and directories. Plain ustar headers are written
//! whenever a field fits; a pax extended header (typeflag `x`) precedes a member only when
//! its path or size does not fit ustar. Never a global header (`g`), never a GNU extension
//! (no `L`/`K` long names, no base-256 numbers, magic `ustar\0` + version `00`).

use std::io::{self, Read};

/// One tar block.
pub const BLOCK: usize = 512;
/// The largest size an 11-digit octal ustar size field holds.
pub const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Round up to a whole number of blocks.
pub fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn put_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn put_str(field: &mut [u8], s: &str) -> bool {
    if s.len() > field.len() {
        return false;
    }
    field[..s.len()].copy_from_slice(s.as_bytes());
    true
}

/// What a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file (`0`).
    File,
    /// A directory (`5`).
    Dir,
}

/// A member's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive (relative, `/`-separated, ASCII).
    pub path: String,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// File or directory.
    pub kind: EntryType,
}

fn ustar_header(name: &str, size: u64, mtime: u64, typeflag: u8, mode: u32) -> Option<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, base) = split_name(name)?;
    if !put_str(&mut h[0..100], base) || !put_str(&mut h[345..500], prefix) {
        return None;
    }
    put_octal(&mut h[100..108], mode as u64);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    if !put_octal(&mut h[124..136], size) {
        return None;
    }
    put_octal(&mut h[136..148], mtime.min(USTAR_MAX_SIZE));
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    put_str(&mut h[265..297], "cairn");
    put_str(&mut h[297..329], "cairn");
    put_octal(&mut h[329..337], 0);
    put_octal(&mut h[337..345], 0);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Some(h)
}

/// Split a path into ustar prefix (≤155) and name (≤100), or None.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    let bytes = name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && name.len() - i > 1 {
            return Some((&name[..i], &name[i + 1..]));
        }
    }
    None
}

/// One pax record `"<len> key=value\n"`, where len counts the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    loop {
        let total = len.to_string().len() + body.len();
        if total == len {
            return format!("{len}{body}");
        }
        len = total;
    }
}

/// The header block(s) of one member: a pax `x` header first when needed, then ustar.
/// `ustar_size_limit` is [`USTAR_MAX_SIZE`] except in tests of the pax path.
pub fn header_blocks(e: &Entry, ustar_size_limit: u64) -> Vec<u8> {
    let (typeflag, mode, size) = match e.kind {
        EntryType::File => (b'0', 0o444, e.size),
        EntryType::Dir => (b'5', 0o555, 0),
    };
    let mut pax = String::new();
    let size_fits = size <= ustar_size_limit;
    let name_fits = e.path.is_ascii() && split_name(&e.path).is_some();
    if !size_fits {
        pax.push_str(&pax_record("size", &size.to_string()));
    }
    if !name_fits {
        pax.push_str(&pax_record("path", &e.path));
    }
    let mut out = Vec::with_capacity(3 * BLOCK);
    let ustar_name = if name_fits {
        e.path.clone()
    } else {
        // a short, informative stand-in for readers without pax support
        let tail: String = e
            .path
            .chars()
            .rev()
            .take(90)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        tail.trim_start_matches('/')
            .chars()
            .filter(char::is_ascii)
            .collect()
    };
    if !pax.is_empty() {
        let xname = format!(
            "PaxHeaders/{}",
            ustar_name.rsplit('/').next().unwrap_or("x")
        );
        let xname: String = xname.chars().take(100).collect();
        if let Some(h) = ustar_header(&xname, pax.len() as u64, e.mtime, b'x', 0o444) {
            out.extend_from_slice(&h);
            out.extend_from_slice(pax.as_bytes());
            out.resize(
                out.len() + (padded(pax.len() as u64) as usize - pax.len()),
                0,
            );
        }
    }
    let ustar_size = if size_fits { size } else { 0 };
    let h = ustar_header(&ustar_name, ustar_size, e.mtime, typeflag, mode)
        .or_else(|| ustar_header("member", ustar_size, e.mtime, typeflag, mode))
        .unwrap_or([0u8; BLOCK]);
    out.extend_from_slice(&h);
    out
}

/// The end of an archive: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0u8; 2 * BLOCK];

/// Reading failures.
#[derive(Debug, thiserror::Error)]
pub enum PaxError {
    /// The underlying read failed.
    #[error("read: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a member or before the end blocks.
    #[error("the archive is cut short")]
    Truncated,
    /// A header is not valid ustar/pax.
    #[error("bad tar header: {0}")]
    BadHeader(String),
}

fn parse_octal(field: &[u8]) -> Result<u64, PaxError> {
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| PaxError::BadHeader(format!("bad octal field {s:?}")))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A streaming reader of a pax/ustar archive.
pub struct Reader<R: Read> {
    inner: R,
    /// Bytes left in the current member's data, and its padding.
    left: u64,
    pad: u64,
}

impl<R: Read> Reader<R> {
    /// Read from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            left: 0,
            pad: 0,
        }
    }

    fn read_block(&mut self, buf: &mut [u8; BLOCK]) -> Result<(), PaxError> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                PaxError::Truncated
            } else {
                PaxError::Io(e)
            }
        })
    }

    fn skip_rest(&mut self) -> Result<(), PaxError> {
        let n = self.left + self.pad;
        if n > 0 {
            let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
            if copied != n {
                return Err(PaxError::Truncated);
            }
        }
        self.left = 0;
        self.pad = 0;
        Ok(())
    }

    /// The next member's header, or None at the end blocks. Unread data of the previous
    /// member is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, PaxError> {
        self.skip_rest()?;
        let mut pax_path = None;
        let mut pax_size = None;
        loop {
            let mut h = [0u8; BLOCK];
            self.read_block(&mut h)?;
            if h.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored = parse_octal(&h[148..156])?;
            let mut copy = h;
            copy[148..156].copy_from_slice(b"        ");
            let sum: u64 = copy.iter().map(|&b| b as u64).sum();
            if sum != stored {
                return Err(PaxError::BadHeader("checksum mismatch".into()));
            }
            if &h[257..263] != b"ustar\0" {
                return Err(PaxError::BadHeader("not a ustar/pax header".into()));
            }
            let size = parse_octal(&h[124..136])?;
            let typeflag = h[156];
            if typeflag == b'x' {
                if size > 1 << 20 {
                    return Err(PaxError::BadHeader("pax header too large".into()));
                }
                let mut data = vec![0u8; padded(size) as usize];
                self.inner
                    .read_exact(&mut data)
                    .map_err(|_| PaxError::Truncated)?;
                data.truncate(size as usize);
                let text = String::from_utf8_lossy(&data).into_owned();
                for rec in text.split_terminator('\n') {
                    let Some((_, kv)) = rec.split_once(' ') else {
                        continue;
                    };
                    if let Some(v) = kv.strip_prefix("path=") {
                        pax_path = Some(v.to_string());
                    } else if let Some(v) = kv.strip_prefix("size=") {
                        pax_size = Some(
                            v.parse::<u64>()
                                .map_err(|_| PaxError::BadHeader("bad pax size".into()))?,
                        );
                    }
                }
                continue;
            }
            let kind = match typeflag {
                b'0' | 0 => EntryType::File,
                b'5' => EntryType::Dir,
                t => {
                    return Err(PaxError::BadHeader(format!(
                        "unexpected member type {:?}",
                        t as char
                    )))
                }
            };
            let name = cstr(&h[0..100]);
            let prefix = cstr(&h[345..500]);
            let path = pax_path.take().unwrap_or(if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            });
            let size = pax_size.take().unwrap_or(size);
            let size = if kind == EntryType::Dir { 0 } else { size };
            self.left = size;
            self.pad = padded(size) - size;
            return Ok(Some(Entry {
                path,
                size,
                mtime: parse_octal(&h[136..148])?,
                kind,
            }));
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Read some of the current member's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, PaxError> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(PaxError::Truncated);
        }
        self.left -= n as u64;
        Ok(n)
    }
}
