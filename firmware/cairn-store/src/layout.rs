//! Where things live inside the data directory.

use crate::StoreError;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The data directory and the fixed layout inside it.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Use `root` as the data directory (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `objects/`: the stored DICOM files.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }
    /// `spool/`: files being received.
    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }
    /// `quarantine/`: files found in `objects/` with no index row after a crash.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// The SQLite index.
    pub fn db(&self) -> PathBuf {
        self.root.join("cairn.db")
    }
    /// The audit head anchor, kept outside the database.
    pub fn audit_anchor(&self) -> PathBuf {
        self.root.join("audit.head")
    }

    /// `objects/<aa>/<bb>/<sha256>.dcm` for a lowercase hex SHA-256. Anything else (a damaged
    /// index row) gets a path that holds no object, never a panic.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        let mut p = self.objects();
        p.push(sha256.get(0..2).unwrap_or("not-a-sha256"));
        p.push(sha256.get(2..4).unwrap_or("not-a-sha256"));
        p.push(format!("{sha256}.dcm"));
        p
    }

    /// Create the top-level directories and fsync the root.
    pub fn create(&self) -> Result<(), StoreError> {
        for d in [
            self.root.clone(),
            self.objects(),
            self.spool(),
            self.quarantine(),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(|e| StoreError::io(format!("create {}", d.display()), e))?;
        }
        fsync_dir(&self.root)?;
        Ok(())
    }
}

/// True for a 64-character lowercase hex string.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// fsync a directory so that names created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(format!("fsync {}", dir.display()), e))
}

/// Every regular file two levels under `objects/`.
pub(crate) fn walk_objects(objects: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(l1) = std::fs::read_dir(objects) else {
        return out;
    };
    for a in l1.flatten() {
        if !a.path().is_dir() {
            out.push(a.path());
            continue;
        }
        let Ok(l2) = std::fs::read_dir(a.path()) else {
            continue;
        };
        for b in l2.flatten() {
            if !b.path().is_dir() {
                out.push(b.path());
                continue;
            }
            let Ok(l3) = std::fs::read_dir(b.path()) else {
                continue;
            };
            for f in l3.flatten() {
                out.push(f.path());
            }
        }
    }
    out
}
