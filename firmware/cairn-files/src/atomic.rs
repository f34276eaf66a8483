//! Replace a file whole: write a temporary file in the same directory, optionally fsync it,
//! rename it over the target, optionally fsync the directory. A reader sees the old or the new
//! contents, never a mix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an [`atomic_write`] must survive a crash or power loss once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before the rename and the directory after it: once the call returns,
    /// the new contents survive a crash. For acknowledged state changes.
    Synced,
    /// No fsync: atomic for readers, but after a crash the old contents (or, on some file
    /// systems, an empty file) may be found. For published status, exchanges and caches.
    NotSynced,
}

/// Replace `path` with `bytes` atomically (mode 0666 before the umask, as `std::fs::write`), as `durability` says.
pub fn atomic_write(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    atomic_write_with_mode(path, bytes, 0o666, durability)
}

/// [`atomic_write`] creating the file with permission bits `mode` (before the umask), e.g.
/// `0o600` for a private key.
pub fn atomic_write_with_mode(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> std::io::Result<()> {
    let dir = parent(path);
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Synced {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Synced {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary name beside `path`, unique per process and call.
fn temp_path(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    parent(path).join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        for durability in [Durability::Synced, Durability::NotSynced] {
            atomic_write(&p, b"one", durability).unwrap();
            atomic_write(&p, b"two", durability).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"two");
            assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn a_private_file_gets_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key.pem");
        atomic_write_with_mode(&p, b"secret", 0o600, Durability::Synced).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/x");
        assert!(atomic_write(&p, b"x", Durability::Synced).is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
