//! The open drive: exclusive like st's open, it follows drive.json and the cartridge's
//! metadata as other processes change them, keeps its position across opens, and prepares the
//! current file for writing.

use super::controls::{init_drive, update_meta};
use super::files::{
    cartridge_path, data_path, io_err, read_drive, read_json, rec_path, stamp, write_json,
    CartridgeMeta, SavedPosition, Stamp, CARTRIDGE_JSON, DRIVE_JSON, POSITION_JSON,
};
use super::mount::{advance_to, enter_file, repair_file, Mount};
use super::runs::{cut_runs, encode_runs};
use crate::tape::{TapeDrive, TapeError};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LastOp {
    None,
    Write,
    Other,
}

/// An open emulated drive (exclusive, like st: a second open fails with `Busy`).
#[derive(Debug)]
pub struct EmulatedTape {
    pub(super) dir: PathBuf,
    pub(super) _lock: Flock<File>,
    pub(super) drive_stamp: Option<Stamp>,
    pub(super) generation: u64,
    pub(super) mount: Option<Mount>,
    pub(super) block_size: u32,
    pub(super) last_op: LastOp,
    /// The last write was refused at early warning, so the next one is allowed.
    pub(super) ew_allow_next: bool,
    /// The position was reached by crossing a filemark (st's "ST_FM" state).
    pub(super) after_filemark: bool,
    /// The zero read at end of data after a filemark was given.
    pub(super) eod_zero_given: bool,
}

impl EmulatedTape {
    /// Opens the drive in `drive_dir` (creating an empty drive if needed). Only one handle may
    /// be open at a time, across all processes; another open fails with `Busy`.
    pub fn open(drive_dir: &Path) -> Result<Self, TapeError> {
        init_drive(drive_dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(drive_dir.join("lock"))
            .map_err(|e| io_err(drive_dir, "open lock", e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                TapeError::Busy {
                    device: drive_dir.to_path_buf(),
                }
            } else {
                io_err(drive_dir, "lock", e.into())
            }
        })?;
        let mut tape = EmulatedTape {
            dir: drive_dir.to_path_buf(),
            _lock: lock,
            drive_stamp: None,
            generation: 0,
            mount: None,
            block_size: 0,
            last_op: LastOp::None,
            ew_allow_next: false,
            after_filemark: false,
            eod_zero_given: false,
        };
        let saved: Option<SavedPosition> =
            read_json(drive_dir, &drive_dir.join(POSITION_JSON)).ok();
        if let Some(s) = &saved {
            tape.block_size = s.block_size;
        }
        tape.refresh()?;
        if let (Some(s), Some(m)) = (saved, tape.mount.as_ref()) {
            if s.generation == tape.generation && s.cartridge.as_deref() == Some(m.id.as_str()) {
                tape.restore(s.file, s.block, s.block_known)?;
            }
        }
        Ok(tape)
    }

    /// The drive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads drive.json and the cartridge's metadata if another process changed them.
    pub(super) fn refresh(&mut self) -> Result<(), TapeError> {
        let dstamp = stamp(&self.dir.join(DRIVE_JSON));
        if dstamp != self.drive_stamp || dstamp.is_none() {
            let drive = read_drive(&self.dir)?;
            self.drive_stamp = dstamp;
            if drive.generation != self.generation || self.mount.is_none() != drive.loaded.is_none()
            {
                self.generation = drive.generation;
                self.mount = None;
                self.last_op = LastOp::None;
                self.reset_flags();
                if let Some(id) = drive.loaded {
                    self.mount = Some(self.mount_cartridge(&id)?);
                }
            }
        }
        if let Some(m) = self.mount.as_mut() {
            let p = m.cdir.join(CARTRIDGE_JSON);
            let s = stamp(&p);
            if s != m.meta_stamp {
                m.meta = read_json(&self.dir, &p)?;
                m.meta_stamp = s;
            }
        }
        Ok(())
    }

    pub(super) fn reset_flags(&mut self) {
        self.ew_allow_next = false;
        self.after_filemark = false;
        self.eod_zero_given = false;
    }

    /// Mounts a cartridge: repairs what a killed writer left and positions at BOT.
    pub(super) fn mount_cartridge(&self, id: &str) -> Result<Mount, TapeError> {
        let dev = &self.dir;
        let cdir = cartridge_path(dev, id);
        let meta_path = cdir.join(CARTRIDGE_JSON);
        let meta_stamp = stamp(&meta_path);
        let meta: CartridgeMeta = read_json(dev, &meta_path)?;
        let mut sizes = Vec::new();
        for f in 0..=meta.filemarks {
            sizes.push(repair_file(dev, &cdir, f)?);
        }
        // Files past the last filemark are left over from an interrupted overwrite.
        let mut f = meta.filemarks + 1;
        while data_path(&cdir, f).exists() || rec_path(&cdir, f).exists() {
            let _ = fs::remove_file(data_path(&cdir, f));
            let _ = fs::remove_file(rec_path(&cdir, f));
            f += 1;
        }
        let mut m = Mount {
            id: id.to_string(),
            cdir,
            meta,
            meta_stamp,
            sizes,
            file: 0,
            runs: Vec::new(),
            block: 0,
            offset: 0,
            cursor: (0, 0),
            block_known: true,
            writer: None,
            reader: None,
        };
        enter_file(dev, &mut m, 0)?;
        Ok(m)
    }

    pub(super) fn restore(&mut self, file: u32, block: u64, known: bool) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        let Some(m) = self.mount.as_mut() else {
            return Ok(());
        };
        let file = file.min(m.meta.filemarks);
        enter_file(&dev, m, file)?;
        let block = block.min(m.records());
        advance_to(m, block);
        m.block_known = known;
        Ok(())
    }

    pub(super) fn save_position(&self) {
        let pos = SavedPosition {
            generation: self.generation,
            cartridge: self.mount.as_ref().map(|m| m.id.clone()),
            file: self.mount.as_ref().map(|m| m.file).unwrap_or(0),
            block: self.mount.as_ref().map(|m| m.block).unwrap_or(0),
            block_known: self.mount.as_ref().map(|m| m.block_known).unwrap_or(true),
            block_size: self.block_size,
        };
        if let Err(e) = write_json(&self.dir, &self.dir.join(POSITION_JSON), &pos) {
            tracing::warn!(error = %e, "tape emulator: could not save the position");
        }
    }

    pub(super) fn mounted(&mut self) -> Result<&mut Mount, TapeError> {
        self.refresh()?;
        let dev = self.dir.clone();
        self.mount
            .as_mut()
            .ok_or(TapeError::NoMedium { device: dev })
    }

    /// The mounted cartridge as last refreshed (callers refresh once per operation).
    pub(super) fn mount_now(&mut self) -> Result<&mut Mount, TapeError> {
        let dev = self.dir.clone();
        self.mount
            .as_mut()
            .ok_or(TapeError::NoMedium { device: dev })
    }

    /// st writes a filemark before moving the tape if the last operation was a write.
    pub(super) fn filemark_if_written(&mut self) -> Result<(), TapeError> {
        if self.last_op == LastOp::Write {
            self.write_filemarks(1)?;
        }
        Ok(())
    }

    /// Makes the current position the end of data (discarding what follows) and opens the
    /// current file for appending.
    pub(super) fn prepare_write(&mut self) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        let m = self.mount_now()?;
        if m.meta.write_protected {
            return Err(TapeError::WriteProtected { device: dev });
        }
        if m.writer.is_some() {
            return Ok(());
        }
        let truncating = m.file < m.meta.filemarks || !m.at_file_end();
        if m.file < m.meta.filemarks {
            // Forget the files after this one first: a crash then leaves garbage that the
            // next mount removes, never a filemark pointing at discarded data.
            let file = m.file;
            let meta = update_meta(&dev, &m.id, |meta| meta.filemarks = file)?;
            m.meta = meta;
            m.meta_stamp = stamp(&m.cdir.join(CARTRIDGE_JSON));
            m.sizes.truncate(file as usize + 1);
            let mut f = file + 1;
            while data_path(&m.cdir, f).exists() || rec_path(&m.cdir, f).exists() {
                let _ = fs::remove_file(data_path(&m.cdir, f));
                let _ = fs::remove_file(rec_path(&m.cdir, f));
                f += 1;
            }
        }
        let dpath = data_path(&m.cdir, m.file);
        let rpath = rec_path(&m.cdir, m.file);
        let data = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&dpath)
            .map_err(|e| io_err(&dev, "open tape file", e))?;
        if truncating {
            let keep = cut_runs(&m.runs, m.block);
            fs::write(&rpath, encode_runs(&keep)).map_err(|e| io_err(&dev, "truncate .rec", e))?;
            data.set_len(m.offset)
                .map_err(|e| io_err(&dev, "truncate tape file", e))?;
            m.runs = keep;
            m.cursor = (m.runs.len(), 0);
            m.sizes[m.file as usize] = m.offset;
        }
        let mut data = data;
        let rec = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rpath)
            .map_err(|e| io_err(&dev, "open .rec", e))?;
        use std::io::Seek;
        data.seek(std::io::SeekFrom::Start(m.offset))
            .map_err(|e| io_err(&dev, "seek tape file", e))?;
        m.writer = Some((data, rec));
        m.reader = None;
        Ok(())
    }
}

impl Drop for EmulatedTape {
    fn drop(&mut self) {
        // st writes a filemark when a device that was last written is closed.
        if self.last_op == LastOp::Write {
            if let Err(e) = self.write_filemarks(1) {
                tracing::warn!(error = %e, "tape emulator: filemark on close failed");
            }
        }
        self.save_position();
    }
}
