//! The bundle format: what one pax tar (tape) or one session (optical)
//! holds, built in one streaming pass that hashes every object while it is copied.
//!
//! Members, in this order:
//! 1. `MANIFEST.sha256`: `<sha256>  <path>` for every other member (`sha256sum -c` in the
//!    extracted directory checks them all);
//! 2. `index.csv`: one row per object: where it is and the patient/study/series/instance data
//!    needed to re-index it without cairn's database;
//! 3. `AUDIT-HEAD.json`: the audit chain head when the bundle was closed, and the bundle's id;
//! 4. `holds.csv`: every legal hold, active and released, when the bundle was built
//!    ([`crate::holds_csv`]); bundles written before it existed lack it and are still valid;
//! 5. `objects/` and `objects/<sha256>.dcm`, the Part-10 files byte for byte.
//!
//! The manifest comes first (with the hashes the index holds), so a reader learns what a bundle
//! holds from its first records; each object is hashed again while it streams and a mismatch
//! aborts the bundle (a damaged hot file is never archived under its name).

use crate::csv;
pub use crate::holds_csv::{parse_holds_csv, HOLDS_CSV};
use crate::pax::{self, Entry, EntryType};
use crate::ArchiveError;
use cairn_store::HoldRecord;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;

/// Name of the manifest member.
pub const MANIFEST: &str = "MANIFEST.sha256";
/// Name of the index member.
pub const INDEX_CSV: &str = "index.csv";
/// Name of the audit head member.
pub const AUDIT_HEAD: &str = "AUDIT-HEAD.json";
/// Bundle format version written in `AUDIT-HEAD.json`. Still 1 with `holds.csv`: a member a
/// reader does not know is hashed like any other and otherwise ignored, and a bundle without it
/// is valid.
pub const FORMAT_VERSION: u32 = 1;

/// The `index.csv` header line (column names).
pub const INDEX_COLUMNS: &[&str] = &[
    "path",
    "sha256",
    "size",
    "sop_instance_uid",
    "sop_class_uid",
    "instance_number",
    "transfer_syntax",
    "received_at",
    "source_ae",
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "study_instance_uid",
    "study_date",
    "study_time",
    "study_description",
    "accession_number",
    "referring_physician",
    "study_id",
    "series_instance_uid",
    "modality",
    "series_number",
    "series_description",
    "body_part",
];

/// One object in a bundle, with what `index.csv` records about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// SHA-256 of the file (lowercase hex), its name in `objects/`.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The index record (patient, study, series, instance).
    pub record: cairn_store::InstanceRecord,
    /// When the box received it.
    pub received_at: String,
    /// Who sent it.
    pub source_ae: String,
}

impl Member {
    /// Path inside the bundle.
    pub fn path(&self) -> String {
        format!("objects/{}.dcm", self.sha256)
    }
}

/// The audit head and identity written into each bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleHead {
    /// `cairn-bundle`.
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The bundle's id (`<volume id>.<file number>`).
    pub bundle_id: String,
    /// The volume it was written to.
    pub volume_id: String,
    /// The box that wrote it.
    pub box_id: String,
    /// When it was closed (RFC 3339).
    pub closed_at: String,
    /// Number of objects.
    pub members: u64,
    /// Audit chain head: sequence number.
    pub audit_seq: i64,
    /// Audit chain head: hash.
    pub audit_hash: String,
}

/// The whole `index.csv` text.
pub fn index_csv(members: &[Member]) -> String {
    let mut out = INDEX_COLUMNS.join(",");
    out.push('\n');
    for m in members {
        let r = &m.record;
        let size = m.size.to_string();
        let fields: [&str; 26] = [
            &m.path(),
            &m.sha256,
            &size,
            &r.sop_instance_uid,
            &r.sop_class_uid,
            &r.instance_number,
            &r.transfer_syntax,
            &m.received_at,
            &m.source_ae,
            &r.patient.id,
            &r.patient.issuer,
            &r.patient.name,
            &r.patient.birth_date,
            &r.patient.sex,
            &r.study.uid,
            &r.study.date,
            &r.study.time,
            &r.study.description,
            &r.study.accession,
            &r.study.referring_physician,
            &r.study.study_id,
            &r.series.uid,
            &r.series.modality,
            &r.series.number,
            &r.series.description,
            &r.series.body_part,
        ];
        csv::push_row(&mut out, &fields);
    }
    out
}

/// Parse `index.csv` text back into members (RFC 4180 quoting).
pub fn parse_index_csv(text: &str) -> Result<Vec<Member>, ArchiveError> {
    let rows = csv::parse(text);
    let mut it = rows.into_iter();
    let header = it.next().unwrap_or_default();
    let idx = csv::positions(&header, INDEX_COLUMNS)
        .map_err(|c| ArchiveError::Format(format!("index.csv lacks the column {c}")))?;
    let mut out = Vec::new();
    for row in it {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        let g = |i: usize| row.get(idx[i]).cloned().unwrap_or_default();
        let mut m = Member {
            sha256: g(1),
            size: g(2)
                .parse()
                .map_err(|_| ArchiveError::Format("index.csv: bad size".into()))?,
            received_at: g(7),
            source_ae: g(8),
            ..Default::default()
        };
        let r = &mut m.record;
        r.sop_instance_uid = g(3);
        r.sop_class_uid = g(4);
        r.instance_number = g(5);
        r.transfer_syntax = g(6);
        r.patient.id = g(9);
        r.patient.issuer = g(10);
        r.patient.name = g(11);
        r.patient.birth_date = g(12);
        r.patient.sex = g(13);
        r.study.uid = g(14);
        r.study.date = g(15);
        r.study.time = g(16);
        r.study.description = g(17);
        r.study.accession = g(18);
        r.study.referring_physician = g(19);
        r.study.study_id = g(20);
        r.series.uid = g(21);
        r.series.modality = g(22);
        r.series.number = g(23);
        r.series.description = g(24);
        r.series.body_part = g(25);
        if !crate::is_sha256_hex(&m.sha256) {
            return Err(ArchiveError::Format("index.csv: bad sha256".into()));
        }
        out.push(m);
    }
    Ok(out)
}

/// The manifest text: the small members first, then every object.
pub fn manifest(small: &[(&str, &[u8])], members: &[Member]) -> String {
    let mut out = String::new();
    for (name, bytes) in small {
        out.push_str(&hex::encode(Sha256::digest(bytes)));
        out.push_str("  ");
        out.push_str(name);
        out.push('\n');
    }
    for m in members {
        out.push_str(&m.sha256);
        out.push_str("  ");
        out.push_str(&m.path());
        out.push('\n');
    }
    out
}

/// Parse a manifest into (sha256, path) pairs.
pub fn parse_manifest(text: &str) -> Result<Vec<(String, String)>, ArchiveError> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let (h, p) = line
            .split_once("  ")
            .ok_or_else(|| ArchiveError::Format("bad MANIFEST.sha256 line".into()))?;
        if !crate::is_sha256_hex(h) {
            return Err(ArchiveError::Format("bad hash in MANIFEST.sha256".into()));
        }
        out.push((h.to_string(), p.to_string()));
    }
    Ok(out)
}

/// The small members of a bundle, ready to write.
#[derive(Debug, Clone)]
pub struct SmallFiles {
    /// `MANIFEST.sha256`.
    pub manifest: Vec<u8>,
    /// `index.csv`.
    pub index: Vec<u8>,
    /// `AUDIT-HEAD.json`.
    pub head: Vec<u8>,
    /// `holds.csv`.
    pub holds: Vec<u8>,
}

impl SmallFiles {
    /// Build them for these members and the box's legal holds.
    pub fn new(
        head: &BundleHead,
        members: &[Member],
        holds: &[HoldRecord],
    ) -> Result<Self, ArchiveError> {
        let index = index_csv(members).into_bytes();
        let mut head_json = serde_json::to_vec_pretty(head)
            .map_err(|e| ArchiveError::Format(format!("bundle head: {e}")))?;
        head_json.push(b'\n');
        let holds = crate::holds_csv::holds_csv(holds).into_bytes();
        let manifest = manifest(
            &[
                (INDEX_CSV, &index),
                (AUDIT_HEAD, &head_json),
                (HOLDS_CSV, &holds),
            ],
            members,
        )
        .into_bytes();
        Ok(Self {
            manifest,
            index,
            head: head_json,
            holds,
        })
    }

    /// The members before `objects/`, in their order in the bundle (manifest first).
    pub fn in_order(&self) -> [(&'static str, &[u8]); 4] {
        [
            (MANIFEST, &self.manifest),
            (INDEX_CSV, &self.index),
            (AUDIT_HEAD, &self.head),
            (HOLDS_CSV, &self.holds),
        ]
    }
}

/// Where a tar stream goes: whole records of the drive's block size.
pub trait RecordSink {
    /// Write one record (exactly the record size).
    fn write_record(&mut self, record: &[u8]) -> Result<(), ArchiveError>;
}

/// Streams a bundle as a pax tar into fixed-size records.
pub struct TarStreamer<'a, S: RecordSink> {
    sink: &'a mut S,
    buf: Vec<u8>,
    fill: usize,
    /// Bytes of the tar stream produced so far.
    pub bytes: u64,
    ustar_size_limit: u64,
}

impl<'a, S: RecordSink> TarStreamer<'a, S> {
    /// Records of `record_size` bytes (a multiple of 512).
    pub fn new(sink: &'a mut S, record_size: usize) -> Self {
        Self {
            sink,
            buf: vec![0u8; record_size],
            fill: 0,
            bytes: 0,
            ustar_size_limit: pax::USTAR_MAX_SIZE,
        }
    }

    /// Use pax size headers above this size (tests of the pax path).
    pub fn with_ustar_size_limit(mut self, limit: u64) -> Self {
        self.ustar_size_limit = limit;
        self
    }

    fn push(&mut self, mut data: &[u8]) -> Result<(), ArchiveError> {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            let n = (self.buf.len() - self.fill).min(data.len());
            self.buf[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == self.buf.len() {
                self.sink.write_record(&self.buf)?;
                self.fill = 0;
            }
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), ArchiveError> {
        let pad = (pax::padded(len) - len) as usize;
        if pad > 0 {
            self.push(&[0u8; pax::BLOCK][..pad])?;
        }
        Ok(())
    }

    /// Add a small in-memory file.
    pub fn add_bytes(&mut self, path: &str, data: &[u8], mtime: u64) -> Result<(), ArchiveError> {
        let h = pax::header_blocks(
            &Entry {
                path: path.into(),
                size: data.len() as u64,
                mtime,
                kind: EntryType::File,
            },
            self.ustar_size_limit,
        );
        self.push(&h)?;
        self.push(data)?;
        self.pad(data.len() as u64)
    }

    /// Add a directory entry.
    pub fn add_dir(&mut self, path: &str, mtime: u64) -> Result<(), ArchiveError> {
        let h = pax::header_blocks(
            &Entry {
                path: path.into(),
                size: 0,
                mtime,
                kind: EntryType::Dir,
            },
            self.ustar_size_limit,
        );
        self.push(&h)
    }

    /// Stream a file of `size` bytes from `src`, filling records in place and hashing while
    /// copying. Returns the SHA-256 of what was written. A source shorter or longer than
    /// `size` is an error.
    pub fn add_stream(
        &mut self,
        path: &str,
        size: u64,
        mtime: u64,
        src: &mut dyn Read,
    ) -> Result<String, ArchiveError> {
        let h = pax::header_blocks(
            &Entry {
                path: path.into(),
                size,
                mtime,
                kind: EntryType::File,
            },
            self.ustar_size_limit,
        );
        self.push(&h)?;
        let mut hasher = Sha256::new();
        let mut left = size;
        while left > 0 {
            let room = (self.buf.len() - self.fill).min(left.min(usize::MAX as u64) as usize);
            let n = src
                .read(&mut self.buf[self.fill..self.fill + room])
                .map_err(|e| ArchiveError::Source(format!("read {path}: {e}")))?;
            if n == 0 {
                return Err(ArchiveError::Source(format!(
                    "{path} is shorter than indexed"
                )));
            }
            hasher.update(&self.buf[self.fill..self.fill + n]);
            self.fill += n;
            self.bytes += n as u64;
            left -= n as u64;
            if self.fill == self.buf.len() {
                self.sink.write_record(&self.buf)?;
                self.fill = 0;
            }
        }
        self.pad(size)?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Write the end blocks and the last, zero-padded record. Returns the tar stream's length
    /// (before the record padding).
    pub fn finish(mut self) -> Result<u64, ArchiveError> {
        self.push(&pax::END)?;
        let len = self.bytes;
        if self.fill > 0 {
            self.buf[self.fill..].fill(0);
            self.sink.write_record(&self.buf)?;
            self.fill = 0;
        }
        Ok(len)
    }
}

/// Where the objects' bytes come from while a bundle is written.
pub trait ObjectSource {
    /// Open the object with this SHA-256 for reading.
    fn open(&self, sha256: &str) -> Result<Box<dyn Read>, ArchiveError>;
}

/// Objects read from the hot store's `objects/` tree.
#[derive(Debug, Clone)]
pub struct StoreObjects {
    /// The store's data directory.
    pub data: cairn_store::DataDir,
}

impl ObjectSource for StoreObjects {
    fn open(&self, sha256: &str) -> Result<Box<dyn Read>, ArchiveError> {
        let p: PathBuf = self.data.object_path(sha256);
        let f = std::fs::File::open(&p)
            .map_err(|e| ArchiveError::Source(format!("open object {sha256}: {e}")))?;
        Ok(Box::new(f))
    }
}

/// Write a whole bundle as one tar stream: small files, then every object (hashed while
/// streaming, compared with its name). Returns the tar length.
pub fn write_tar<S: RecordSink>(
    sink: &mut S,
    record_size: usize,
    small: &SmallFiles,
    members: &[Member],
    src: &dyn ObjectSource,
    mtime: u64,
) -> Result<u64, ArchiveError> {
    let mut t = TarStreamer::new(sink, record_size);
    for (name, bytes) in small.in_order() {
        t.add_bytes(name, bytes, mtime)?;
    }
    t.add_dir("objects/", mtime)?;
    for m in members {
        let damaged = |e: ArchiveError| match e {
            ArchiveError::Source(_) => ArchiveError::HotCopyDamaged {
                sha256: m.sha256.clone(),
            },
            other => other,
        };
        let mut r = src.open(&m.sha256).map_err(damaged)?;
        let got = t
            .add_stream(&m.path(), m.size, mtime, &mut r)
            .map_err(damaged)?;
        if got != m.sha256 {
            return Err(ArchiveError::HotCopyDamaged {
                sha256: m.sha256.clone(),
            });
        }
    }
    t.finish()
}

/// What a read-back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// The manifest's entries (sha256, path), in order.
    pub manifest: Vec<(String, String)>,
    /// The members from `index.csv`.
    pub members: Vec<Member>,
    /// The bundle head.
    pub head: Option<BundleHead>,
    /// The legal holds from `holds.csv`; `None` for a bundle without it (written before it
    /// existed).
    pub holds: Option<Vec<HoldRecord>>,
    /// Objects whose bytes hashed to their manifest entry.
    pub good: Vec<String>,
    /// Paths whose bytes did not match the manifest (or were missing).
    pub bad: Vec<String>,
    /// Whether the archive ended with its end blocks (a complete tar).
    pub complete: bool,
    /// Bytes of the tar stream up to and including its end blocks (tape), or of the files
    /// (optical).
    pub tar_bytes: u64,
    /// SHA-256 of the `MANIFEST.sha256` member as read.
    pub manifest_sha256: String,
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

impl ReadBack {
    /// Every manifest entry present and matching, and the tar complete.
    pub fn all_good(&self) -> bool {
        self.complete && self.bad.is_empty() && self.good.len() == self.members.len()
    }
}

/// Read a bundle's tar stream back, hashing every member and comparing with the manifest.
/// A truncated stream is reported (`complete == false`), not an error.
pub fn read_back(src: impl Read) -> Result<ReadBack, ArchiveError> {
    let mut r = pax::Reader::new(Counting { inner: src, n: 0 });
    let mut out = ReadBack::default();
    let mut expected: std::collections::HashMap<String, String> = Default::default();
    let mut seen = std::collections::HashSet::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let e = match r.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => {
                out.complete = true;
                // the first end block was read; the second follows
                out.tar_bytes = r.get_ref().n + pax::BLOCK as u64;
                break;
            }
            Err(pax::PaxError::Truncated) => break,
            Err(pax::PaxError::Io(e)) => return Err(ArchiveError::Io(e.to_string())),
            Err(e) => return Err(ArchiveError::Format(e.to_string())),
        };
        if e.kind == EntryType::Dir {
            continue;
        }
        let small = [MANIFEST, INDEX_CSV, AUDIT_HEAD, HOLDS_CSV].contains(&e.path.as_str());
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let mut truncated = false;
        loop {
            match r.read_data(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    if small && kept.len() < 64 << 20 {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
                Err(pax::PaxError::Truncated) => {
                    truncated = true;
                    break;
                }
                Err(e) => return Err(ArchiveError::Io(e.to_string())),
            }
        }
        if truncated {
            break;
        }
        let got = hex::encode(hasher.finalize());
        if e.path == MANIFEST {
            out.manifest_sha256 = got.clone();
            let text = String::from_utf8_lossy(&kept);
            out.manifest = parse_manifest(&text)?;
            for (h, p) in &out.manifest {
                expected.insert(p.clone(), h.clone());
            }
            continue;
        }
        match expected.get(&e.path) {
            Some(h) if *h == got => {
                seen.insert(e.path.clone());
                if e.path == INDEX_CSV {
                    out.members = parse_index_csv(&String::from_utf8_lossy(&kept))?;
                } else if e.path == AUDIT_HEAD {
                    out.head = serde_json::from_slice(&kept).ok();
                } else if e.path == HOLDS_CSV {
                    out.holds = Some(parse_holds_csv(&String::from_utf8_lossy(&kept))?);
                } else if let Some(sha) = e
                    .path
                    .strip_prefix("objects/")
                    .and_then(|s| s.strip_suffix(".dcm"))
                {
                    out.good.push(sha.to_string());
                }
            }
            _ => out.bad.push(e.path.clone()),
        }
    }
    for (_, p) in &out.manifest {
        if !seen.contains(p) && !out.bad.contains(p) && out.complete {
            out.bad.push(p.clone());
        }
    }
    Ok(out)
}
