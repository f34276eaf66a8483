//! Bundles on optical discs: the label file in the first session, then one session per bundle
//! holding `/<bundle id>/` with the same members as a tape bundle. Objects go to `xorriso`
//! straight from the store's `objects/` tree (no copy); the small files are staged in the
//! data directory's `archive-tmp/`.

use crate::bundle::{self, parse_index_csv, parse_manifest, Member, ReadBack, SmallFiles};
use crate::label::{Label, OPTICAL_LABEL};
use crate::ArchiveError;
use cairn_hal::optical::{OpticalDrive, OpticalError, OpticalErrorKind};
use cairn_store::DataDir;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Block size recorded in an optical label.
pub const OPTICAL_BLOCK: u32 = 2048;

impl From<OpticalError> for ArchiveError {
    fn from(e: OpticalError) -> Self {
        match e.kind() {
            OpticalErrorKind::NoMedium => ArchiveError::Refused(format!("optical: {e}")),
            _ => ArchiveError::Optical(e.to_string()),
        }
    }
}

/// The scratch directory for staging and read-back.
pub fn scratch(data: &DataDir) -> PathBuf {
    data.root().join("archive-tmp")
}

fn fresh_dir(p: &Path) -> Result<(), ArchiveError> {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).map_err(|e| ArchiveError::Io(format!("{}: {e}", p.display())))
}

/// What the disc in the drive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscLabel {
    /// No disc.
    NoMedium,
    /// Nothing recorded.
    Blank,
    /// A cairn label.
    Cairn(Label),
    /// Recorded, but not by cairn (never written to).
    Foreign,
}

/// Read the label of the disc in the drive.
pub fn read_label(drive: &mut dyn OpticalDrive, data: &DataDir) -> Result<DiscLabel, ArchiveError> {
    let st = drive.status()?;
    if !st.loaded {
        return Ok(DiscLabel::NoMedium);
    }
    if st.sessions == 0 {
        return Ok(DiscLabel::Blank);
    }
    let dir = scratch(data).join("label");
    fresh_dir(&dir)?;
    let dest = dir.join(OPTICAL_LABEL);
    let r = match drive.extract(&format!("/{OPTICAL_LABEL}"), &dest) {
        Ok(()) => std::fs::read(&dest)
            .ok()
            .and_then(|b| Label::parse(&b))
            .map(DiscLabel::Cairn)
            .unwrap_or(DiscLabel::Foreign),
        Err(_) => DiscLabel::Foreign,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

/// Write the label as the first session of a blank disc.
pub fn write_label(
    drive: &mut dyn OpticalDrive,
    data: &DataDir,
    label: &Label,
) -> Result<(), ArchiveError> {
    let dir = scratch(data).join("label");
    fresh_dir(&dir)?;
    let p = dir.join(OPTICAL_LABEL);
    let mut bytes =
        serde_json::to_vec_pretty(label).map_err(|e| ArchiveError::Format(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(&p, bytes).map_err(|e| ArchiveError::Io(e.to_string()))?;
    let r = drive.write_session("CAIRN_LABEL", &[(format!("/{OPTICAL_LABEL}"), p)]);
    let _ = std::fs::remove_dir_all(&dir);
    r?;
    Ok(())
}

/// Write one bundle as one session. Returns (session number, bytes of the session's files).
/// A disc without room refuses before writing anything (`Optical` error with kind Full is
/// mapped to [`crate::ErrorKind::EarlyWarning`] by the caller through [`is_full`]).
pub fn write_bundle(
    drive: &mut dyn OpticalDrive,
    data: &DataDir,
    bundle_id: &str,
    session_label: &str,
    small: &SmallFiles,
    members: &[Member],
) -> Result<(u32, u64), OpticalWriteError> {
    let dir = scratch(data).join(format!("stage-{bundle_id}"));
    fresh_dir(&dir).map_err(OpticalWriteError::Other)?;
    let mut files = Vec::with_capacity(members.len() + 4);
    let mut bytes = 0u64;
    for (name, content) in small.in_order() {
        let p = dir.join(name);
        std::fs::write(&p, content)
            .map_err(|e| OpticalWriteError::Other(ArchiveError::Io(e.to_string())))?;
        bytes += content.len() as u64;
        files.push((format!("/{bundle_id}/{name}"), p));
    }
    for m in members {
        bytes += m.size;
        files.push((
            format!("/{bundle_id}/{}", m.path()),
            data.object_path(&m.sha256),
        ));
    }
    let r = drive.write_session(session_label, &files);
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Ok(info) => Ok((info.number, bytes)),
        Err(e) if matches!(e.kind(), OpticalErrorKind::Full | OpticalErrorKind::Closed) => {
            Err(OpticalWriteError::Full(e.to_string()))
        }
        Err(e) => Err(OpticalWriteError::Other(e.into())),
    }
}

/// How an optical bundle write failed.
#[derive(Debug)]
pub enum OpticalWriteError {
    /// The disc has no room (nothing written): the volume is full, use the next one.
    Full(String),
    /// Anything else.
    Other(ArchiveError),
}

/// Read one bundle back from the disc: MD5 check of the disc, then extract `/<bundle id>/` and
/// compare every file's SHA-256 with the manifest.
pub fn verify_bundle(
    drive: &mut dyn OpticalDrive,
    data: &DataDir,
    bundle_id: &str,
) -> Result<ReadBack, ArchiveError> {
    drive.check_md5()?;
    let dir = scratch(data).join(format!("verify-{bundle_id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(scratch(data)).map_err(|e| ArchiveError::Io(e.to_string()))?;
    let r = drive
        .extract(&format!("/{bundle_id}"), &dir)
        .map_err(ArchiveError::from)
        .and_then(|_| read_dir_back(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn hash_file(p: &Path) -> Result<String, ArchiveError> {
    let mut f = std::fs::File::open(p).map_err(|e| ArchiveError::Io(e.to_string()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ArchiveError::Io(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check an extracted bundle directory against its manifest.
pub fn read_dir_back(dir: &Path) -> Result<ReadBack, ArchiveError> {
    let mut out = ReadBack::default();
    let manifest = std::fs::read_to_string(dir.join(bundle::MANIFEST))
        .map_err(|e| ArchiveError::Format(format!("no manifest: {e}")))?;
    out.manifest = parse_manifest(&manifest)?;
    out.manifest_sha256 = hex::encode(Sha256::digest(manifest.as_bytes()));
    out.tar_bytes = manifest.len() as u64;
    for (h, p) in &out.manifest {
        let path = dir.join(p);
        out.tar_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match hash_file(&path) {
            Ok(got) if got == *h => {
                if let Some(sha) = p
                    .strip_prefix("objects/")
                    .and_then(|s| s.strip_suffix(".dcm"))
                {
                    out.good.push(sha.to_string());
                } else if p == bundle::INDEX_CSV {
                    let t = std::fs::read_to_string(&path)
                        .map_err(|e| ArchiveError::Io(e.to_string()))?;
                    out.members = parse_index_csv(&t)?;
                } else if p == bundle::AUDIT_HEAD {
                    out.head = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                } else if p == bundle::HOLDS_CSV {
                    let t = std::fs::read_to_string(&path)
                        .map_err(|e| ArchiveError::Io(e.to_string()))?;
                    out.holds = Some(bundle::parse_holds_csv(&t)?);
                }
            }
            _ => out.bad.push(p.clone()),
        }
    }
    out.complete = true;
    Ok(out)
}

/// The bundle directories on the disc (top-level directories holding a manifest).
pub fn bundle_dirs(drive: &mut dyn OpticalDrive) -> Result<Vec<String>, ArchiveError> {
    let mut out = Vec::new();
    for e in drive.list()? {
        if let Some(rest) = e.path.strip_prefix('/') {
            if let Some((dir, name)) = rest.split_once('/') {
                if name == bundle::MANIFEST {
                    out.push(dir.to_string());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
