//! The Linux immutable attribute (`chattr +i`): a file that carries it cannot be written,
//! renamed, linked to or deleted, not even by root, until someone holding
//! `CAP_LINUX_IMMUTABLE` clears it. cairn sets it on the files of studies that are fixed
//! (the archive tier), so that nothing on the box can change them before their expiry.
//!
//! Reading the flag needs only read access to the file; setting or clearing it needs
//! `CAP_LINUX_IMMUTABLE` (the appliance's daemon holds it in its unit). Filesystems without
//! the flag (some network and FUSE filesystems, for example) answer "unsupported", which is
//! not an error: there the attribute simply cannot protect the file.
//!
//! Code of cairn that deletes or replaces a file of a fixed study must clear the flag first
//! with [`set_immutable`]`(path, false)`, or the kernel refuses with "Operation not permitted".
//!
//! The two flags ioctls are the only `unsafe` of this crate.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// `FS_IMMUTABLE_FL` of `<linux/fs.h>`: the inode flag behind `chattr +i`.
const FS_IMMUTABLE_FL: libc::c_int = 0x0000_0010;

/// What the filesystem said about a file's immutable flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The flag is set.
    Set,
    /// The flag is clear (and the filesystem has it).
    Clear,
    /// The filesystem has no such flag (`ENOTTY`/`EOPNOTSUPP` on the flags ioctl).
    Unsupported,
}

/// Why the flag could not be read or changed.
#[derive(Debug, Error)]
pub enum ImmutableError {
    /// The process lacks `CAP_LINUX_IMMUTABLE` (or does not own the file).
    #[error(
        "{}: changing the immutable attribute is not permitted \
         (the process lacks CAP_LINUX_IMMUTABLE)",
        path.display()
    )]
    NotPermitted {
        /// The file.
        path: PathBuf,
    },
    /// Any other failure (the file cannot be opened, an I/O error).
    #[error("{}: immutable attribute: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Reads the immutable flag of a regular file.
pub fn immutable_flag(path: &Path) -> Result<Flag, ImmutableError> {
    let file = open(path)?;
    match get_flags(&file) {
        Ok(flags) if flags & FS_IMMUTABLE_FL != 0 => Ok(Flag::Set),
        Ok(_) => Ok(Flag::Clear),
        Err(e) if unsupported(&e) => Ok(Flag::Unsupported),
        Err(e) => Err(io(path, e)),
    }
}

/// Sets (`on`) or clears the immutable flag of a regular file. Returns what the flag is now:
/// [`Flag::Unsupported`] when the filesystem has no such flag (nothing changed, no error).
/// Setting a flag that is already set (or clearing a clear one) changes nothing.
pub fn set_immutable(path: &Path, on: bool) -> Result<Flag, ImmutableError> {
    let file = open(path)?;
    let flags = match get_flags(&file) {
        Ok(f) => f,
        Err(e) if unsupported(&e) => return Ok(Flag::Unsupported),
        Err(e) => return Err(io(path, e)),
    };
    let wanted = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    let now = if on { Flag::Set } else { Flag::Clear };
    if wanted == flags {
        return Ok(now);
    }
    // SAFETY: FS_IOC_SETFLAGS reads one int from the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &wanted) };
    if rc == 0 {
        return Ok(now);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Err(ImmutableError::NotPermitted {
            path: path.to_path_buf(),
        }),
        _ if unsupported(&e) => Ok(Flag::Unsupported),
        _ => Err(io(path, e)),
    }
}

fn open(path: &Path) -> Result<std::fs::File, ImmutableError> {
    use std::os::unix::fs::OpenOptionsExt;
    // read-only is enough for the flags ioctls (an immutable file cannot be opened for
    // writing); O_NOFOLLOW: the object store holds no links, and a link is never followed.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io(path, e))
}

fn get_flags(file: &std::fs::File) -> std::io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which is valid for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if rc == 0 {
        Ok(flags)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
    )
}

fn io(path: &Path, source: std::io::Error) -> ImmutableError {
    ImmutableError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether this process may set the flag (it holds `CAP_LINUX_IMMUTABLE` in its effective
/// set), read from `/proc/self/status`. False when that cannot be read.
pub fn may_set() -> bool {
    const CAP_LINUX_IMMUTABLE: u32 = 9;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_LINUX_IMMUTABLE) != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Sets, reads and clears the flag for real where this process may and the filesystem
    /// has it; elsewhere checks that the answer is "unsupported" or "not permitted", never
    /// a silent success.
    #[test]
    fn set_read_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("object.dcm");
        std::fs::write(&f, b"bytes").unwrap();
        let before = immutable_flag(&f).unwrap();
        if before == Flag::Unsupported {
            assert_eq!(set_immutable(&f, true).unwrap(), Flag::Unsupported);
            return;
        }
        assert_eq!(before, Flag::Clear);
        match set_immutable(&f, true) {
            Ok(Flag::Set) => {
                assert!(may_set());
                assert_eq!(immutable_flag(&f).unwrap(), Flag::Set);
                // the kernel now refuses a delete and a write, even to root
                assert!(std::fs::remove_file(&f).is_err());
                assert!(std::fs::OpenOptions::new().append(true).open(&f).is_err());
                // setting again changes nothing
                assert_eq!(set_immutable(&f, true).unwrap(), Flag::Set);
                assert_eq!(set_immutable(&f, false).unwrap(), Flag::Clear);
                assert_eq!(immutable_flag(&f).unwrap(), Flag::Clear);
                std::fs::remove_file(&f).unwrap();
            }
            Ok(other) => panic!("set answered {other:?}"),
            Err(ImmutableError::NotPermitted { .. }) => {
                assert!(!may_set());
                assert_eq!(immutable_flag(&f).unwrap(), Flag::Clear);
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("gone.dcm");
        let e = immutable_flag(&f).unwrap_err().to_string();
        assert!(e.contains("gone.dcm"), "{e}");
        assert!(set_immutable(&f, true).is_err());
    }
}
