//! Block devices under the root: which disk sits behind a `/dev/disk/by-path` name, its size
//! and `MAJ:MIN` (`sys/class/block/<kname>/{size,dev}`), and whether it is blank.

use crate::sysfs::{check_name, read_opt};
use crate::HalError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The md superblock magic (`MD_SB_MAGIC`), little-endian on disk for metadata 1.x.
pub const MD_SB_MAGIC: u32 = 0xa92b_4efc;

/// What the start of a disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contents {
    /// Only zeros where superblocks and partition tables live.
    Blank,
    /// An md superblock (metadata 1.1 at 0 or 1.2 at 4 KiB): a member of some array.
    MdSuperblock,
    /// Something else (a partition table, a file system).
    Data,
}

/// One disk as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Kernel name, e.g. `sdg`.
    pub kname: String,
    /// Size in bytes (`size` is in 512-byte sectors).
    pub size_bytes: u64,
    /// `MAJ:MIN`.
    pub dev: String,
}

/// Block devices under one root.
#[derive(Debug, Clone)]
pub struct Disks {
    root: PathBuf,
}

impl Disks {
    /// Disks under `root` (`/` on the box).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Every `/dev/disk/by-path` name with the kernel name it points to.
    pub fn by_path(&self) -> Result<BTreeMap<String, String>, HalError> {
        let dir = self.root.join("dev/disk/by-path");
        let mut out = BTreeMap::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(HalError::io(dir, e)),
        };
        for entry in rd.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                if let Some(k) = target.file_name() {
                    out.insert(
                        entry.file_name().to_string_lossy().into_owned(),
                        k.to_string_lossy().into_owned(),
                    );
                }
            }
        }
        Ok(out)
    }

    /// The by-path name of the whole disk holding `kname` (a disk or one of its partitions).
    pub fn disk_path_of(&self, kname: &str) -> Result<Option<String>, HalError> {
        Ok(self
            .by_path()?
            .into_iter()
            .find(|(_, k)| k == kname)
            .map(|(p, _)| strip_part(&p).to_string()))
    }

    /// The disk present behind a by-path name, if any.
    pub fn disk_at(&self, by_path: &str) -> Result<Option<DiskInfo>, HalError> {
        let Some(kname) = self.by_path()?.remove(by_path) else {
            return Ok(None);
        };
        if !self.present(&kname) {
            return Ok(None);
        }
        self.info(&kname).map(Some)
    }

    /// Whether the kernel still has this block device.
    pub fn present(&self, kname: &str) -> bool {
        check_name(kname).is_ok() && self.root.join("sys/class/block").join(kname).exists()
    }

    /// Size and device number of a block device.
    pub fn info(&self, kname: &str) -> Result<DiskInfo, HalError> {
        check_name(kname)?;
        let dir = self.root.join("sys/class/block").join(kname);
        let sectors: u64 = read_opt(&dir.join("size"))?
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HalError::invalid(kname, "no size in sysfs"))?;
        Ok(DiskInfo {
            kname: kname.to_string(),
            size_bytes: sectors * 512,
            dev: self.dev_number(kname)?,
        })
    }

    /// `MAJ:MIN` of a block device.
    pub fn dev_number(&self, kname: &str) -> Result<String, HalError> {
        check_name(kname)?;
        let p = self.root.join("sys/class/block").join(kname).join("dev");
        let dev = read_opt(&p)?.ok_or_else(|| HalError::invalid(kname, "no dev in sysfs"))?;
        if dev.split_once(':').is_none() {
            return Err(HalError::invalid(kname, format!("bad dev number {dev:?}")));
        }
        Ok(dev)
    }

    fn node(&self, kname: &str) -> Result<PathBuf, HalError> {
        check_name(kname)?;
        Ok(self.root.join("dev").join(kname))
    }

    /// Read the first 8 KiB of the disk and classify them.
    pub fn contents(&self, kname: &str) -> Result<Contents, HalError> {
        let path = self.node(kname)?;
        let mut f = std::fs::File::open(&path).map_err(|e| HalError::io(&path, e))?;
        let mut buf = vec![0u8; 8192];
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(HalError::io(&path, e)),
            }
        }
        buf.truncate(got);
        Ok(classify(&buf))
    }

    /// Zero the first 8 KiB (md 1.1/1.2 superblocks, partition table), as a person confirmed.
    pub fn wipe_start(&self, kname: &str) -> Result<(), HalError> {
        let path = self.node(kname)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| HalError::io(&path, e))?;
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.write_all(&[0u8; 8192]))
            .and_then(|_| f.sync_all())
            .map_err(|e| HalError::io(&path, e))
    }
}

/// Classify the first bytes of a disk.
pub fn classify(start: &[u8]) -> Contents {
    let magic_at = |off: usize| {
        start
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == MD_SB_MAGIC)
            .unwrap_or(false)
    };
    if magic_at(0) || magic_at(4096) {
        Contents::MdSuperblock
    } else if start.iter().all(|b| *b == 0) {
        Contents::Blank
    } else {
        Contents::Data
    }
}

/// `pci-0000:00:1f.2-ata-3-part1` -> `pci-0000:00:1f.2-ata-3`.
pub fn strip_part(by_path: &str) -> &str {
    match by_path.rsplit_once("-part") {
        Some((disk, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => disk,
        _ => by_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_start() {
        assert_eq!(classify(&[0u8; 8192]), Contents::Blank);
        let mut b = vec![0u8; 8192];
        b[4096..4100].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
        assert_eq!(classify(&b), Contents::MdSuperblock);
        b[4096] = 0;
        b[510] = 0x55;
        assert_eq!(classify(&b), Contents::Data);
    }

    #[test]
    fn part_suffix() {
        assert_eq!(
            strip_part("pci-0000:00:1f.2-ata-3-part1"),
            "pci-0000:00:1f.2-ata-3"
        );
        assert_eq!(
            strip_part("pci-0000:00:1f.2-ata-3"),
            "pci-0000:00:1f.2-ata-3"
        );
        assert_eq!(strip_part("x-partition"), "x-partition");
    }
}
