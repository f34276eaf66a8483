//! The controls a person uses on a drive and its shelf: create, insert, load and eject
//! cartridges, set the write-protect tab, arm test faults, and list what there is.

use super::files::{
    cartridge_path, check_id, control_lock, data_path, invalid, io_err, read_drive, read_meta,
    rec_path, write_json, CartridgeInfo, CartridgeMeta, CartridgeSpec, DriveState, CARTRIDGE_JSON,
    DRIVE_JSON, POSITION_JSON,
};
use super::runs::{read_runs, runs_bytes};
use crate::tape::TapeError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

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

pub(super) fn update_meta(
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

pub(super) fn info(drive_dir: &Path, id: &str) -> Result<CartridgeInfo, TapeError> {
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
