//! The tape emulator: a drive directory that behaves like a Linux `st` drive, shared by every
//! process that opens it (cairnd, cairnctl, tests), plus the controls a person would use on a
//! real drive (insert, eject, write-protect tab) and test hooks (inject a write error; a
//! cartridge that answers a read at its beginning with an I/O error while it holds nothing, as
//! Debian's tgt does for a blank tape and some drives do for a new or degaussed one).
//!
//! Layout of a drive directory:
//! ```text
//! drive.json                  which cartridge is loaded: {"loaded": "TAPE01", "generation": 3}
//! position.json               where the tape is (file, block), written on motion and close
//! lock                        held (flock) by the one open EmulatedTape, like st's exclusive open
//! control.lock                serialises changes to drive.json and cartridge.json
//! cartridges/<id>/cartridge.json   capacity, early warning, write protect, filemark count
//! cartridges/<id>/file-0000        tape file 0: its records back to back (`tar -b 512 -xf` reads it)
//! cartridges/<id>/file-0000.rec    record lengths of file 0 (u32 length, u32 count, little endian)
//! ```
//! A cartridge holds `filemarks + 1` tape files (a missing `file-NNNN` is an empty file); end of
//! data is after the last one. A process killed mid-write leaves every record written so far
//! readable: a record's bytes are appended before its length, and on mount a trailing record
//! without its length is cut off. Writing filemarks fsyncs the data and then the metadata (a
//! filemark is a synchronisation point, as on a real drive).
//!
//! The emulator follows the st semantics documented in [`super`]; capacity, early warning and
//! an injected write error are byte positions counted from the beginning of the tape over the
//! records recorded (filemarks take no space).

use super::{TapeDrive, TapeError, TapeStatus};
use cairn_files::{atomic_write, Durability};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A new blank cartridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartridgeSpec {
    /// Its id (barcode): 1 to 32 characters of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// Physical capacity in bytes (end of medium).
    pub capacity: u64,
    /// Byte position of the early warning; must not exceed `capacity`.
    pub early_warning: u64,
}

/// What the emulator knows about one cartridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartridgeInfo {
    /// Its id (barcode).
    pub id: String,
    /// Physical capacity in bytes.
    pub capacity: u64,
    /// Byte position of the early warning.
    pub early_warning: u64,
    /// The write-protect tab is set.
    pub write_protected: bool,
    /// An injected write error fires when a write would cross this byte position (one shot).
    pub inject_write_error_at: Option<u64>,
    /// While nothing is recorded, a read fails with an I/O error (EIO) instead of reporting
    /// the end of data (see [`set_unreadable_when_blank`]).
    pub unreadable_when_blank: bool,
    /// Filemarks recorded (the cartridge holds `filemarks + 1` tape files).
    pub filemarks: u32,
    /// Bytes of records recorded.
    pub bytes_used: u64,
    /// It is in the drive.
    pub loaded: bool,
    /// Its directory (the tape files are `file-NNNN` in it).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CartridgeMeta {
    id: String,
    capacity: u64,
    early_warning: u64,
    write_protected: bool,
    inject_write_error_at: Option<u64>,
    #[serde(default)]
    unreadable_when_blank: bool,
    filemarks: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriveState {
    loaded: Option<String>,
    generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPosition {
    generation: u64,
    cartridge: Option<String>,
    file: u32,
    block: u64,
    block_known: bool,
    block_size: u32,
}

const DRIVE_JSON: &str = "drive.json";
const POSITION_JSON: &str = "position.json";
const CARTRIDGE_JSON: &str = "cartridge.json";

fn io_err(dir: &Path, op: &'static str, source: std::io::Error) -> TapeError {
    TapeError::Io {
        device: dir.to_path_buf(),
        op,
        source,
    }
}

fn invalid(dir: &Path, message: impl Into<String>) -> TapeError {
    TapeError::Invalid {
        device: dir.to_path_buf(),
        message: message.into(),
    }
}

fn check_id(dir: &Path, id: &str) -> Result<(), TapeError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            dir,
            format!("cartridge id {id:?}: use 1 to 32 of A-Z a-z 0-9 - _"),
        ))
    }
}

fn cartridge_path(drive_dir: &Path, id: &str) -> PathBuf {
    drive_dir.join("cartridges").join(id)
}

fn data_path(cdir: &Path, file: u32) -> PathBuf {
    cdir.join(format!("file-{file:04}"))
}

fn rec_path(cdir: &Path, file: u32) -> PathBuf {
    cdir.join(format!("file-{file:04}.rec"))
}

/// Writes `value` as JSON to `path` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_json<T: Serialize>(dev: &Path, path: &Path, value: &T) -> Result<(), TapeError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| invalid(dev, e.to_string()))?;
    // Synced: the emulated tape's state stands for what is on the cartridge.
    atomic_write(path, &body, Durability::Synced).map_err(|e| io_err(dev, "write state", e))
}

fn read_json<T: for<'de> Deserialize<'de>>(dev: &Path, path: &Path) -> Result<T, TapeError> {
    let body = fs::read(path).map_err(|e| io_err(dev, "read state", e))?;
    serde_json::from_slice(&body).map_err(|e| invalid(dev, format!("{}: {e}", path.display())))
}

/// Identity of a state file version (each write is a rename, so a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    fs::metadata(path)
        .ok()
        .map(|m| Stamp(m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

fn control_lock(drive_dir: &Path) -> Result<Flock<File>, TapeError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(drive_dir.join("control.lock"))
        .map_err(|e| io_err(drive_dir, "open control.lock", e))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err(drive_dir, "lock control.lock", e.into()))
}

fn read_drive(drive_dir: &Path) -> Result<DriveState, TapeError> {
    let p = drive_dir.join(DRIVE_JSON);
    if !p.exists() {
        return Err(invalid(
            drive_dir,
            "not a tape emulator drive directory (no drive.json)",
        ));
    }
    read_json(drive_dir, &p)
}

fn read_meta(drive_dir: &Path, id: &str) -> Result<CartridgeMeta, TapeError> {
    let p = cartridge_path(drive_dir, id).join(CARTRIDGE_JSON);
    if !p.exists() {
        return Err(invalid(drive_dir, format!("no cartridge {id:?}")));
    }
    read_json(drive_dir, &p)
}

/// Creates the drive directory if it does not exist (empty drive).
pub fn init_drive(drive_dir: &Path) -> Result<(), TapeError> {
    fs::create_dir_all(drive_dir.join("cartridges"))
        .map_err(|e| io_err(drive_dir, "create drive dir", e))?;
    let _lock = control_lock(drive_dir)?;
    let p = drive_dir.join(DRIVE_JSON);
    if !p.exists() {
        write_json(drive_dir, &p, &DriveState::default())?;
    }
    Ok(())
}

/// Creates a blank cartridge on the shelf (not loaded). Refuses an existing id.
pub fn create_blank(drive_dir: &Path, spec: &CartridgeSpec) -> Result<CartridgeInfo, TapeError> {
    check_id(drive_dir, &spec.id)?;
    if spec.capacity == 0 || spec.early_warning > spec.capacity {
        return Err(invalid(
            drive_dir,
            format!(
                "cartridge {}: capacity must be > 0 and early warning ({}) at most the capacity ({})",
                spec.id, spec.early_warning, spec.capacity
            ),
        ));
    }
    init_drive(drive_dir)?;
    let _lock = control_lock(drive_dir)?;
    let cdir = cartridge_path(drive_dir, &spec.id);
    if cdir.exists() {
        return Err(invalid(
            drive_dir,
            format!("cartridge {} already exists", spec.id),
        ));
    }
    let tmp = drive_dir
        .join("cartridges")
        .join(format!(".new-{}", spec.id));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(|e| io_err(drive_dir, "create cartridge", e))?;
    let meta = CartridgeMeta {
        id: spec.id.clone(),
        capacity: spec.capacity,
        early_warning: spec.early_warning,
        write_protected: false,
        inject_write_error_at: None,
        unreadable_when_blank: false,
        filemarks: 0,
    };
    write_json(drive_dir, &tmp.join(CARTRIDGE_JSON), &meta)?;
    fs::rename(&tmp, &cdir).map_err(|e| io_err(drive_dir, "create cartridge", e))?;
    File::open(drive_dir.join("cartridges"))
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(drive_dir, "sync cartridges dir", e))?;
    drop(_lock);
    info(drive_dir, &spec.id)
}

/// Creates a blank cartridge and loads it (refuses if the drive is occupied).
pub fn insert_blank(drive_dir: &Path, spec: &CartridgeSpec) -> Result<CartridgeInfo, TapeError> {
    init_drive(drive_dir)?;
    if let Some(other) = read_drive(drive_dir)?.loaded {
        return Err(invalid(
            drive_dir,
            format!("the drive holds cartridge {other}: eject it first"),
        ));
    }
    create_blank(drive_dir, spec)?;
    load(drive_dir, &spec.id)?;
    info(drive_dir, &spec.id)
}

/// Loads an existing cartridge into the empty drive; the tape is at BOT.
pub fn load(drive_dir: &Path, id: &str) -> Result<(), TapeError> {
    check_id(drive_dir, id)?;
    let _lock = control_lock(drive_dir)?;
    let mut drive = read_drive(drive_dir)?;
    if let Some(other) = &drive.loaded {
        return Err(invalid(
            drive_dir,
            format!("the drive holds cartridge {other}: eject it first"),
        ));
    }
    read_meta(drive_dir, id)?;
    drive.loaded = Some(id.to_string());
    drive.generation += 1;
    let _ = fs::remove_file(drive_dir.join(POSITION_JSON));
    write_json(drive_dir, &drive_dir.join(DRIVE_JSON), &drive)
}

/// Ejects whatever is loaded (the eject button); returns its id.
pub fn eject(drive_dir: &Path) -> Result<Option<String>, TapeError> {
    let _lock = control_lock(drive_dir)?;
    let mut drive = read_drive(drive_dir)?;
    let old = drive.loaded.take();
    if old.is_some() {
        drive.generation += 1;
        let _ = fs::remove_file(drive_dir.join(POSITION_JSON));
        write_json(drive_dir, &drive_dir.join(DRIVE_JSON), &drive)?;
    }
    Ok(old)
}

/// The id of the loaded cartridge, if any.
pub fn loaded(drive_dir: &Path) -> Result<Option<String>, TapeError> {
    Ok(read_drive(drive_dir)?.loaded)
}

fn update_meta(
    drive_dir: &Path,
    id: &str,
    change: impl FnOnce(&mut CartridgeMeta),
) -> Result<CartridgeMeta, TapeError> {
    check_id(drive_dir, id)?;
    let _lock = control_lock(drive_dir)?;
    let mut meta = read_meta(drive_dir, id)?;
    change(&mut meta);
    write_json(
        drive_dir,
        &cartridge_path(drive_dir, id).join(CARTRIDGE_JSON),
        &meta,
    )?;
    Ok(meta)
}

/// Sets or clears a cartridge's write-protect tab (takes effect on the next operation).
pub fn set_write_protect(drive_dir: &Path, id: &str, on: bool) -> Result<(), TapeError> {
    update_meta(drive_dir, id, |m| m.write_protected = on).map(|_| ())
}

/// Arms (or with `None` disarms) a one-shot write error at a byte position of the cartridge:
/// the first write whose bytes would cover that position fails with an I/O error and writes
/// nothing.
pub fn inject_write_error(drive_dir: &Path, id: &str, at: Option<u64>) -> Result<(), TapeError> {
    update_meta(drive_dir, id, |m| m.inject_write_error_at = at).map(|_| ())
}

/// Makes a cartridge answer a read with an I/O error (EIO, "medium error") instead of the end
/// of data while nothing is recorded on it, as Debian's tgt does for a blank tape and some real
/// drives do for a factory-new or degaussed cartridge; once something is written it reads
/// normally. Takes effect on the next operation.
pub fn set_unreadable_when_blank(drive_dir: &Path, id: &str, on: bool) -> Result<(), TapeError> {
    update_meta(drive_dir, id, |m| m.unreadable_when_blank = on).map(|_| ())
}

fn info(drive_dir: &Path, id: &str) -> Result<CartridgeInfo, TapeError> {
    let meta = read_meta(drive_dir, id)?;
    let cdir = cartridge_path(drive_dir, id);
    let mut used = 0;
    for f in 0..=meta.filemarks {
        let runs = read_runs(&rec_path(&cdir, f)).map_err(|e| io_err(drive_dir, "read .rec", e))?;
        let data_len = fs::metadata(data_path(&cdir, f))
            .map(|m| m.len())
            .unwrap_or(0);
        used += runs_bytes(&runs).min(data_len);
    }
    let loaded = read_drive(drive_dir)?.loaded.as_deref() == Some(id);
    Ok(CartridgeInfo {
        id: meta.id,
        capacity: meta.capacity,
        early_warning: meta.early_warning,
        write_protected: meta.write_protected,
        inject_write_error_at: meta.inject_write_error_at,
        unreadable_when_blank: meta.unreadable_when_blank,
        filemarks: meta.filemarks,
        bytes_used: used,
        loaded,
        dir: cdir,
    })
}

/// Every cartridge of this drive, by id.
pub fn list_cartridges(drive_dir: &Path) -> Result<Vec<CartridgeInfo>, TapeError> {
    let mut ids = Vec::new();
    let rd = fs::read_dir(drive_dir.join("cartridges"))
        .map_err(|e| io_err(drive_dir, "list cartridges", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| io_err(drive_dir, "list cartridges", e))?;
        if let Some(name) = entry.file_name().to_str() {
            if check_id(drive_dir, name).is_ok() && entry.path().join(CARTRIDGE_JSON).exists() {
                ids.push(name.to_string());
            }
        }
    }
    ids.sort();
    ids.iter().map(|id| info(drive_dir, id)).collect()
}

/// The path of tape file `file_number` on a cartridge (it may not exist: an empty file).
pub fn tape_file_path(drive_dir: &Path, id: &str, file_number: u32) -> Result<PathBuf, TapeError> {
    check_id(drive_dir, id)?;
    Ok(data_path(&cartridge_path(drive_dir, id), file_number))
}

/// A run of equal-length records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    len: u32,
    count: u64,
}

fn runs_bytes(runs: &[Run]) -> u64 {
    runs.iter().map(|r| u64::from(r.len) * r.count).sum()
}

fn runs_records(runs: &[Run]) -> u64 {
    runs.iter().map(|r| r.count).sum()
}

fn push_run(runs: &mut Vec<Run>, len: u32, count: u64) {
    match runs.last_mut() {
        Some(last) if last.len == len => last.count += count,
        _ => runs.push(Run { len, count }),
    }
}

/// Reads a `.rec` file; a trailing partial entry (killed writer) is ignored.
fn read_runs(path: &Path) -> std::io::Result<Vec<Run>> {
    let mut body = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut body)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut runs = Vec::new();
    for entry in body.chunks_exact(8) {
        let len = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let count = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        if len > 0 && count > 0 {
            push_run(&mut runs, len, u64::from(count));
        }
    }
    Ok(runs)
}

fn encode_runs(runs: &[Run]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in runs {
        let mut left = r.count;
        while left > 0 {
            let c = left.min(u64::from(u32::MAX));
            out.extend_from_slice(&r.len.to_le_bytes());
            out.extend_from_slice(&(c as u32).to_le_bytes());
            left -= c;
        }
    }
    out
}

/// Keeps the first `records` records of `runs`.
fn cut_runs(runs: &[Run], mut records: u64) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        if records == 0 {
            break;
        }
        let c = r.count.min(records);
        out.push(Run {
            len: r.len,
            count: c,
        });
        records -= c;
    }
    out
}

/// Keeps the whole records of `runs` that fit in `bytes`.
fn runs_within(runs: &[Run], mut bytes: u64) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        let len = u64::from(r.len);
        let c = r.count.min(bytes / len);
        if c > 0 {
            out.push(Run {
                len: r.len,
                count: c,
            });
        }
        bytes -= c * len;
        if c < r.count {
            break;
        }
    }
    out
}

/// One tape file as mounted: its record runs (sizes of the other files suffice).
#[derive(Debug)]
struct Mount {
    id: String,
    cdir: PathBuf,
    meta: CartridgeMeta,
    meta_stamp: Option<Stamp>,
    /// Bytes of each tape file 0..=filemarks.
    sizes: Vec<u64>,
    /// Current file.
    file: u32,
    /// Record runs of the current file.
    runs: Vec<Run>,
    /// Records before the current position in the current file.
    block: u64,
    /// Byte offset of the current position in the current file.
    offset: u64,
    /// Cursor into `runs`: run index and records consumed in it.
    cursor: (usize, u64),
    block_known: bool,
    /// Open for appending to the current file (data, record lengths).
    writer: Option<(File, File)>,
    /// Reader of the current file.
    reader: Option<File>,
}

impl Mount {
    fn base(&self) -> u64 {
        self.sizes[..self.file as usize].iter().sum()
    }
    fn records(&self) -> u64 {
        runs_records(&self.runs)
    }
    fn at_file_end(&self) -> bool {
        self.block >= self.records()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastOp {
    None,
    Write,
    Other,
}

/// An open emulated drive (exclusive, like st: a second open fails with `Busy`).
#[derive(Debug)]
pub struct EmulatedTape {
    dir: PathBuf,
    _lock: Flock<File>,
    drive_stamp: Option<Stamp>,
    generation: u64,
    mount: Option<Mount>,
    block_size: u32,
    last_op: LastOp,
    /// The last write was refused at early warning, so the next one is allowed.
    ew_allow_next: bool,
    /// The position was reached by crossing a filemark (st's "ST_FM" state).
    after_filemark: bool,
    /// The zero read at end of data after a filemark was given.
    eod_zero_given: bool,
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
    fn refresh(&mut self) -> Result<(), TapeError> {
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

    fn reset_flags(&mut self) {
        self.ew_allow_next = false;
        self.after_filemark = false;
        self.eod_zero_given = false;
    }

    /// Mounts a cartridge: repairs what a killed writer left and positions at BOT.
    fn mount_cartridge(&self, id: &str) -> Result<Mount, TapeError> {
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

    fn restore(&mut self, file: u32, block: u64, known: bool) -> Result<(), TapeError> {
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

    fn save_position(&self) {
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

    fn mounted(&mut self) -> Result<&mut Mount, TapeError> {
        self.refresh()?;
        let dev = self.dir.clone();
        self.mount
            .as_mut()
            .ok_or(TapeError::NoMedium { device: dev })
    }

    /// The mounted cartridge as last refreshed (callers refresh once per operation).
    fn mount_now(&mut self) -> Result<&mut Mount, TapeError> {
        let dev = self.dir.clone();
        self.mount
            .as_mut()
            .ok_or(TapeError::NoMedium { device: dev })
    }

    /// st writes a filemark before moving the tape if the last operation was a write.
    fn filemark_if_written(&mut self) -> Result<(), TapeError> {
        if self.last_op == LastOp::Write {
            self.write_filemarks(1)?;
        }
        Ok(())
    }

    /// Makes the current position the end of data (discarding what follows) and opens the
    /// current file for appending.
    fn prepare_write(&mut self) -> Result<(), TapeError> {
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

/// Makes file `f`'s data and record lengths agree (cutting what a killed writer left
/// half-done) and returns its size.
fn repair_file(dev: &Path, cdir: &Path, f: u32) -> Result<u64, TapeError> {
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
fn enter_file(dev: &Path, m: &mut Mount, f: u32) -> Result<(), TapeError> {
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
fn advance_to(m: &mut Mount, block: u64) {
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

impl TapeDrive for EmulatedTape {
    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        self.refresh()?;
        let block_size = self.block_size;
        let Some(m) = self.mount.as_ref() else {
            return Ok(TapeStatus {
                online: false,
                write_protected: false,
                bot: false,
                eod: false,
                early_warning: false,
                door_open: true,
                file_number: None,
                block_number: None,
                block_size,
            });
        };
        let pos = m.base() + m.offset;
        Ok(TapeStatus {
            online: true,
            write_protected: m.meta.write_protected,
            bot: m.file == 0 && m.block == 0,
            eod: m.file == m.meta.filemarks && m.at_file_end(),
            early_warning: pos >= m.meta.early_warning,
            door_open: false,
            file_number: Some(m.file),
            block_number: m.block_known.then_some(m.block),
            block_size,
        })
    }

    fn set_block_size(&mut self, size: u32) -> Result<(), TapeError> {
        self.refresh()?;
        if size > 16 * 1024 * 1024 {
            return Err(invalid(&self.dir, format!("block size {size} too large")));
        }
        self.block_size = size;
        Ok(())
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.mounted()?;
        self.filemark_if_written()?;
        let dev = self.dir.clone();
        let m = self.mount_now()?;
        enter_file(&dev, m, 0)?;
        self.last_op = LastOp::Other;
        self.reset_flags();
        self.save_position();
        Ok(())
    }

    fn write_block(&mut self, data: &[u8]) -> Result<(), TapeError> {
        self.mounted()?;
        let dev = self.dir.clone();
        if data.is_empty() {
            return Ok(());
        }
        let bs = self.block_size;
        if bs > 0 && !data.len().is_multiple_of(bs as usize) {
            return Err(invalid(
                &dev,
                format!(
                    "write of {} bytes is not a multiple of the block size {bs}",
                    data.len()
                ),
            ));
        }
        let (len, count) = if bs > 0 {
            (bs, (data.len() / bs as usize) as u32)
        } else {
            let len = u32::try_from(data.len())
                .ok()
                .filter(|l| *l <= 16 * 1024 * 1024)
                .ok_or_else(|| invalid(&dev, "record larger than 16 MiB"))?;
            (len, 1)
        };
        self.prepare_write()?;
        let allow_next = self.ew_allow_next;
        let m = self.mount_now()?;
        let start = m.base() + m.offset;
        let end = start + data.len() as u64;
        if start >= m.meta.early_warning && start < m.meta.capacity && !allow_next {
            self.ew_allow_next = true;
            return Err(TapeError::EarlyWarning { device: dev });
        }
        let m = self.mount.as_mut().ok_or(TapeError::NoMedium {
            device: dev.clone(),
        })?;
        if end > m.meta.capacity {
            self.ew_allow_next = false;
            return Err(TapeError::EndOfMedium { device: dev });
        }
        if let Some(at) = m.meta.inject_write_error_at {
            if at >= start && at < end {
                let meta = update_meta(&dev, &m.id, |meta| meta.inject_write_error_at = None)?;
                m.meta = meta;
                m.meta_stamp = stamp(&m.cdir.join(CARTRIDGE_JSON));
                return Err(TapeError::Io {
                    device: dev,
                    op: "write",
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                });
            }
        }
        let (dfile, rfile) = m
            .writer
            .as_mut()
            .ok_or_else(|| invalid(&dev, "not open for writing"))?;
        dfile
            .write_all(data)
            .map_err(|e| io_err(&dev, "write tape file", e))?;
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&len.to_le_bytes());
        entry[4..].copy_from_slice(&count.to_le_bytes());
        rfile
            .write_all(&entry)
            .map_err(|e| io_err(&dev, "write .rec", e))?;
        push_run(&mut m.runs, len, u64::from(count));
        m.block += u64::from(count);
        m.offset += data.len() as u64;
        m.cursor = (m.runs.len(), 0);
        m.sizes[m.file as usize] = m.offset;
        self.ew_allow_next = false;
        self.last_op = LastOp::Write;
        self.after_filemark = false;
        self.eod_zero_given = false;
        Ok(())
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.mounted()?;
        if count == 0 {
            let m = self.mount_now()?;
            if let Some((d, r)) = m.writer.as_ref() {
                d.sync_data()
                    .and_then(|_| r.sync_data())
                    .map_err(|e| io_err(&dev, "flush", e))?;
            }
            return Ok(());
        }
        self.prepare_write()?;
        let m = self.mount_now()?;
        if let Some((d, r)) = m.writer.as_ref() {
            d.sync_data()
                .and_then(|_| r.sync_data())
                .map_err(|e| io_err(&dev, "flush", e))?;
        }
        let file = m
            .file
            .checked_add(count)
            .ok_or_else(|| invalid(&dev, "too many filemarks"))?;
        let meta = update_meta(&dev, &m.id, |meta| meta.filemarks = file)?;
        m.meta = meta;
        m.meta_stamp = stamp(&m.cdir.join(CARTRIDGE_JSON));
        m.sizes.resize(file as usize + 1, 0);
        enter_file(&dev, m, file)?;
        self.last_op = LastOp::Other;
        self.ew_allow_next = false;
        self.after_filemark = true;
        self.eod_zero_given = false;
        self.save_position();
        Ok(())
    }

    fn read_block(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        let dev = self.dir.clone();
        let bs = self.block_size;
        let after_fm = self.after_filemark;
        let zero_given = self.eod_zero_given;
        self.last_op = LastOp::Other;
        let m = self.mounted()?;
        m.writer = None;
        if m.meta.unreadable_when_blank && m.meta.filemarks == 0 && m.sizes[0] == 0 {
            return Err(TapeError::Io {
                device: dev,
                op: "read",
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if m.at_file_end() {
            if m.file < m.meta.filemarks {
                let next = m.file + 1;
                enter_file(&dev, m, next)?;
                self.after_filemark = true;
                self.eod_zero_given = false;
                return Ok(0);
            }
            if after_fm && !zero_given {
                self.eod_zero_given = true;
                return Ok(0);
            }
            return Err(TapeError::EndOfData { device: dev });
        }
        let (i, used) = m.cursor;
        let run = m.runs[i];
        let len = run.len as usize;
        let n = if bs > 0 {
            if run.len != bs {
                advance_to(m, m.block + 1);
                return Err(invalid(
                    &dev,
                    format!("record of {len} bytes read in fixed block mode of {bs} bytes"),
                ));
            }
            (buf.len() / len).min((run.count - used) as usize)
        } else {
            usize::from(buf.len() >= len)
        };
        if n == 0 {
            let block = m.block + 1;
            advance_to(m, block);
            return Err(invalid(
                &dev,
                format!(
                    "record of {len} bytes does not fit a buffer of {} bytes",
                    buf.len()
                ),
            ));
        }
        if m.reader.is_none() {
            m.reader = Some(
                File::open(data_path(&m.cdir, m.file))
                    .map_err(|e| io_err(&dev, "open tape file", e))?,
            );
        }
        let reader = m
            .reader
            .as_ref()
            .ok_or_else(|| invalid(&dev, "no reader"))?;
        let bytes = n * len;
        reader
            .read_exact_at(&mut buf[..bytes], m.offset)
            .map_err(|e| io_err(&dev, "read tape file", e))?;
        let block = m.block + n as u64;
        advance_to(m, block);
        self.after_filemark = false;
        self.eod_zero_given = false;
        Ok(bytes)
    }

    fn space_filemarks(&mut self, count: i32) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.mounted()?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            self.filemark_if_written()?;
        }
        self.last_op = LastOp::Other;
        self.reset_flags();
        let m = self.mount_now()?;
        if count > 0 {
            for _ in 0..count {
                if m.file < m.meta.filemarks {
                    let next = m.file + 1;
                    enter_file(&dev, m, next)?;
                } else {
                    let end = m.records();
                    advance_to(m, end);
                    self.save_position();
                    return Err(TapeError::EndOfData { device: dev });
                }
            }
            self.after_filemark = true;
        } else {
            let back = count.unsigned_abs();
            if back > m.file {
                enter_file(&dev, m, 0)?;
                self.save_position();
                return Err(TapeError::BeginningOfMedium { device: dev });
            }
            let target = m.file - back;
            enter_file(&dev, m, target)?;
            let end = m.records();
            advance_to(m, end);
            // st cannot know the block number after spacing backwards.
            m.block_known = false;
        }
        self.save_position();
        Ok(())
    }

    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        let dev = self.dir.clone();
        self.last_op = LastOp::Other;
        self.reset_flags();
        let m = self.mounted()?;
        if m.file != m.meta.filemarks || !m.at_file_end() {
            let last = m.meta.filemarks;
            enter_file(&dev, m, last)?;
            let end = m.records();
            advance_to(m, end);
        }
        self.save_position();
        Ok(())
    }

    fn cartridge_name(&mut self) -> Option<String> {
        self.refresh().ok()?;
        self.mount.as_ref().map(|m| m.id.clone())
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.mounted()?;
        self.filemark_if_written()?;
        self.last_op = LastOp::None;
        self.reset_flags();
        self.mount = None;
        eject(&self.dir)?;
        self.refresh()?;
        Ok(())
    }
}
