//! An md emulator that keeps a sysfs-shaped tree (`<root>/sys/block/md0/md/...`,
//! `<root>/sys/class/block/sdX`, `<root>/dev/disk/by-path/...`, `<root>/dev/sdX`,
//! `<root>/sys/class/leds/...`) and changes it the way md would: a member written `faulty`
//! loses its slot, `remove` refuses a working member, a disk written to `new_dev` becomes a
//! spare that md recovers onto over a few seconds, `check` counts mismatches.
//!
//! It is driven by [`Emulator::tick`] and by the demo's hands ([`Emulator::fail_disk`],
//! [`Emulator::insert_disk`]); it is read with the real [`crate::md::MdSysfs`] and
//! [`crate::disks::Disks`], so the demo runs the same probe code as the box.

use crate::disks::{Disks, MD_SB_MAGIC};
use crate::md::{MdControl, MdSysfs, SysfsControl};
use crate::sysfs::{check_name, read_opt};
use crate::HalError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The emulated array's name.
pub const ARRAY: &str = "md0";
/// Space each member provides, KiB (1 GiB).
pub const COMPONENT_KIB: u64 = 1 << 20;
/// Seconds a full recovery takes in the emulator.
pub const REBUILD_SECS: f64 = 7.0;
/// Seconds a full check takes in the emulator.
pub const CHECK_SECS: f64 = 3.0;

/// The by-path name the emulator gives the disk in `bay` (matches `board/demo/board.toml`).
pub fn by_path_for_bay(bay: u32) -> String {
    format!("pci-0000:00:1f.2-ata-{bay}")
}

/// What kind of disk the demo's hands put in a bay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewDisk {
    /// A new, blank disk large enough.
    Blank,
    /// A disk that was in another array (holds an md superblock).
    Used,
    /// A blank disk smaller than the array's component size.
    Small,
}

/// The emulator over one tree.
#[derive(Debug)]
pub struct Emulator {
    root: PathBuf,
    last_tick: Mutex<Option<Instant>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HalError + '_ {
    move |e| HalError::io(path, e)
}

fn put(path: &Path, value: &str) -> Result<(), HalError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(path, format!("{value}\n")).map_err(io(path))
}

impl Emulator {
    /// Open the tree at `root`, creating on first use one RAID 6 array `md0` with one member in
    /// each of bays `1..=bays`.
    pub fn create(root: impl Into<PathBuf>, bays: u32) -> Result<Self, HalError> {
        let emu = Self {
            root: root.into(),
            last_tick: Mutex::new(None),
        };
        if !emu.md_dir().is_dir() {
            emu.build(bays)?;
        }
        Ok(emu)
    }

    /// The tree's root (give it to [`MdSysfs`] and [`Disks`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn md_dir(&self) -> PathBuf {
        self.root.join("sys/block").join(ARRAY).join("md")
    }

    fn build(&self, bays: u32) -> Result<(), HalError> {
        let md = self.md_dir();
        for (attr, value) in [
            ("level", "raid6".to_string()),
            ("raid_disks", bays.to_string()),
            ("array_state", "clean".to_string()),
            ("degraded", "0".to_string()),
            ("sync_action", "idle".to_string()),
            ("sync_completed", "none".to_string()),
            ("sync_speed", "none".to_string()),
            ("mismatch_cnt", "0".to_string()),
            ("component_size", COMPONENT_KIB.to_string()),
            ("metadata_version", "1.2".to_string()),
            ("new_dev", String::new()),
        ] {
            put(&md.join(attr), &value)?;
        }
        for bay in 1..=bays {
            let kname = format!("sd{}", (b'a' + (bay - 1) as u8) as char);
            self.make_disk(&kname, bay, COMPONENT_KIB * 2 + 4096, true)?;
            self.make_member(&kname, Some(bay - 1), "in_sync")?;
            for led in ["fault", "locate"] {
                put(
                    &self
                        .root
                        .join(format!("sys/class/leds/bay{bay}-{led}/brightness")),
                    "0",
                )?;
            }
        }
        Ok(())
    }

    fn make_disk(&self, kname: &str, bay: u32, sectors: u64, member: bool) -> Result<(), HalError> {
        let idx = u32::from(kname.as_bytes()[2] - b'a');
        let dir = self.root.join("sys/class/block").join(kname);
        put(&dir.join("size"), &sectors.to_string())?;
        put(&dir.join("dev"), &format!("8:{}", idx * 16))?;
        let node = self.root.join("dev").join(kname);
        put(&node, "")?;
        let mut start = vec![0u8; 8192];
        if member {
            start[4096..4100].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
        }
        std::fs::write(&node, &start).map_err(io(&node))?;
        self.write_smart(kname, true, 0)?;
        let links = self.root.join("dev/disk/by-path");
        std::fs::create_dir_all(&links).map_err(io(&links))?;
        let link = links.join(by_path_for_bay(bay));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../../{kname}"), &link).map_err(io(&link))
    }

    /// The folder of the emulated disks' SMART JSON (`<kname>.json`, smartctl 7.3's shape).
    pub fn smart_dir(&self) -> PathBuf {
        self.root.join("smart")
    }

    /// Write the SMART JSON of an emulated disk: the drive's verdict and its reallocated
    /// sector count (the demo's hands edit these to show early warnings).
    pub fn write_smart(&self, kname: &str, passed: bool, reallocated: u64) -> Result<(), HalError> {
        check_name(kname)?;
        let json = serde_json::json!({
            "json_format_version": [1, 0],
            "smartctl": {"version": [7, 3], "exit_status": if passed { 0 } else { 8 }},
            "device": {"name": format!("/dev/{kname}"), "type": "sat", "protocol": "ATA"},
            "model_name": "CAIRN EMULATED DISK",
            "serial_number": format!("EMU-{kname}"),
            "smart_status": {"passed": passed},
            "ata_smart_attributes": {"revision": 16, "table": [
                {"id": 5, "name": "Reallocated_Sector_Ct", "value": 100, "worst": 100,
                 "thresh": 36, "raw": {"value": reallocated, "string": reallocated.to_string()}},
                {"id": 197, "name": "Current_Pending_Sector", "value": 100, "worst": 100,
                 "thresh": 0, "raw": {"value": 0, "string": "0"}},
                {"id": 198, "name": "Offline_Uncorrectable", "value": 100, "worst": 100,
                 "thresh": 0, "raw": {"value": 0, "string": "0"}}
            ]},
            "temperature": {"current": 33}
        });
        put(
            &self.smart_dir().join(format!("{kname}.json")),
            &json.to_string(),
        )
    }

    fn make_member(&self, kname: &str, slot: Option<u32>, state: &str) -> Result<(), HalError> {
        let dir = self.md_dir().join(format!("dev-{kname}"));
        put(&dir.join("state"), state)?;
        put(
            &dir.join("slot"),
            &slot.map_or("none".to_string(), |s| s.to_string()),
        )?;
        put(&dir.join("errors"), "0")?;
        let link = dir.join("block");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../../../../class/block/{kname}"), &link)
            .map_err(io(&link))
    }

    fn kname_in_bay(&self, bay: u32) -> Result<Option<String>, HalError> {
        let disks = Disks::new(&self.root);
        Ok(disks
            .by_path()?
            .remove(&by_path_for_bay(bay))
            .filter(|k| disks.present(k)))
    }

    fn attr(&self, name: &str) -> Result<String, HalError> {
        Ok(read_opt(&self.md_dir().join(name))?.unwrap_or_default())
    }

    fn set(&self, name: &str, value: &str) -> Result<(), HalError> {
        put(&self.md_dir().join(name), value)
    }

    /// The disk in `bay` dies: md marks its member faulty, as after an I/O error.
    pub fn fail_disk(&self, bay: u32) -> Result<String, HalError> {
        let kname = self
            .kname_in_bay(bay)?
            .ok_or_else(|| HalError::invalid(format!("bay {bay}"), "no disk in this bay"))?;
        let member = self.md_dir().join(format!("dev-{kname}"));
        if !member.is_dir() {
            return Err(HalError::invalid(
                format!("bay {bay}"),
                "the disk there is not in the array",
            ));
        }
        self.mark_faulty(&kname)?;
        Ok(kname)
    }

    /// The disk in `bay` is pulled out: its block device disappears (md itself does not notice).
    pub fn pull_disk(&self, bay: u32) -> Result<(), HalError> {
        if let Some(kname) = self.kname_in_bay(bay)? {
            let dir = self.root.join("sys/class/block").join(&kname);
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            let node = self.root.join("dev").join(&kname);
            let _ = std::fs::remove_file(node);
        }
        let link = self
            .root
            .join("dev/disk/by-path")
            .join(by_path_for_bay(bay));
        let _ = std::fs::remove_file(link);
        Ok(())
    }

    /// A disk is slid into `bay` (the old one, if any, pulled first). Returns its kernel name.
    pub fn insert_disk(&self, bay: u32, kind: NewDisk) -> Result<String, HalError> {
        self.pull_disk(bay)?;
        let kname = self.next_kname()?;
        let sectors = match kind {
            NewDisk::Small => COMPONENT_KIB,
            _ => COMPONENT_KIB * 2 + 8192,
        };
        self.make_disk(&kname, bay, sectors, kind == NewDisk::Used)?;
        Ok(kname)
    }

    fn next_kname(&self) -> Result<String, HalError> {
        for c in b'a'..=b'z' {
            let k = format!("sd{}", c as char);
            if !self.root.join("sys/class/block").join(&k).exists()
                && !self.md_dir().join(format!("dev-{k}")).exists()
            {
                return Ok(k);
            }
        }
        Err(HalError::invalid("emulator", "no free disk names"))
    }

    fn mark_faulty(&self, kname: &str) -> Result<(), HalError> {
        let dir = self.md_dir().join(format!("dev-{kname}"));
        put(&dir.join("state"), "faulty")?;
        put(&dir.join("slot"), "none")?;
        self.recount()
    }

    fn redundancy(&self) -> Result<u32, HalError> {
        Ok(match self.attr("level")?.as_str() {
            "raid6" => 2,
            "raid0" | "linear" => 0,
            _ => 1,
        })
    }

    fn recount(&self) -> Result<(), HalError> {
        let a = MdSysfs::new(&self.root).read_array(ARRAY)?;
        let working = a
            .members
            .iter()
            .filter(|m| m.has("in_sync") && m.slot.is_some())
            .count() as u32;
        self.set(
            "degraded",
            &a.raid_disks.saturating_sub(working).to_string(),
        )
    }

    /// Advance time: recovery and check progress, recovery start when spares wait.
    pub fn tick(&self) -> Result<(), HalError> {
        let now = Instant::now();
        let dt = {
            let mut last = self
                .last_tick
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let dt = last.map_or(0.0, |l| now.duration_since(l).as_secs_f64());
            *last = Some(now);
            dt
        };
        let total = COMPONENT_KIB * 2;
        let action = self.attr("sync_action")?;
        match action.as_str() {
            "recover" | "check" | "repair" => {
                let secs = if action == "recover" {
                    REBUILD_SECS
                } else {
                    CHECK_SECS
                };
                let done =
                    crate::md::parse_completed(&self.attr("sync_completed")?).map_or(0, |(d, _)| d);
                let rate = total as f64 / secs;
                let done = done + (rate * dt) as u64;
                if done >= total {
                    self.finish(&action)?;
                } else {
                    self.set("sync_completed", &format!("{done} / {total}"))?;
                    self.set("sync_speed", &((rate / 2.0) as u64).to_string())?;
                }
            }
            _ => self.maybe_start_recovery()?,
        }
        Ok(())
    }

    fn finish(&self, action: &str) -> Result<(), HalError> {
        if action == "recover" {
            let a = MdSysfs::new(&self.root).read_array(ARRAY)?;
            for m in &a.members {
                if m.has("spare") && m.slot.is_some() {
                    put(
                        &self.md_dir().join(format!("dev-{}/state", m.kname)),
                        "in_sync",
                    )?;
                }
            }
            self.recount()?;
        }
        self.set("sync_action", "idle")?;
        self.set("sync_completed", "none")?;
        self.set("sync_speed", "none")?;
        self.maybe_start_recovery()
    }

    fn maybe_start_recovery(&self) -> Result<(), HalError> {
        let a = MdSysfs::new(&self.root).read_array(ARRAY)?;
        if a.degraded == 0 || a.degraded > self.redundancy()? {
            return Ok(());
        }
        let mut free: Vec<u32> = (0..a.raid_disks)
            .filter(|s| !a.members.iter().any(|m| m.slot == Some(*s)))
            .collect();
        let mut started = false;
        for m in &a.members {
            if m.has("spare") && m.slot.is_none() && m.present {
                let Some(slot) = free.first().copied() else {
                    break;
                };
                free.remove(0);
                put(
                    &self.md_dir().join(format!("dev-{}/slot", m.kname)),
                    &slot.to_string(),
                )?;
                started = true;
            }
        }
        if started {
            self.set("sync_action", "recover")?;
            self.set("sync_completed", &format!("0 / {}", COMPONENT_KIB * 2))?;
        }
        Ok(())
    }
}

impl MdControl for Emulator {
    fn set_member_state(&self, array: &str, member: &str, value: &str) -> Result<(), HalError> {
        check_name(array)?;
        check_name(member)?;
        let dir = self.md_dir().join(format!("dev-{member}"));
        if array != ARRAY || !dir.is_dir() {
            return Err(HalError::invalid(
                format!("{array}/dev-{member}"),
                "no such member",
            ));
        }
        let state = read_opt(&dir.join("state"))?.unwrap_or_default();
        match value {
            "faulty" => self.mark_faulty(member),
            "remove" => {
                if state.split(',').any(|f| f == "in_sync")
                    || state.contains("spare") && {
                        read_opt(&dir.join("slot"))?.is_some_and(|s| s != "none")
                    }
                {
                    return Err(HalError::invalid(
                        format!("{array}/dev-{member}"),
                        "Device or resource busy (member is active)",
                    ));
                }
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
                self.recount()
            }
            "-blocked" | "-write_error" => Ok(()),
            other => Err(HalError::invalid(
                format!("{array}/dev-{member}/state"),
                format!("emulator does not take {other:?}"),
            )),
        }
    }

    fn add_disk(&self, array: &str, kname: &str) -> Result<(), HalError> {
        check_name(kname)?;
        if array != ARRAY {
            return Err(HalError::invalid(array, "no such array"));
        }
        let disks = Disks::new(&self.root);
        let dev = disks.dev_number(kname)?;
        put(&self.md_dir().join("new_dev"), &dev)?;
        if self.md_dir().join(format!("dev-{kname}")).exists() {
            return Err(HalError::invalid(kname, "already a member"));
        }
        // md writes its superblock onto the new member.
        let node = self.root.join("dev").join(kname);
        let mut start = vec![0u8; 8192];
        start[4096..4100].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
        std::fs::write(&node, &start).map_err(io(&node))?;
        self.make_member(kname, None, "spare")?;
        self.maybe_start_recovery()
    }

    fn set_sync_action(&self, array: &str, action: &str) -> Result<(), HalError> {
        if array != ARRAY {
            return Err(HalError::invalid(array, "no such array"));
        }
        match action {
            "check" | "repair" => {
                if self.attr("sync_action")? != "idle" {
                    return Err(HalError::invalid(array, "Device or resource busy"));
                }
                self.set("mismatch_cnt", "0")?;
                self.set("sync_action", action)?;
                self.set("sync_completed", &format!("0 / {}", COMPONENT_KIB * 2))
            }
            "idle" => self.finish("idle"),
            other => Err(HalError::invalid(array, format!("unknown action {other}"))),
        }
    }

    fn set_led(&self, led: &str, on: bool) -> Result<(), HalError> {
        SysfsControl::new(&self.root).set_led(led, on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_swap_and_recover() {
        let t = tempfile::tempdir().unwrap();
        let emu = Emulator::create(t.path(), 6).unwrap();
        let md = MdSysfs::new(t.path());
        let a = md.read_array(ARRAY).unwrap();
        assert_eq!(
            (a.level.as_str(), a.raid_disks, a.degraded),
            ("raid6", 6, 0)
        );
        assert_eq!(a.members.len(), 6);

        let k = emu.fail_disk(3).unwrap();
        assert_eq!(k, "sdc");
        let a = md.read_array(ARRAY).unwrap();
        assert_eq!(a.degraded, 1);
        assert!(emu.set_member_state(ARRAY, "sdd", "remove").is_err());

        let new = emu.insert_disk(3, NewDisk::Blank).unwrap();
        assert_eq!(new, "sdg");
        assert!(!md.read_array(ARRAY).unwrap().members[2].present);
        emu.set_member_state(ARRAY, "sdc", "remove").unwrap();
        emu.add_disk(ARRAY, &new).unwrap();
        let a = md.read_array(ARRAY).unwrap();
        assert_eq!(a.sync_action, "recover");
        assert_eq!(a.sync_completed, Some((0, COMPONENT_KIB * 2)));
        // Pretend the whole rebuild time passed.
        *emu.last_tick.lock().unwrap() =
            Some(Instant::now() - std::time::Duration::from_secs_f64(REBUILD_SECS + 1.0));
        emu.tick().unwrap();
        let a = md.read_array(ARRAY).unwrap();
        assert_eq!((a.sync_action.as_str(), a.degraded), ("idle", 0));
        assert!(a.members.iter().all(|m| m.has("in_sync")));
    }
}
