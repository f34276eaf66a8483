//! Tape drives: the Linux `st` driver on a non-rewinding device ([`LinuxTape`]) and an emulator
//! that behaves like it ([`EmulatedTape`], controlled through [`emulator`]).
//!
//! Both follow the semantics of the Linux SCSI tape driver (`Documentation/scsi/st.rst`):
//! - Writing: one [`TapeDrive::write_block`] is one record (variable block mode) or a whole
//!   number of fixed-size records. When the end-of-medium early warning is crossed, that write
//!   completes; the next write fails with [`TapeErrorKind::EarlyWarning`] (ENOSPC) and writes
//!   nothing; the one after is allowed (to write a trailer), then failures and successes
//!   alternate until the physical end, where writes fail with [`TapeErrorKind::EndOfMedium`].
//!   Filemarks may still be written after early warning.
//! - Writing anywhere but at the end of data discards everything after that point, like a
//!   real tape. Writing filemarks is a synchronisation point: the data before them is durable
//!   when [`TapeDrive::write_filemarks`] returns (`write_filemarks(0)` only flushes).
//! - If the last operation was a write, rewind, unload, backward spacing and closing the drive
//!   (drop) first write one filemark, as `st` does.
//! - Reading: [`TapeDrive::read_block`] returns one record; `Ok(0)` means a filemark was crossed
//!   (the position is then at block 0 of the next file). At the end of data, the first read
//!   right after a filemark returns `Ok(0)` (two consecutive zero reads mean end of data), any
//!   further read fails with [`TapeErrorKind::EndOfData`].
//! - Spacing: `space_filemarks(n > 0)` (MTFSF) leaves the tape just after the n-th filemark
//!   (block 0 of that file); `space_filemarks(-n)` (MTBSF) leaves it just *before* the n-th
//!   filemark backwards (at the end of the previous file, block number unknown).
//!
//! Must never: decide what to write or when (that is the archive writer's policy).

pub mod emulator;
pub mod linux_mtio;

pub use emulator::EmulatedTape;
pub use linux_mtio::LinuxTape;

use std::path::PathBuf;
use thiserror::Error;

/// What the drive reports about itself and its cartridge (`MTIOCGET` on Linux).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TapeStatus {
    /// A cartridge is loaded and the drive is ready (`GMT_ONLINE`).
    pub online: bool,
    /// The loaded cartridge is write-protected (`GMT_WR_PROT`).
    pub write_protected: bool,
    /// The tape is at the beginning of medium (`GMT_BOT`).
    pub bot: bool,
    /// The tape is at the end of recorded data (`GMT_EOD`).
    pub eod: bool,
    /// The tape is past the end-of-medium early warning (`GMT_EOT`).
    pub early_warning: bool,
    /// No cartridge in the drive / door open (`GMT_DR_OPEN`).
    pub door_open: bool,
    /// The current file number (files are separated by filemarks), if known.
    pub file_number: Option<u32>,
    /// The current block (record) number within the file, if known.
    pub block_number: Option<u64>,
    /// The block size in bytes; 0 means variable block mode.
    pub block_size: u32,
}

/// A tape operation that failed.
#[derive(Debug, Error)]
pub enum TapeError {
    /// The write was refused because the tape is past the early warning (ENOSPC); nothing was
    /// written. The next write is allowed (st semantics), so a trailer still fits.
    #[error("{device}: end of tape near (early warning), write refused")]
    EarlyWarning {
        /// The drive.
        device: PathBuf,
    },
    /// The physical end of the medium was reached; nothing more can be written.
    #[error("{device}: end of medium reached")]
    EndOfMedium {
        /// The drive.
        device: PathBuf,
    },
    /// A read or forward space ran into the end of recorded data.
    #[error("{device}: end of recorded data")]
    EndOfData {
        /// The drive.
        device: PathBuf,
    },
    /// A backward space ran into the beginning of the medium.
    #[error("{device}: beginning of medium")]
    BeginningOfMedium {
        /// The drive.
        device: PathBuf,
    },
    /// The cartridge is write-protected (EACCES).
    #[error("{device}: the cartridge is write-protected")]
    WriteProtected {
        /// The drive.
        device: PathBuf,
    },
    /// No cartridge is loaded (ENOMEDIUM).
    #[error("{device}: no cartridge in the drive")]
    NoMedium {
        /// The drive.
        device: PathBuf,
    },
    /// The drive is opened by another process or handle (EBUSY).
    #[error("{device}: the drive is in use by another process")]
    Busy {
        /// The drive.
        device: PathBuf,
    },
    /// A request the drive cannot carry out as asked (EINVAL, ENOMEM: wrong block size, a
    /// buffer smaller than the record, a bad cartridge id).
    #[error("{device}: {message}")]
    Invalid {
        /// The drive.
        device: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The OS or the medium failed (EIO and everything else).
    #[error("{device}: {op}: {source}")]
    Io {
        /// The drive.
        device: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a caller may branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapeErrorKind {
    /// Past the early warning: end the current file with a filemark and change volumes.
    EarlyWarning,
    /// Physical end of medium.
    EndOfMedium,
    /// End of recorded data while reading or spacing.
    EndOfData,
    /// Beginning of medium while spacing backwards.
    BeginningOfMedium,
    /// Write-protected cartridge.
    WriteProtected,
    /// No cartridge loaded.
    NoMedium,
    /// Drive in use elsewhere.
    Busy,
    /// Bad request.
    Invalid,
    /// Device or medium error.
    Io,
}

impl TapeError {
    /// The class of this error.
    pub fn kind(&self) -> TapeErrorKind {
        match self {
            TapeError::EarlyWarning { .. } => TapeErrorKind::EarlyWarning,
            TapeError::EndOfMedium { .. } => TapeErrorKind::EndOfMedium,
            TapeError::EndOfData { .. } => TapeErrorKind::EndOfData,
            TapeError::BeginningOfMedium { .. } => TapeErrorKind::BeginningOfMedium,
            TapeError::WriteProtected { .. } => TapeErrorKind::WriteProtected,
            TapeError::NoMedium { .. } => TapeErrorKind::NoMedium,
            TapeError::Busy { .. } => TapeErrorKind::Busy,
            TapeError::Invalid { .. } => TapeErrorKind::Invalid,
            TapeError::Io { .. } => TapeErrorKind::Io,
        }
    }
}

/// A tape drive with st semantics (see the module documentation).
pub trait TapeDrive: Send {
    /// The drive and cartridge state. Works without a cartridge (then `online` is false).
    fn status(&mut self) -> Result<TapeStatus, TapeError>;

    /// Sets the block size (MTSETBLK): 0 selects variable block mode (one record per write),
    /// n > 0 fixed n-byte records (writes must then be whole multiples of n).
    fn set_block_size(&mut self, size: u32) -> Result<(), TapeError>;

    /// Rewinds to the beginning of the medium (MTREW).
    fn rewind(&mut self) -> Result<(), TapeError>;

    /// Writes one record (or, in fixed block mode, `data.len() / block_size` records) at the
    /// current position, discarding anything recorded after it.
    fn write_block(&mut self, data: &[u8]) -> Result<(), TapeError>;

    /// Writes `count` filemarks (MTWEOF) and flushes; `count == 0` only flushes.
    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError>;

    /// Reads the next record into `buf` and returns its length; `Ok(0)` means a filemark was
    /// crossed. In variable block mode a record longer than `buf` is an `Invalid` error (the
    /// record is skipped, as st does with ENOMEM).
    fn read_block(&mut self, buf: &mut [u8]) -> Result<usize, TapeError>;

    /// Spaces over filemarks: forward (MTFSF) for `count > 0`, backward (MTBSF) for `count < 0`.
    fn space_filemarks(&mut self, count: i32) -> Result<(), TapeError>;

    /// Moves to the end of recorded data (MTEOM), where appending starts.
    fn seek_end_of_data(&mut self) -> Result<(), TapeError>;

    /// Rewinds and ejects the cartridge (MTOFFL).
    fn unload(&mut self) -> Result<(), TapeError>;

    /// The name printed on the loaded cartridge's label (its barcode), when the drive can read
    /// it: a changer's barcode reader can, a lone drive cannot (`None`, the default). The
    /// emulator answers with the cartridge's id.
    fn cartridge_name(&mut self) -> Option<String> {
        None
    }
}
