//! md RAID through sysfs: `<root>/sys/block/mdN/md/...` read into [`ArraySnapshot`]s, changes
//! awaited with `poll(POLLPRI)` on the attributes md notifies, actions written to md's
//! attributes (see the kernel's `Documentation/admin-guide/md.rst`).

use crate::sysfs::{check_name, read_opt, write_attr};
use crate::HalError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One md array as read from sysfs at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySnapshot {
    /// Kernel name, e.g. `md0`.
    pub name: String,
    /// `md/level`, e.g. `raid6`; empty while the array is inactive.
    pub level: String,
    /// `md/raid_disks`: slots in the array.
    pub raid_disks: u32,
    /// `md/array_state`: clear, inactive, suspended, readonly, read-auto, clean, active, ...
    pub array_state: String,
    /// `md/degraded`: slots without a working member.
    pub degraded: u32,
    /// `md/sync_action`: idle, resync, recover, check, repair, reshape, frozen (empty if absent).
    pub sync_action: String,
    /// `md/sync_completed` as (done, total) sectors; `None` when it reads `none`.
    pub sync_completed: Option<(u64, u64)>,
    /// `md/sync_speed` in KiB/s; `None` when it reads `none`.
    pub sync_speed_kib: Option<u64>,
    /// `md/mismatch_cnt` after the last check or repair.
    pub mismatch_cnt: u64,
    /// `md/component_size` in KiB: the space each member must provide.
    pub component_size_kib: u64,
    /// The members (`md/dev-*`), sorted by name.
    pub members: Vec<MemberSnapshot>,
}

/// One member device (`md/dev-<kname>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    /// Kernel name of the block device, e.g. `sdc` or `sdc1`.
    pub kname: String,
    /// The comma-separated flags of `dev-*/state` (in_sync, faulty, spare, write_mostly, ...).
    pub flags: Vec<String>,
    /// `dev-*/slot`; `None` when it reads `none`.
    pub slot: Option<u32>,
    /// `dev-*/errors`: read errors corrected.
    pub errors: u64,
    /// Whether the block device still exists (`sys/class/block/<kname>`).
    pub present: bool,
}

impl MemberSnapshot {
    /// Whether `dev-*/state` holds this flag.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// The md arrays under one root.
#[derive(Debug, Clone)]
pub struct MdSysfs {
    root: PathBuf,
}

const NOTIFYING: [&str; 5] = [
    "array_state",
    "degraded",
    "sync_action",
    "sync_completed",
    "mismatch_cnt",
];

impl MdSysfs {
    /// Arrays under `root` (`/` on the box; a fixture or emulator tree in tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root given to [`MdSysfs::new`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn block_dir(&self) -> PathBuf {
        self.root.join("sys/block")
    }

    /// `<root>/sys/block/<array>/md`.
    pub fn md_dir(&self, array: &str) -> PathBuf {
        self.block_dir().join(array).join("md")
    }

    /// Names of the md arrays present (`mdN`, including inactive ones), sorted.
    pub fn arrays(&self) -> Result<Vec<String>, HalError> {
        let dir = self.block_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HalError::io(dir, e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| HalError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("md") && entry.path().join("md").is_dir() {
                names.push(name);
            }
        }
        names.sort_by_key(|n| (n.len(), n.clone()));
        Ok(names)
    }

    /// Read every array.
    pub fn snapshot(&self) -> Result<Vec<ArraySnapshot>, HalError> {
        let mut out = Vec::new();
        for name in self.arrays()? {
            match self.read_array(&name) {
                Ok(a) => out.push(a),
                // An array stopped between listing and reading is simply gone.
                Err(HalError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Read one array.
    pub fn read_array(&self, name: &str) -> Result<ArraySnapshot, HalError> {
        let md = self.md_dir(name);
        if !md.is_dir() {
            return Err(HalError::io(
                md,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let mut members = Vec::new();
        let rd = std::fs::read_dir(&md).map_err(|e| HalError::io(&md, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| HalError::io(&md, e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(kname) = file.strip_prefix("dev-") else {
                continue;
            };
            let dir = entry.path();
            let state = read_opt(&dir.join("state"))?.unwrap_or_default();
            members.push(MemberSnapshot {
                kname: kname.to_string(),
                flags: state
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                slot: read_opt(&dir.join("slot"))?.and_then(|s| s.parse().ok()),
                errors: parse_num(read_opt(&dir.join("errors"))?.as_deref()),
                present: self.root.join("sys/class/block").join(kname).exists(),
            });
        }
        members.sort_by(|a, b| a.kname.cmp(&b.kname));
        let attr = |n: &str| read_opt(&md.join(n));
        Ok(ArraySnapshot {
            name: name.to_string(),
            level: attr("level")?.unwrap_or_default(),
            raid_disks: parse_num(attr("raid_disks")?.as_deref()) as u32,
            array_state: attr("array_state")?.unwrap_or_default(),
            degraded: parse_num(attr("degraded")?.as_deref()) as u32,
            sync_action: attr("sync_action")?.unwrap_or_default(),
            sync_completed: attr("sync_completed")?.as_deref().and_then(parse_completed),
            sync_speed_kib: attr("sync_speed")?.and_then(|s| s.parse().ok()),
            mismatch_cnt: parse_num(attr("mismatch_cnt")?.as_deref()),
            component_size_kib: parse_num(attr("component_size")?.as_deref()),
            members,
        })
    }

    /// Wait until md notifies a change on one of the attributes it notifies (`array_state`,
    /// `degraded`, `sync_action`, `sync_completed`, `mismatch_cnt`, `dev-*/state`) or until
    /// `timeout` passes (the safety-net timer). Returns true when md signalled a change.
    /// Plain files (fixtures, the emulator) never signal, so this is then a plain sleep.
    pub fn wait_for_change(&self, timeout: Duration) -> Result<bool, HalError> {
        self.wait_for_change_or(timeout, &[])
    }

    /// [`MdSysfs::wait_for_change`], also waking when one of `also` becomes readable (the
    /// [`crate::uevent::UeventWatcher`]'s socket, so a disk pulled out wakes the monitor at once).
    pub fn wait_for_change_or(
        &self,
        timeout: Duration,
        also: &[BorrowedFd<'_>],
    ) -> Result<bool, HalError> {
        let mut files = Vec::new();
        for name in self.arrays()? {
            let md = self.md_dir(&name);
            let mut paths: Vec<PathBuf> = NOTIFYING.iter().map(|a| md.join(a)).collect();
            if let Ok(rd) = std::fs::read_dir(&md) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with("dev-") {
                        paths.push(e.path().join("state"));
                    }
                }
            }
            for p in paths {
                // sysfs_notify wakes pollers only after they read the attribute once.
                if let Ok(mut f) = File::open(&p) {
                    let mut sink = [0u8; 256];
                    let _ = f.read(&mut sink);
                    files.push(f);
                }
            }
        }
        let timeout_ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        if files.is_empty() && also.is_empty() {
            std::thread::sleep(Duration::from_millis(timeout_ms.into()));
            return Ok(false);
        }
        let mut fds: Vec<nix::poll::PollFd> = files
            .iter()
            .map(|f| {
                nix::poll::PollFd::new(
                    f.as_fd(),
                    nix::poll::PollFlags::POLLPRI | nix::poll::PollFlags::POLLERR,
                )
            })
            .chain(
                also.iter()
                    .map(|fd| nix::poll::PollFd::new(*fd, nix::poll::PollFlags::POLLIN)),
            )
            .collect();
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(timeout_ms)) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(HalError::io(self.block_dir(), e.into())),
        }
    }
}

/// md actions, as the kernel offers them through sysfs.
pub trait MdControl: Send + Sync {
    /// Write `dev-<member>/state` (`faulty`, `remove`, `-blocked`, `want_replacement`...).
    fn set_member_state(&self, array: &str, member: &str, value: &str) -> Result<(), HalError>;
    /// Add a whole blank disk to an array as a spare (on a real kernel: a 1.2 superblock
    /// written onto it, then its `MAJ:MIN` to `md/new_dev`); md starts recovery onto it when
    /// the array is degraded.
    fn add_disk(&self, array: &str, kname: &str) -> Result<(), HalError>;
    /// Write `md/sync_action` (`check` starts a scrub, `idle` stops one).
    fn set_sync_action(&self, array: &str, action: &str) -> Result<(), HalError>;
    /// Switch a LED (`sys/class/leds/<led>/brightness`).
    fn set_led(&self, led: &str, on: bool) -> Result<(), HalError>;
}

/// [`MdControl`] on a real kernel: writes md's sysfs attributes under the root.
#[derive(Debug, Clone)]
pub struct SysfsControl {
    md: MdSysfs,
}

impl SysfsControl {
    /// Control the arrays under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            md: MdSysfs::new(root),
        }
    }
}

impl MdControl for SysfsControl {
    fn set_member_state(&self, array: &str, member: &str, value: &str) -> Result<(), HalError> {
        check_name(array)?;
        check_name(member)?;
        write_attr(
            &self
                .md
                .md_dir(array)
                .join(format!("dev-{member}"))
                .join("state"),
            value,
        )
    }

    /// md takes only a device that already carries a superblock of the array's kind, so this
    /// first writes a 1.2 spare superblock derived from a working member's (as `mdadm --add`
    /// does), then writes `MAJ:MIN` to `md/new_dev`, then asks md to look for recovery work.
    /// If md refuses the device, its start is zeroed again so it still reads as blank.
    fn add_disk(&self, array: &str, kname: &str) -> Result<(), HalError> {
        use crate::superblock::{random_uuid, Superblock};
        check_name(array)?;
        let md = self.md.md_dir(array);
        if let Some(v) = read_opt(&md.join("metadata_version"))? {
            if v != "1.2" {
                return Err(HalError::invalid(
                    array,
                    format!("metadata {v}: only 1.2 members are added"),
                ));
            }
        }
        let disks = crate::disks::Disks::new(self.md.root());
        let info = disks.info(kname)?;
        let snap = self.md.read_array(array)?;
        if snap.members.iter().any(|m| m.kname == kname) {
            return Err(HalError::invalid(kname, "already a member"));
        }
        // The freshest superblock among the working members.
        let source = snap
            .members
            .iter()
            .filter(|m| m.present && m.has("in_sync") && !m.has("faulty"))
            .filter_map(|m| {
                check_name(&m.kname).ok()?;
                Superblock::read_from(&self.md.root().join("dev").join(&m.kname)).ok()
            })
            .max_by_key(Superblock::events)
            .ok_or_else(|| {
                HalError::invalid(array, "no working member with a readable 1.2 superblock")
            })?;
        let sb = source.for_new_member(info.size_bytes / 512, random_uuid()?)?;
        sb.write_to(&self.md.root().join("dev").join(kname))?;
        if let Err(e) = write_attr(&md.join("new_dev"), &info.dev) {
            if let Err(w) = disks.wipe_start(kname) {
                tracing::error!(error = %w, device = kname, "cannot zero the refused disk again");
            }
            return Err(e);
        }
        if snap.degraded > 0 {
            if let Err(e) = write_attr(&md.join("sync_action"), "recover") {
                tracing::warn!(error = %e, array, "md did not take `recover`");
            }
        }
        Ok(())
    }

    fn set_sync_action(&self, array: &str, action: &str) -> Result<(), HalError> {
        check_name(array)?;
        write_attr(&self.md.md_dir(array).join("sync_action"), action)
    }

    fn set_led(&self, led: &str, on: bool) -> Result<(), HalError> {
        check_name(led)?;
        let path = self
            .md
            .root()
            .join("sys/class/leds")
            .join(led)
            .join("brightness");
        write_attr(&path, if on { "1" } else { "0" })
    }
}

fn parse_num(s: Option<&str>) -> u64 {
    s.and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `sync_completed`: `"done / total"` in sectors, or `none` / `delayed`.
pub fn parse_completed(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('/')?;
    let done = a.trim().parse().ok()?;
    let total = b.trim().parse().ok()?;
    Some((done, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_parses() {
        assert_eq!(parse_completed("1024 / 4096"), Some((1024, 4096)));
        assert_eq!(parse_completed("none"), None);
        assert_eq!(parse_completed("delayed"), None);
    }

    #[test]
    fn names_that_escape_are_refused() {
        assert!(check_name("../x").is_err());
        assert!(check_name("..").is_err());
        assert!(check_name("sda").is_ok());
    }

    /// The real driver's add: a spare superblock from the working member's, then `new_dev`.
    #[test]
    fn sysfs_add_writes_a_superblock_then_new_dev() {
        use crate::superblock::{ArrayParams, Superblock, ROLE_SPARE};
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let md = r.join("sys/block/md0/md");
        let sectors: u64 = 64 * 2048;
        for (k, dev) in [("sda", "8:0"), ("sdb", "8:16"), ("sdg", "8:96")] {
            let blk = r.join("sys/class/block").join(k);
            std::fs::create_dir_all(&blk).unwrap();
            std::fs::write(blk.join("size"), format!("{sectors}\n")).unwrap();
            std::fs::write(blk.join("dev"), format!("{dev}\n")).unwrap();
            std::fs::create_dir_all(r.join("dev")).unwrap();
            std::fs::File::create(r.join("dev").join(k))
                .unwrap()
                .set_len(sectors * 512)
                .unwrap();
        }
        for (k, state, slot) in [("sda", "in_sync", "0"), ("sdb", "faulty", "none")] {
            let d = md.join(format!("dev-{k}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("state"), state).unwrap();
            std::fs::write(d.join("slot"), slot).unwrap();
        }
        for (a, v) in [
            ("level", "raid1"),
            ("raid_disks", "2"),
            ("array_state", "clean"),
            ("degraded", "1"),
            ("metadata_version", "1.2"),
            ("new_dev", ""),
            ("sync_action", "idle"),
        ] {
            std::fs::write(md.join(a), v).unwrap();
        }
        let p = ArrayParams {
            set_uuid: [5; 16],
            set_name: "t:0".into(),
            ctime_secs: 1,
            level: 1,
            layout: 0,
            size_sectors: sectors - 2048,
            chunk_sectors: 0,
            raid_disks: 2,
            data_offset: 2048,
            events: 9,
        };
        Superblock::new_array(&p, sectors, [1; 16])
            .write_to(&r.join("dev/sda"))
            .unwrap();
        let c = SysfsControl::new(r);
        c.add_disk("md0", "sdg").unwrap();
        assert_eq!(read_opt(&md.join("new_dev")).unwrap().unwrap(), "8:96");
        assert_eq!(
            read_opt(&md.join("sync_action")).unwrap().unwrap(),
            "recover"
        );
        let sb = Superblock::read_from(&r.join("dev/sdg")).unwrap();
        assert_eq!(
            (sb.set_uuid(), sb.events(), sb.dev_number()),
            ([5; 16], 9, 2)
        );
        assert_eq!(sb.role(2), Some(ROLE_SPARE));
        // A member cannot be added twice, and another metadata version is refused.
        assert!(c.add_disk("md0", "sda").is_err());
        std::fs::write(md.join("metadata_version"), "1.0").unwrap();
        assert!(c.add_disk("md0", "sdg").is_err());
    }

    #[test]
    fn empty_root_has_no_arrays() {
        let t = tempfile::tempdir().unwrap();
        let md = MdSysfs::new(t.path());
        assert!(md.snapshot().unwrap().is_empty());
        assert!(!md.wait_for_change(Duration::from_millis(10)).unwrap());
    }
}
