//! The real tape driver: Linux `st` on the non-rewinding device (`/dev/nst0`), through the
//! `MTIOCTOP` and `MTIOCGET` ioctls of `<linux/mtio.h>`. The only file with tape `unsafe`.

#![allow(unsafe_code)]

use super::{TapeDrive, TapeError, TapeStatus};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `struct mtop` from `<linux/mtio.h>`: one tape operation and its count.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MtOp {
    /// The operation (`MT*` constant).
    pub mt_op: libc::c_short,
    /// How many times / the argument.
    pub mt_count: libc::c_int,
}

/// `struct mtget` from `<linux/mtio.h>`: the drive status.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MtGet {
    /// Drive type.
    pub mt_type: libc::c_long,
    /// Residual count.
    pub mt_resid: libc::c_long,
    /// Block size (bits 0-23) and density (bits 24-31).
    pub mt_dsreg: libc::c_long,
    /// Generic status bits (`GMT_*`).
    pub mt_gstat: libc::c_long,
    /// Error register.
    pub mt_erreg: libc::c_long,
    /// File number, -1 if unknown.
    pub mt_fileno: libc::c_int,
    /// Block number in the file, -1 if unknown.
    pub mt_blkno: libc::c_int,
}

/// Forward space over filemarks.
pub const MTFSF: libc::c_short = 1;
/// Backward space over filemarks (ends before the filemark).
pub const MTBSF: libc::c_short = 2;
/// Write filemarks.
pub const MTWEOF: libc::c_short = 5;
/// Rewind.
pub const MTREW: libc::c_short = 6;
/// Rewind and unload.
pub const MTOFFL: libc::c_short = 7;
/// Space to the end of recorded data.
pub const MTEOM: libc::c_short = 12;
/// Set the block size (0 = variable).
pub const MTSETBLK: libc::c_short = 20;

/// `GMT_EOF`: just after a filemark.
pub const GMT_EOF: libc::c_long = 0x8000_0000;
/// `GMT_BOT`: beginning of medium.
pub const GMT_BOT: libc::c_long = 0x4000_0000;
/// `GMT_EOT`: past the early warning / end of medium.
pub const GMT_EOT: libc::c_long = 0x2000_0000;
/// `GMT_EOD`: end of recorded data.
pub const GMT_EOD: libc::c_long = 0x0800_0000;
/// `GMT_WR_PROT`: write-protected.
pub const GMT_WR_PROT: libc::c_long = 0x0400_0000;
/// `GMT_ONLINE`: a cartridge is loaded and ready.
pub const GMT_ONLINE: libc::c_long = 0x0100_0000;
/// `GMT_DR_OPEN`: door open / no cartridge.
pub const GMT_DR_OPEN: libc::c_long = 0x0004_0000;
/// `MT_ST_BLKSIZE_MASK`: the block size bits of `mt_dsreg`.
pub const MT_ST_BLKSIZE_MASK: libc::c_long = 0x00ff_ffff;

mod ioctls {
    use super::{MtGet, MtOp};
    // MTIOCTOP = _IOW('m', 1, struct mtop)
    nix::ioctl_write_ptr!(mtioctop, b'm', 1, MtOp);
    // MTIOCGET = _IOR('m', 2, struct mtget)
    nix::ioctl_read!(mtiocget, b'm', 2, MtGet);
}

/// Decodes `struct mtget` into a [`TapeStatus`].
pub fn decode_status(get: &MtGet) -> TapeStatus {
    let g = get.mt_gstat;
    TapeStatus {
        online: g & GMT_ONLINE != 0,
        write_protected: g & GMT_WR_PROT != 0,
        bot: g & GMT_BOT != 0,
        eod: g & GMT_EOD != 0,
        early_warning: g & GMT_EOT != 0,
        door_open: g & GMT_DR_OPEN != 0,
        file_number: u32::try_from(get.mt_fileno).ok(),
        block_number: u64::try_from(get.mt_blkno).ok(),
        block_size: (get.mt_dsreg & MT_ST_BLKSIZE_MASK) as u32,
    }
}

/// The Linux `st` driver on a non-rewinding tape device.
#[derive(Debug)]
pub struct LinuxTape {
    path: PathBuf,
    file: File,
    /// The last write failed with ENOSPC (two in a row mean the physical end).
    last_write_enospc: bool,
}

impl LinuxTape {
    /// Opens the non-rewinding device (e.g. `/dev/nst0`) read-write. The open succeeds without a
    /// cartridge or with a write-protected one (`O_NONBLOCK`, as st documents); operations
    /// then report `NoMedium` / `WriteProtected`.
    pub fn open(path: &Path) -> Result<Self, TapeError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| map_errno(path, "open", e))?;
        // Back to blocking I/O for reads and writes once the device is open.
        let flags = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| map_errno(path, "fcntl", e.into()))?;
        let mut oflags = nix::fcntl::OFlag::from_bits_truncate(flags);
        oflags.remove(nix::fcntl::OFlag::O_NONBLOCK);
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(oflags))
            .map_err(|e| map_errno(path, "fcntl", e.into()))?;
        Ok(LinuxTape {
            path: path.to_path_buf(),
            file,
            last_write_enospc: false,
        })
    }

    fn op(
        &mut self,
        name: &'static str,
        op: libc::c_short,
        count: libc::c_int,
    ) -> Result<(), TapeError> {
        self.last_write_enospc = false;
        let arg = MtOp {
            mt_op: op,
            mt_count: count,
        };
        // SAFETY: the fd is an open tape device owned by self; `arg` is a valid `struct mtop`
        // that lives across the call, and MTIOCTOP only reads it.
        unsafe { ioctls::mtioctop(self.file.as_raw_fd(), &arg) }
            .map(|_| ())
            .map_err(|e| self.motion_error(name, e))
    }

    fn motion_error(&mut self, name: &'static str, e: nix::errno::Errno) -> TapeError {
        if e == nix::errno::Errno::EIO {
            // st reports running off recorded data (blank check) forwards, or into the
            // beginning of the tape backwards, as EIO; the status tells which.
            if let Ok(st) = self.status() {
                let backwards = name == "MTBSF";
                if !backwards && st.eod {
                    return TapeError::EndOfData {
                        device: self.path.clone(),
                    };
                }
                if backwards && st.bot {
                    return TapeError::BeginningOfMedium {
                        device: self.path.clone(),
                    };
                }
            }
        }
        map_errno(&self.path, name, e.into())
    }
}

/// Maps an OS error from the st driver to a [`TapeError`].
pub fn map_errno(path: &Path, op: &'static str, e: std::io::Error) -> TapeError {
    let device = path.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENOMEDIUM) => TapeError::NoMedium { device },
        Some(libc::EACCES) | Some(libc::EROFS) => TapeError::WriteProtected { device },
        Some(libc::EBUSY) => TapeError::Busy { device },
        Some(libc::ENOSPC) => TapeError::EarlyWarning { device },
        Some(libc::EINVAL) | Some(libc::ENOMEM) => TapeError::Invalid {
            device,
            message: format!("{op}: {e}"),
        },
        _ => TapeError::Io {
            device,
            op,
            source: e,
        },
    }
}

impl TapeDrive for LinuxTape {
    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        let mut get = MtGet::default();
        // SAFETY: the fd is an open tape device owned by self; `get` is a valid, writable
        // `struct mtget` that MTIOCGET fills in and that outlives the call.
        unsafe { ioctls::mtiocget(self.file.as_raw_fd(), &mut get) }
            .map_err(|e| map_errno(&self.path, "MTIOCGET", e.into()))?;
        Ok(decode_status(&get))
    }

    fn set_block_size(&mut self, size: u32) -> Result<(), TapeError> {
        let count = libc::c_int::try_from(size).map_err(|_| TapeError::Invalid {
            device: self.path.clone(),
            message: format!("block size {size} too large"),
        })?;
        self.op("MTSETBLK", MTSETBLK, count)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.op("MTREW", MTREW, 1)
    }

    fn write_block(&mut self, data: &[u8]) -> Result<(), TapeError> {
        match self.file.write(data) {
            Ok(n) if n == data.len() => {
                self.last_write_enospc = false;
                Ok(())
            }
            Ok(n) => {
                self.last_write_enospc = false;
                Err(TapeError::Io {
                    device: self.path.clone(),
                    op: "write",
                    source: std::io::Error::other(format!(
                        "short write: {n} of {} bytes (wrong block size?)",
                        data.len()
                    )),
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // st: after early warning, refusals and successes alternate; two refusals
                // in a row mean the physical end of the medium.
                let again = self.last_write_enospc;
                self.last_write_enospc = true;
                if again {
                    Err(TapeError::EndOfMedium {
                        device: self.path.clone(),
                    })
                } else {
                    Err(TapeError::EarlyWarning {
                        device: self.path.clone(),
                    })
                }
            }
            Err(e) => {
                self.last_write_enospc = false;
                Err(map_errno(&self.path, "write", e))
            }
        }
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        let count = libc::c_int::try_from(count).map_err(|_| TapeError::Invalid {
            device: self.path.clone(),
            message: "too many filemarks".into(),
        })?;
        self.op("MTWEOF", MTWEOF, count)
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        self.last_write_enospc = false;
        match self.file.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                let errno = nix::errno::Errno::EIO;
                Err(self.motion_error("read", errno))
            }
            Err(e) => Err(map_errno(&self.path, "read", e)),
        }
    }

    fn space_filemarks(&mut self, count: i32) -> Result<(), TapeError> {
        match count {
            0 => Ok(()),
            n if n > 0 => self.op("MTFSF", MTFSF, n),
            n => self.op("MTBSF", MTBSF, n.checked_neg().unwrap_or(i32::MAX)),
        }
    }

    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        self.op("MTEOM", MTEOM, 1)
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.op("MTOFFL", MTOFFL, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_decode() {
        let get = MtGet {
            mt_dsreg: (0x44 << 24) | 262_144,
            mt_gstat: GMT_ONLINE | GMT_BOT | GMT_WR_PROT,
            mt_fileno: 0,
            mt_blkno: 0,
            ..MtGet::default()
        };
        let s = decode_status(&get);
        assert!(s.online && s.bot && s.write_protected);
        assert!(!s.eod && !s.early_warning && !s.door_open);
        assert_eq!(s.block_size, 262_144);
        assert_eq!(s.file_number, Some(0));
        let unknown = decode_status(&MtGet {
            mt_gstat: GMT_DR_OPEN | GMT_EOT | GMT_EOD,
            mt_fileno: -1,
            mt_blkno: -1,
            ..MtGet::default()
        });
        assert!(unknown.door_open && unknown.early_warning && unknown.eod && !unknown.online);
        assert_eq!((unknown.file_number, unknown.block_number), (None, None));
    }

    #[test]
    fn ioctl_numbers_match_linux_mtio_h() {
        // _IOW('m', 1, struct mtop) and _IOR('m', 2, struct mtget) on 64-bit Linux.
        assert_eq!(std::mem::size_of::<MtOp>(), 8);
        assert_eq!(std::mem::size_of::<MtGet>(), 48);
        assert_eq!(
            nix::request_code_write!(b'm', 1, std::mem::size_of::<MtOp>()),
            0x4008_6d01
        );
        assert_eq!(
            nix::request_code_read!(b'm', 2, std::mem::size_of::<MtGet>()),
            0x8030_6d02
        );
    }

    #[test]
    fn errnos_map_to_kinds() {
        use super::super::TapeErrorKind as K;
        let p = Path::new("/dev/nst0");
        let k = |n| map_errno(p, "x", std::io::Error::from_raw_os_error(n)).kind();
        assert_eq!(k(libc::ENOMEDIUM), K::NoMedium);
        assert_eq!(k(libc::EACCES), K::WriteProtected);
        assert_eq!(k(libc::ENOSPC), K::EarlyWarning);
        assert_eq!(k(libc::EBUSY), K::Busy);
        assert_eq!(k(libc::EIO), K::Io);
    }

    #[test]
    fn missing_device_is_an_error_not_a_panic() {
        let e = LinuxTape::open(Path::new("/nonexistent/nst0")).unwrap_err();
        assert_eq!(e.kind(), super::super::TapeErrorKind::Io);
    }
}
