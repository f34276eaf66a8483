//! The disc emulator: a tray directory whose loaded disc is an image file that `xorriso`
//! writes as a `stdio:` pseudo-drive, with a capacity like a real blank disc.
//!
//! ```text
//! tray.json            {"loaded": "DISC01"} or {"loaded": null}
//! discs/<id>.iso       the disc image (absent or empty: blank)
//! discs/<id>.json      {"id": "DISC01", "capacity": 4700372992}
//! ```
//! Every file can be read without cairn: `xorriso -indev stdio:discs/<id>.iso -toc`.

use super::OpticalError;
use crate::medium::{is_valid_id, ID_RULE};
use cairn_files::{atomic_write, Durability};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// What the emulator knows about one disc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscInfo {
    /// Its id (1 to 32 of `A-Z a-z 0-9 - _`).
    pub id: String,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes of image written.
    pub bytes_used: u64,
    /// It is in the tray.
    pub loaded: bool,
    /// The image file.
    pub image: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tray {
    loaded: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscMeta {
    id: String,
    capacity: u64,
}

fn io(path: &Path, source: std::io::Error) -> OpticalError {
    OpticalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(tray_dir: &Path, message: impl Into<String>) -> OpticalError {
    OpticalError::Invalid {
        device: tray_dir.display().to_string(),
        message: message.into(),
    }
}

fn check_id(tray_dir: &Path, id: &str) -> Result<(), OpticalError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(invalid(tray_dir, format!("disc id {id:?}: use {ID_RULE}")))
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), OpticalError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| io(path, std::io::Error::other(e)))?;
    // Synced: the emulated disc's state stands for what is burnt on it.
    atomic_write(path, &body, Durability::Synced).map_err(|e| io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, OpticalError> {
    let body = fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&body).map_err(|e| io(path, std::io::Error::other(e)))
}

fn read_tray(tray_dir: &Path) -> Result<Tray, OpticalError> {
    let p = tray_dir.join("tray.json");
    if !p.exists() {
        return Err(invalid(tray_dir, "not a disc emulator tray (no tray.json)"));
    }
    read_json(&p)
}

/// The image file of disc `id` (it may not exist yet: a blank disc).
pub fn image_path(tray_dir: &Path, id: &str) -> Result<PathBuf, OpticalError> {
    check_id(tray_dir, id)?;
    Ok(tray_dir.join("discs").join(format!("{id}.iso")))
}

fn disc_info(tray_dir: &Path, id: &str, loaded: Option<&str>) -> Result<DiscInfo, OpticalError> {
    let meta: DiscMeta = read_json(&tray_dir.join("discs").join(format!("{id}.json")))?;
    let image = image_path(tray_dir, id)?;
    let bytes_used = fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    Ok(DiscInfo {
        id: meta.id,
        capacity: meta.capacity,
        bytes_used,
        loaded: loaded == Some(id),
        image,
    })
}

/// Creates the tray directory if missing (empty tray).
pub fn init_tray(tray_dir: &Path) -> Result<(), OpticalError> {
    let discs = tray_dir.join("discs");
    fs::create_dir_all(&discs).map_err(|e| io(&discs, e))?;
    let p = tray_dir.join("tray.json");
    if !p.exists() {
        write_json(&p, &Tray::default())?;
    }
    Ok(())
}

/// Creates a blank disc of `capacity` bytes on the shelf (not loaded). Refuses an existing id.
pub fn create_blank(tray_dir: &Path, id: &str, capacity: u64) -> Result<DiscInfo, OpticalError> {
    check_id(tray_dir, id)?;
    if capacity < 4 * 1024 * 1024 {
        return Err(invalid(tray_dir, "a disc holds at least 4 MiB"));
    }
    init_tray(tray_dir)?;
    let meta_path = tray_dir.join("discs").join(format!("{id}.json"));
    if meta_path.exists() {
        return Err(invalid(tray_dir, format!("disc {id} already exists")));
    }
    write_json(
        &meta_path,
        &DiscMeta {
            id: id.to_string(),
            capacity,
        },
    )?;
    disc_info(tray_dir, id, None)
}

/// Creates a blank disc of `capacity` bytes and loads it (refuses if the tray is occupied).
pub fn insert_blank(tray_dir: &Path, id: &str, capacity: u64) -> Result<DiscInfo, OpticalError> {
    init_tray(tray_dir)?;
    if let Some(other) = read_tray(tray_dir)?.loaded {
        return Err(invalid(
            tray_dir,
            format!("the tray holds disc {other}: eject it first"),
        ));
    }
    create_blank(tray_dir, id, capacity)?;
    load(tray_dir, id)?;
    disc_info(tray_dir, id, Some(id))
}

/// Loads an existing disc into the empty tray.
pub fn load(tray_dir: &Path, id: &str) -> Result<(), OpticalError> {
    check_id(tray_dir, id)?;
    let mut tray = read_tray(tray_dir)?;
    if let Some(other) = &tray.loaded {
        return Err(invalid(
            tray_dir,
            format!("the tray holds disc {other}: eject it first"),
        ));
    }
    if !tray_dir.join("discs").join(format!("{id}.json")).exists() {
        return Err(invalid(tray_dir, format!("no disc {id}")));
    }
    tray.loaded = Some(id.to_string());
    write_json(&tray_dir.join("tray.json"), &tray)
}

/// Ejects the loaded disc; returns its id.
pub fn eject(tray_dir: &Path) -> Result<Option<String>, OpticalError> {
    let mut tray = read_tray(tray_dir)?;
    let old = tray.loaded.take();
    if old.is_some() {
        write_json(&tray_dir.join("tray.json"), &tray)?;
    }
    Ok(old)
}

/// The loaded disc, if any.
pub fn loaded(tray_dir: &Path) -> Result<Option<DiscInfo>, OpticalError> {
    match read_tray(tray_dir)?.loaded {
        Some(id) => Ok(Some(disc_info(tray_dir, &id, Some(&id))?)),
        None => Ok(None),
    }
}

/// Every disc of this tray, by id.
pub fn list_discs(tray_dir: &Path) -> Result<Vec<DiscInfo>, OpticalError> {
    let tray = read_tray(tray_dir)?;
    let discs = tray_dir.join("discs");
    let mut ids = Vec::new();
    for entry in fs::read_dir(&discs).map_err(|e| io(&discs, e))? {
        let entry = entry.map_err(|e| io(&discs, e))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
            if check_id(tray_dir, id).is_ok() {
                ids.push(id.to_string());
            }
        }
    }
    ids.sort();
    ids.iter()
        .map(|id| disc_info(tray_dir, id, tray.loaded.as_deref()))
        .collect()
}
