//! md metadata 1.2 superblocks (`struct mdp_superblock_1`, the kernel's
//! `include/uapi/linux/raid/md_p.h`): read from a member, and written onto a replacement disk
//! before it is handed to md, as `mdadm --add` does in user space. md's `new_dev` attribute
//! (and the `ADD_NEW_DISK` ioctl) only take a device that already carries a superblock of the
//! array's kind.
//!
//! Layout (all little-endian): 256 bytes of fields, then `max_dev` 16-bit roles indexed by
//! `dev_number`. For metadata 1.2 it sits 4 KiB (8 sectors) from the start of the device.

use crate::disks::MD_SB_MAGIC;
use crate::HalError;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Where a 1.2 superblock starts, in bytes from the start of the device.
pub const SB_OFFSET_BYTES: u64 = 4096;
/// Where a 1.2 superblock starts, in 512-byte sectors (`super_offset`).
pub const SB_OFFSET_SECTORS: u64 = 8;
/// The most a superblock with its roles may take.
pub const SB_MAX_BYTES: usize = 4096;
/// `dev_roles` value of a spare.
pub const ROLE_SPARE: u16 = 0xffff;
/// `dev_roles` value of a faulty device.
pub const ROLE_FAULTY: u16 = 0xfffe;

const HEADER: usize = 256;
// Field offsets in struct mdp_superblock_1.
const MAGIC: usize = 0;
const MAJOR_VERSION: usize = 4;
const FEATURE_MAP: usize = 8;
const SET_UUID: usize = 16;
const SET_NAME: usize = 32;
const CTIME: usize = 64;
const LEVEL: usize = 72;
const LAYOUT: usize = 76;
const SIZE: usize = 80;
const CHUNKSIZE: usize = 88;
const RAID_DISKS: usize = 92;
const BITMAP_OFFSET: usize = 96;
const DATA_OFFSET: usize = 128;
const DATA_SIZE: usize = 136;
const SUPER_OFFSET: usize = 144;
const RECOVERY_OFFSET: usize = 152;
const DEV_NUMBER: usize = 160;
const CNT_CORRECTED_READ: usize = 164;
const DEVICE_UUID: usize = 168;
const DEVFLAGS: usize = 184;
const BBLOG_SHIFT: usize = 185;
const BBLOG_SIZE: usize = 186;
const BBLOG_OFFSET: usize = 188;
const UTIME: usize = 192;
const EVENTS: usize = 200;
const RESYNC_OFFSET: usize = 208;
const SB_CSUM: usize = 216;
const MAX_DEV: usize = 220;

/// `feature_map` bits that describe the whole array and carry over to a new member:
/// internal bitmap offset, journal, PPL, multiple PPLs, RAID0 layout.
const ARRAY_FEATURES: u32 = 1 | 512 | 1024 | 2048 | 4096;
/// `MD_FEATURE_RESHAPE_ACTIVE`: no member is added while a reshape runs.
const RESHAPE_ACTIVE: u32 = 4;

/// The array-wide fields of a new array's superblock (used to build one from nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayParams {
    /// The array UUID.
    pub set_uuid: [u8; 16],
    /// The array name (`host:name` as mdadm writes it), at most 32 bytes.
    pub set_name: String,
    /// Creation time, seconds since the Unix epoch.
    pub ctime_secs: u64,
    /// RAID level (`-1` linear, 0, 1, 4, 5, 6, 10).
    pub level: i32,
    /// Level-specific layout (e.g. 2 = left-symmetric for RAID 5/6).
    pub layout: u32,
    /// Sectors of each member used by the array.
    pub size_sectors: u64,
    /// Chunk size in sectors.
    pub chunk_sectors: u32,
    /// Slots in the array.
    pub raid_disks: u32,
    /// Where data starts on each member, in sectors.
    pub data_offset: u64,
    /// The superblock update counter.
    pub events: u64,
}

/// One md 1.x superblock with its roles, as bytes laid out as on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    bytes: Vec<u8>,
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// The kernel's `calc_sb_1_csum`: the sum of the little-endian 32-bit words of the first
/// `256 + 2 * max_dev` bytes (a trailing 16-bit word added as such) with `sb_csum` taken as 0,
/// the carry folded back once.
pub fn calc_csum(sb: &[u8]) -> u32 {
    let max_dev = le32(sb, MAX_DEV) as usize;
    let size = (HEADER + max_dev * 2).min(sb.len());
    let mut sum: u64 = 0;
    let mut off = 0;
    while off + 4 <= size {
        if off != SB_CSUM {
            sum += u64::from(le32(sb, off));
        }
        off += 4;
    }
    if size - off == 2 {
        sum += u64::from(u16::from_le_bytes([sb[off], sb[off + 1]]));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// Pack seconds into md's time format (low 40 bits seconds, top 24 microseconds, here 0).
fn md_time(secs: u64) -> u64 {
    secs & ((1 << 40) - 1)
}

impl Superblock {
    /// Take a superblock from bytes (at least its header and roles): magic, major version 1
    /// and the checksum are checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, HalError> {
        let bad = |m: String| HalError::invalid("md superblock", m);
        if bytes.len() < HEADER {
            return Err(bad(format!("{} bytes is too short", bytes.len())));
        }
        if le32(bytes, MAGIC) != MD_SB_MAGIC {
            return Err(bad("no md magic".into()));
        }
        if le32(bytes, MAJOR_VERSION) != 1 {
            return Err(bad(format!(
                "major version {} (only 1.x is read)",
                le32(bytes, MAJOR_VERSION)
            )));
        }
        let len = HEADER + le32(bytes, MAX_DEV) as usize * 2;
        if len > SB_MAX_BYTES || len > bytes.len() {
            return Err(bad(format!("max_dev {} too large", le32(bytes, MAX_DEV))));
        }
        let sb = Self {
            bytes: bytes[..len].to_vec(),
        };
        if !sb.checksum_ok() {
            return Err(bad(format!(
                "checksum {:08x}, expected {:08x}",
                sb.sb_csum(),
                calc_csum(&sb.bytes)
            )));
        }
        Ok(sb)
    }

    /// Read the 1.2 superblock of a device or image (4 KiB from its start).
    pub fn read_from(path: &Path) -> Result<Self, HalError> {
        let mut f = std::fs::File::open(path).map_err(|e| HalError::io(path, e))?;
        let mut buf = vec![0u8; SB_MAX_BYTES];
        f.seek(SeekFrom::Start(SB_OFFSET_BYTES))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| HalError::io(path, e))?;
        Self::parse(&buf).map_err(|e| match e {
            HalError::Invalid { message, .. } => {
                HalError::invalid(path.display().to_string(), message)
            }
            other => other,
        })
    }

    /// A 1.2 superblock for the first member of a new array (`dev_number` 0, role 0; the other
    /// slots' roles are 1.. in order) on a device of `device_sectors`.
    pub fn new_array(p: &ArrayParams, device_sectors: u64, dev_uuid: [u8; 16]) -> Self {
        let max_dev = p.raid_disks as usize;
        let mut b = vec![0u8; HEADER + max_dev * 2];
        b[MAGIC..MAGIC + 4].copy_from_slice(&MD_SB_MAGIC.to_le_bytes());
        b[MAJOR_VERSION..MAJOR_VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
        b[SET_UUID..SET_UUID + 16].copy_from_slice(&p.set_uuid);
        let name = p.set_name.as_bytes();
        let n = name.len().min(32);
        b[SET_NAME..SET_NAME + n].copy_from_slice(&name[..n]);
        b[CTIME..CTIME + 8].copy_from_slice(&md_time(p.ctime_secs).to_le_bytes());
        b[LEVEL..LEVEL + 4].copy_from_slice(&p.level.to_le_bytes());
        b[LAYOUT..LAYOUT + 4].copy_from_slice(&p.layout.to_le_bytes());
        b[SIZE..SIZE + 8].copy_from_slice(&p.size_sectors.to_le_bytes());
        b[CHUNKSIZE..CHUNKSIZE + 4].copy_from_slice(&p.chunk_sectors.to_le_bytes());
        b[RAID_DISKS..RAID_DISKS + 4].copy_from_slice(&p.raid_disks.to_le_bytes());
        b[UTIME..UTIME + 8].copy_from_slice(&md_time(p.ctime_secs).to_le_bytes());
        b[EVENTS..EVENTS + 8].copy_from_slice(&p.events.to_le_bytes());
        b[RESYNC_OFFSET..RESYNC_OFFSET + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        b[MAX_DEV..MAX_DEV + 4].copy_from_slice(&(max_dev as u32).to_le_bytes());
        for slot in 0..max_dev {
            let off = HEADER + slot * 2;
            b[off..off + 2].copy_from_slice(&(slot as u16).to_le_bytes());
        }
        let mut sb = Self { bytes: b };
        sb.set_device(p.data_offset, device_sectors, 0, dev_uuid);
        sb.seal();
        sb
    }

    /// The superblock for a disk joining this superblock's array as a spare: the array-wide
    /// fields copied, this device's fields (offsets, size, `dev_number`, UUID) its own, role
    /// spare (`0xffff`), and the checksum recomputed. `dev_number` is `max_dev` of this
    /// superblock, a number no member had when it was last written (md refuses a number in
    /// use). Refused while a reshape runs and when the disk is too small.
    pub fn for_new_member(
        &self,
        device_sectors: u64,
        dev_uuid: [u8; 16],
    ) -> Result<Superblock, HalError> {
        let bad = |m: String| HalError::invalid("new md member", m);
        if self.feature_map() & RESHAPE_ACTIVE != 0 {
            return Err(bad("the array is being reshaped".into()));
        }
        let dev_number = self.max_dev();
        let max_dev = dev_number + 1;
        if HEADER + max_dev as usize * 2 > SB_MAX_BYTES {
            return Err(bad("no free device number".into()));
        }
        let data_offset = self.data_offset();
        if device_sectors < data_offset + self.size_sectors() {
            return Err(bad(format!(
                "{device_sectors} sectors is less than data offset {data_offset} + size {}",
                self.size_sectors()
            )));
        }
        let mut b = vec![0u8; HEADER + max_dev as usize * 2];
        // Constant array information, the first 128 bytes, as the array has it.
        b[..128].copy_from_slice(&self.bytes[..128]);
        let features = self.feature_map() & ARRAY_FEATURES;
        b[FEATURE_MAP..FEATURE_MAP + 4].copy_from_slice(&features.to_le_bytes());
        if features & 1 == 0 {
            b[BITMAP_OFFSET..BITMAP_OFFSET + 4].fill(0);
        }
        // Array state: last update, events, resync position as the member last wrote them.
        b[UTIME..UTIME + 24].copy_from_slice(&self.bytes[UTIME..UTIME + 24]);
        b[MAX_DEV..MAX_DEV + 4].copy_from_slice(&max_dev.to_le_bytes());
        b[HEADER..HEADER + self.max_dev() as usize * 2]
            .copy_from_slice(&self.bytes[HEADER..HEADER + self.max_dev() as usize * 2]);
        let off = HEADER + dev_number as usize * 2;
        b[off..off + 2].copy_from_slice(&ROLE_SPARE.to_le_bytes());
        let mut sb = Superblock { bytes: b };
        sb.set_device(data_offset, device_sectors, dev_number, dev_uuid);
        sb.seal();
        Ok(sb)
    }

    fn set_device(
        &mut self,
        data_offset: u64,
        device_sectors: u64,
        dev_number: u32,
        uuid: [u8; 16],
    ) {
        let b = &mut self.bytes;
        b[DATA_OFFSET..DATA_OFFSET + 8].copy_from_slice(&data_offset.to_le_bytes());
        let data_size = device_sectors.saturating_sub(data_offset);
        b[DATA_SIZE..DATA_SIZE + 8].copy_from_slice(&data_size.to_le_bytes());
        b[SUPER_OFFSET..SUPER_OFFSET + 8].copy_from_slice(&SB_OFFSET_SECTORS.to_le_bytes());
        b[RECOVERY_OFFSET..RECOVERY_OFFSET + 8].fill(0);
        b[DEV_NUMBER..DEV_NUMBER + 4].copy_from_slice(&dev_number.to_le_bytes());
        b[CNT_CORRECTED_READ..CNT_CORRECTED_READ + 4].fill(0);
        b[DEVICE_UUID..DEVICE_UUID + 16].copy_from_slice(&uuid);
        b[DEVFLAGS] = 0;
        b[BBLOG_SHIFT] = 0;
        b[BBLOG_SIZE..BBLOG_SIZE + 2].fill(0);
        b[BBLOG_OFFSET..BBLOG_OFFSET + 4].fill(0);
    }

    fn seal(&mut self) {
        let c = calc_csum(&self.bytes);
        self.bytes[SB_CSUM..SB_CSUM + 4].copy_from_slice(&c.to_le_bytes());
    }

    /// Write this superblock 4 KiB into a device or image (the rest of that 4 KiB zeroed),
    /// and flush it to the medium.
    pub fn write_to(&self, path: &Path) -> Result<(), HalError> {
        let mut block = vec![0u8; SB_MAX_BYTES];
        block[..self.bytes.len()].copy_from_slice(&self.bytes);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| HalError::io(path, e))?;
        f.seek(SeekFrom::Start(SB_OFFSET_BYTES))
            .and_then(|_| f.write_all(&block))
            .and_then(|_| f.sync_all())
            .map_err(|e| HalError::io(path, e))
    }

    /// The bytes as on disk (header and roles).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `sb_csum` matches [`calc_csum`].
    pub fn checksum_ok(&self) -> bool {
        self.sb_csum() == calc_csum(&self.bytes)
    }

    /// `sb_csum`.
    pub fn sb_csum(&self) -> u32 {
        le32(&self.bytes, SB_CSUM)
    }

    /// `feature_map`.
    pub fn feature_map(&self) -> u32 {
        le32(&self.bytes, FEATURE_MAP)
    }

    /// `set_uuid`.
    pub fn set_uuid(&self) -> [u8; 16] {
        let mut u = [0u8; 16];
        u.copy_from_slice(&self.bytes[SET_UUID..SET_UUID + 16]);
        u
    }

    /// `device_uuid`.
    pub fn dev_uuid(&self) -> [u8; 16] {
        let mut u = [0u8; 16];
        u.copy_from_slice(&self.bytes[DEVICE_UUID..DEVICE_UUID + 16]);
        u
    }

    /// `level` (signed: -1 is linear).
    pub fn level(&self) -> i32 {
        le32(&self.bytes, LEVEL) as i32
    }

    /// `raid_disks`.
    pub fn raid_disks(&self) -> u32 {
        le32(&self.bytes, RAID_DISKS)
    }

    /// `size`: sectors of each member the array uses.
    pub fn size_sectors(&self) -> u64 {
        le64(&self.bytes, SIZE)
    }

    /// `data_offset` in sectors.
    pub fn data_offset(&self) -> u64 {
        le64(&self.bytes, DATA_OFFSET)
    }

    /// `data_size` in sectors.
    pub fn data_size(&self) -> u64 {
        le64(&self.bytes, DATA_SIZE)
    }

    /// `events`.
    pub fn events(&self) -> u64 {
        le64(&self.bytes, EVENTS)
    }

    /// `dev_number`.
    pub fn dev_number(&self) -> u32 {
        le32(&self.bytes, DEV_NUMBER)
    }

    /// `max_dev`: entries in `dev_roles`.
    pub fn max_dev(&self) -> u32 {
        le32(&self.bytes, MAX_DEV)
    }

    /// `dev_roles[n]` (0.. a slot, [`ROLE_SPARE`], [`ROLE_FAULTY`]); `None` past `max_dev`.
    pub fn role(&self, n: u32) -> Option<u16> {
        let off = HEADER + n as usize * 2;
        (n < self.max_dev()).then(|| u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]]))
    }
}

/// 16 random bytes for a device UUID.
pub fn random_uuid() -> Result<[u8; 16], HalError> {
    let mut u = [0u8; 16];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut u))
        .map_err(|e| HalError::io(path, e))?;
    Ok(u)
}

/// Prepare `new_dev` to join the array `member` belongs to: read `member`'s 1.2 superblock and
/// write the derived spare superblock onto `new_dev` (`new_sectors` long).
pub fn prepare_new_member(
    member: &Path,
    new_dev: &Path,
    new_sectors: u64,
) -> Result<Superblock, HalError> {
    let source = Superblock::read_from(member)?;
    let sb = source.for_new_member(new_sectors, random_uuid()?)?;
    sb.write_to(new_dev)?;
    Ok(sb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    fn params() -> ArrayParams {
        ArrayParams {
            set_uuid: *b"\x3a\x9e\x41\x07\x5c\x21\x4b\x6e\x90\x12\xab\xcd\xef\x01\x23\x45",
            set_name: "cairn:0".into(),
            ctime_secs: 1_700_000_000,
            level: 6,
            layout: 2,
            size_sectors: 100_352,
            chunk_sectors: 1024,
            raid_disks: 6,
            data_offset: 2048,
            events: 42,
        }
    }

    const SECTORS: u64 = 128 * 1024 * 2; // 128 MiB

    fn image(dir: &Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .set_len(SECTORS * 512)
            .unwrap();
        p
    }

    fn uuid_colons(u: [u8; 16]) -> String {
        u.chunks(4).map(hex4).collect::<Vec<_>>().join(":")
    }

    fn hex4(c: &[u8]) -> String {
        c.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn checksum_is_the_kernels() {
        let sb = Superblock::new_array(&params(), SECTORS, [7; 16]);
        assert!(sb.checksum_ok());
        let again = Superblock::parse(sb.as_bytes()).unwrap();
        assert_eq!(again, sb);
        let mut broken = sb.as_bytes().to_vec();
        broken[EVENTS] ^= 1;
        assert!(Superblock::parse(&broken).is_err());
        // An odd max_dev leaves a trailing 16-bit word, summed on its own.
        let spare = sb.for_new_member(SECTORS, [9; 16]).unwrap();
        assert_eq!(spare.max_dev(), 7);
        assert!(Superblock::parse(spare.as_bytes()).unwrap().checksum_ok());
    }

    #[test]
    fn new_member_copies_the_array_and_is_a_spare() {
        let src = Superblock::new_array(&params(), SECTORS, [7; 16]);
        let sb = src.for_new_member(SECTORS + 8, [9; 16]).unwrap();
        assert_eq!(sb.set_uuid(), src.set_uuid());
        assert_eq!((sb.level(), sb.raid_disks(), sb.events()), (6, 6, 42));
        assert_eq!(sb.dev_number(), 6);
        assert_eq!(sb.role(6), Some(ROLE_SPARE));
        assert_eq!(sb.role(2), Some(2));
        assert_eq!(sb.data_offset(), 2048);
        assert_eq!(sb.data_size(), SECTORS + 8 - 2048);
        assert_eq!(sb.dev_uuid(), [9; 16]);
        assert!(src.for_new_member(2048 + 100_000, [9; 16]).is_err());
    }

    /// The real mdadm reads what we write: level, devices, UUIDs, spare role, checksum.
    #[test]
    fn mdadm_examines_the_written_superblock() {
        let t = tempfile::tempdir().unwrap();
        let member = image(t.path(), "member.img");
        let new = image(t.path(), "new.img");
        Superblock::new_array(&params(), SECTORS, [7; 16])
            .write_to(&member)
            .unwrap();
        let sb = prepare_new_member(&member, &new, SECTORS).unwrap();
        assert_eq!(Superblock::read_from(&new).unwrap(), sb);

        let run = |args: &[&str]| {
            let out = Command::new("mdadm")
                .args(args)
                .arg(&new)
                .output()
                .expect("mdadm must be installed (tools/test installs it)");
            assert!(
                out.status.success(),
                "mdadm {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let export: BTreeMap<String, String> = run(&["--examine", "--export"])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(export["MD_LEVEL"], "raid6");
        assert_eq!(export["MD_DEVICES"], "6");
        assert_eq!(export["MD_UUID"], uuid_colons(params().set_uuid));
        assert_eq!(export["MD_DEV_UUID"], uuid_colons(sb.dev_uuid()));
        assert_eq!(export["MD_EVENTS"], "42");
        let text = run(&["--examine"]);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(key))
                .unwrap_or_else(|| panic!("no {key} in mdadm --examine:\n{text}"))
                .to_string()
        };
        assert!(line("Device Role").ends_with("spare"), "{text}");
        assert!(line("Checksum").ends_with("- correct"), "{text}");
        assert!(line("Version").ends_with("1.2"), "{text}");
    }
}
