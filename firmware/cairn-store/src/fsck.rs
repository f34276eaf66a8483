//! `fsck`: prove the store. Every indexed file exists with its hash; no orphans; no temp files.

use crate::index::open_ro;
use crate::layout::{is_sha256_hex, walk_objects, DataDir};
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Skip re-hashing file contents (only existence and size).
    pub quick: bool,
}

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An indexed file is missing.
    Missing {
        /// SOP Instance UID.
        sop_instance_uid: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// An indexed file's size differs from the index.
    WrongSize {
        /// The file.
        path: PathBuf,
        /// Size in the index.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// An indexed file's content no longer hashes to its name.
    WrongHash {
        /// The file.
        path: PathBuf,
    },
    /// A file under `objects/` that no row points to.
    Orphan {
        /// The file.
        path: PathBuf,
    },
    /// A leftover temporary file in `spool/`.
    SpoolLeftover {
        /// The file.
        path: PathBuf,
    },
    /// SQLite's own integrity check failed.
    Database {
        /// What it said.
        message: String,
    },
    /// The audit chain is broken.
    Audit {
        /// What is wrong.
        message: String,
    },
    /// A file of a study in the archive tier lacks the immutable attribute, on a filesystem
    /// that has it.
    NotImmutable {
        /// The file.
        path: PathBuf,
        /// Its study.
        study_uid: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing {
                sop_instance_uid,
                path,
            } => write!(
                f,
                "missing file {} (instance {sop_instance_uid})",
                path.display()
            ),
            Problem::WrongSize {
                path,
                expected,
                found,
            } => write!(
                f,
                "wrong size {}: index says {expected} bytes, disk has {found}",
                path.display()
            ),
            Problem::WrongHash { path } => {
                write!(
                    f,
                    "damaged file {}: content does not match its SHA-256",
                    path.display()
                )
            }
            Problem::Orphan { path } => {
                write!(f, "orphan file {} (not in the index)", path.display())
            }
            Problem::SpoolLeftover { path } => {
                write!(f, "half-written temporary file {}", path.display())
            }
            Problem::Database { message } => write!(f, "index database: {message}"),
            Problem::Audit { message } => write!(f, "audit trail: {message}"),
            Problem::NotImmutable { path, study_uid } => write!(
                f,
                "archived file {} (study {study_uid}) lacks the immutable attribute",
                path.display()
            ),
        }
    }
}

/// The result of a check.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Index rows checked.
    pub rows: u64,
    /// Files checked.
    pub files: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Everything wrong.
    pub problems: Vec<Problem>,
    /// Whether the archived files' immutable attribute was checked (it is when this process
    /// holds `CAP_LINUX_IMMUTABLE`, as the daemon that sets it does).
    pub immutable_checked: bool,
}

pub(crate) fn sha256_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Check the whole store. Read-only: it reports and never repairs.
pub fn fsck(data: &DataDir, opts: FsckOptions) -> Result<FsckReport, StoreError> {
    let conn = open_ro(&data.db())?;
    let mut report = FsckReport::default();
    let ic: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if ic != "ok" {
        report.problems.push(Problem::Database { message: ic });
    }
    let mut known = HashSet::new();
    let mut stmt = conn.prepare("SELECT sop_instance_uid, sha256, size FROM instances")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (uid, sha, size) = row?;
        report.rows += 1;
        if !is_sha256_hex(&sha) {
            report.problems.push(Problem::Database {
                message: format!("instance {uid} has a malformed sha256"),
            });
            continue;
        }
        if !known.insert(sha.clone()) {
            continue;
        }
        let path = data.object_path(&sha);
        match std::fs::metadata(&path) {
            Err(_) => report.problems.push(Problem::Missing {
                sop_instance_uid: uid,
                path,
            }),
            Ok(m) if m.len() != size as u64 => report.problems.push(Problem::WrongSize {
                path,
                expected: size as u64,
                found: m.len(),
            }),
            Ok(_) if !opts.quick => match sha256_file(&path) {
                Ok((h, n)) => {
                    report.bytes_hashed += n;
                    if h != sha {
                        report.problems.push(Problem::WrongHash { path });
                    }
                }
                Err(_) => report.problems.push(Problem::WrongHash { path }),
            },
            Ok(_) => {}
        }
    }
    // files of a committed removal the writer is about to delete are not orphans (an index
    // older than the removal tables has none)
    let removing: HashSet<std::path::PathBuf> = conn
        .prepare("SELECT path FROM pending_unlinks")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|rel| data.root().join(rel))
        .collect();
    for path in walk_objects(&data.objects()) {
        if removing.contains(&path) {
            continue;
        }
        report.files += 1;
        let sha = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".dcm"))
            .unwrap_or("");
        let in_place = is_sha256_hex(sha) && data.object_path(sha) == path;
        if !in_place || !known.contains(sha) {
            report.problems.push(Problem::Orphan { path });
        }
    }
    if let Ok(rd) = std::fs::read_dir(data.spool()) {
        for e in rd.flatten() {
            report
                .problems
                .push(Problem::SpoolLeftover { path: e.path() });
        }
    }
    check_immutable(&conn, data, &mut report)?;
    let anchor = cairn_audit::read_anchor(&data.audit_anchor())
        .ok()
        .flatten();
    let audit = cairn_audit::verify(&conn, anchor.as_ref())?;
    for f in audit.findings {
        report.problems.push(Problem::Audit {
            message: f.to_string(),
        });
    }
    Ok(report)
}

/// Reports every file of a study in the archive tier that lacks the immutable attribute
/// where it could be set: on a filesystem that has the flag, checked by a process that holds
/// `CAP_LINUX_IMMUTABLE` (as the daemon that sets it does; one without it could not have set
/// it either, so nothing is concluded), outside a demo box. A missing file is reported by the
/// main check.
fn check_immutable(
    conn: &rusqlite::Connection,
    data: &DataDir,
    report: &mut FsckReport,
) -> Result<(), StoreError> {
    use cairn_files::immutable::{immutable_flag, may_set, Flag};
    // a demo box (its data directory holds the emulated hardware, hw/) leaves the attribute
    // off, so that a person can delete its folder: nothing is expected there
    if !may_set() || data.root().join("hw").is_dir() {
        return Ok(());
    }
    report.immutable_checked = true;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT i.sha256, st.study_uid FROM instances i
           JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
         WHERE st.tier = 'archive' ORDER BY st.study_uid, i.sha256",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (sha, study_uid) = row?;
        if !is_sha256_hex(&sha) {
            continue;
        }
        let path = data.object_path(&sha);
        if let Ok(Flag::Clear) = immutable_flag(&path) {
            report
                .problems
                .push(Problem::NotImmutable { path, study_uid });
        }
    }
    Ok(())
}

/// Verify the audit chain only (with the anchor file, when present).
pub fn verify_audit(data: &DataDir) -> Result<cairn_audit::Report, StoreError> {
    let conn = open_ro(&data.db())?;
    let anchor = cairn_audit::read_anchor(&data.audit_anchor())?;
    Ok(cairn_audit::verify(&conn, anchor.as_ref())?)
}
