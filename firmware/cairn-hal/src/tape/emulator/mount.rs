//! The mounted cartridge: the current tape file's record runs and the position in it, how a
//! file is repaired after a killed writer, entered, and advanced through.

use super::files::{data_path, io_err, rec_path, CartridgeMeta, Stamp};
use super::runs::{encode_runs, read_runs, runs_bytes, runs_records, runs_within, Run};
use crate::tape::TapeError;
use cairn_files::{atomic_write, Durability};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// One tape file as mounted: its record runs (sizes of the other files suffice).
#[derive(Debug)]
pub(super) struct Mount {
    pub(super) id: String,
    pub(super) cdir: PathBuf,
    pub(super) meta: CartridgeMeta,
    pub(super) meta_stamp: Option<Stamp>,
    /// Bytes of each tape file 0..=filemarks.
    pub(super) sizes: Vec<u64>,
    /// Current file.
    pub(super) file: u32,
    /// Record runs of the current file.
    pub(super) runs: Vec<Run>,
    /// Records before the current position in the current file.
    pub(super) block: u64,
    /// Byte offset of the current position in the current file.
    pub(super) offset: u64,
    /// Cursor into `runs`: run index and records consumed in it.
    pub(super) cursor: (usize, u64),
    pub(super) block_known: bool,
    /// Open for appending to the current file (data, record lengths).
    pub(super) writer: Option<(File, File)>,
    /// Reader of the current file.
    pub(super) reader: Option<File>,
}

impl Mount {
    pub(super) fn base(&self) -> u64 {
        self.sizes[..self.file as usize].iter().sum()
    }
    pub(super) fn records(&self) -> u64 {
        runs_records(&self.runs)
    }
    pub(super) fn at_file_end(&self) -> bool {
        self.block >= self.records()
    }
}

/// Makes file `f`'s data and record lengths agree (cutting what a killed writer left
/// half-done) and returns its size.
pub(super) fn repair_file(dev: &Path, cdir: &Path, f: u32) -> Result<u64, TapeError> {
    let rpath = rec_path(cdir, f);
    let dpath = data_path(cdir, f);
    let runs = read_runs(&rpath).map_err(|e| io_err(dev, "read .rec", e))?;
    let data_len = fs::metadata(&dpath).map(|m| m.len()).unwrap_or(0);
    let rec_len = fs::metadata(&rpath).map(|m| m.len()).unwrap_or(0);
    let want = runs_bytes(&runs);
    let mut runs_ok = runs;
    if want > data_len {
        runs_ok = runs_within(&runs_ok, data_len);
    }
    let size = runs_bytes(&runs_ok);
    if !rec_len.is_multiple_of(8) || size != want {
        // NotSynced, as before: the repair is made again from the data file after a crash.
        atomic_write(&rpath, &encode_runs(&runs_ok), Durability::NotSynced)
            .map_err(|e| io_err(dev, "repair .rec", e))?;
    }
    if data_len > size {
        tracing::warn!(
            file = f,
            cut = data_len - size,
            "tape emulator: cutting a partial record left by an interrupted write"
        );
        OpenOptions::new()
            .write(true)
            .open(&dpath)
            .and_then(|d| d.set_len(size))
            .map_err(|e| io_err(dev, "repair tape file", e))?;
    }
    Ok(size)
}

/// Positions at block 0 of file `f`.
pub(super) fn enter_file(dev: &Path, m: &mut Mount, f: u32) -> Result<(), TapeError> {
    m.writer = None;
    m.reader = None;
    m.file = f;
    m.runs = read_runs(&rec_path(&m.cdir, f)).map_err(|e| io_err(dev, "read .rec", e))?;
    m.runs = runs_within(&m.runs, m.sizes.get(f as usize).copied().unwrap_or(0));
    m.block = 0;
    m.offset = 0;
    m.cursor = (0, 0);
    m.block_known = true;
    Ok(())
}

/// Moves forward to record `block` of the current file.
pub(super) fn advance_to(m: &mut Mount, block: u64) {
    while m.block < block {
        let (i, used) = m.cursor;
        let Some(run) = m.runs.get(i) else { break };
        let n = (run.count - used).min(block - m.block);
        m.block += n;
        m.offset += n * u64::from(run.len);
        m.cursor = if used + n == run.count {
            (i + 1, 0)
        } else {
            (i, used + n)
        };
    }
}
