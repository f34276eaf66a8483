//! SMART: `smartctl --json -a /dev/<disk>` (smartmontools' documented machine interface) run
//! as a program and its JSON read into a [`SmartReport`]; never its human text. smartctl's exit
//! status is a bit mask and is often non-zero with valid JSON (bit 0: bad command line, bit 1:
//! device open failed or no SMART, bits 2-7: findings), so the JSON decides, and a device
//! smartctl cannot read is "SMART unavailable", not an error. The emulator's disks carry JSON
//! files of the same shape ([`SmartFiles`]). Judging the numbers is `cairn-raid`'s business.

use crate::sysfs::check_name;
use crate::HalError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one SMART read said about one disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartReport {
    /// Whether smartctl could read SMART data from the device.
    pub available: bool,
    /// `smart_status.passed`: the drive's own overall verdict.
    pub passed: Option<bool>,
    /// `model_name`.
    pub model: Option<String>,
    /// `serial_number`.
    pub serial: Option<String>,
    /// `temperature.current`, °C.
    pub temperature_c: Option<i64>,
    /// ATA attribute 5 (Reallocated_Sector_Ct), raw.
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197 (Current_Pending_Sector), raw.
    pub pending_sectors: Option<u64>,
    /// ATA attribute 198 (Offline_Uncorrectable), raw.
    pub offline_uncorrectable: Option<u64>,
    /// NVMe `media_errors`.
    pub media_errors: Option<u64>,
    /// NVMe `percentage_used` (endurance consumed).
    pub percentage_used: Option<u64>,
    /// smartctl's exit status (a bit mask).
    pub exit_status: i32,
    /// smartctl's first error message, when SMART is unavailable.
    pub message: Option<String>,
}

impl SmartReport {
    /// A report saying SMART could not be read, and why.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            message: Some(message.into()),
            ..Self::default()
        }
    }
}

/// Read smartctl's JSON (7.x schema: `json_format_version` 1). `exit_status` is smartctl's.
pub fn parse(json: &[u8], exit_status: i32) -> Result<SmartReport, HalError> {
    let v: Value = serde_json::from_slice(json)
        .map_err(|e| HalError::invalid("smartctl JSON", e.to_string()))?;
    if v["json_format_version"][0].as_u64() != Some(1) {
        return Err(HalError::invalid(
            "smartctl JSON",
            format!("json_format_version {}", v["json_format_version"]),
        ));
    }
    let message = v["smartctl"]["messages"]
        .as_array()
        .and_then(|m| m.iter().find_map(|m| m["string"].as_str()))
        .map(String::from);
    let attr = |id: u64| {
        v["ata_smart_attributes"]["table"]
            .as_array()?
            .iter()
            .find(|a| a["id"].as_u64() == Some(id))?["raw"]["value"]
            .as_u64()
    };
    let nvme = &v["nvme_smart_health_information_log"];
    let passed = v["smart_status"]["passed"].as_bool();
    let has_data = passed.is_some() || v["ata_smart_attributes"].is_object() || nvme.is_object();
    // Bits 0 and 1: the command line or the device could not be used.
    let available = has_data && exit_status & 0b11 == 0;
    Ok(SmartReport {
        available,
        passed,
        model: v["model_name"].as_str().map(String::from),
        serial: v["serial_number"].as_str().map(String::from),
        temperature_c: v["temperature"]["current"].as_i64(),
        reallocated_sectors: attr(5),
        pending_sectors: attr(197),
        offline_uncorrectable: attr(198),
        media_errors: nvme["media_errors"].as_u64(),
        percentage_used: nvme["percentage_used"].as_u64(),
        exit_status,
        message: if available { None } else { message },
    })
}

/// Where SMART reports come from.
pub trait SmartSource: Send + Sync {
    /// The SMART report of a whole disk by kernel name; problems become an unavailable report.
    fn read(&self, kname: &str) -> SmartReport;
}

/// The real source: runs `smartctl --json -a <root>/dev/<kname>`.
#[derive(Debug, Clone)]
pub struct Smartctl {
    program: PathBuf,
    root: PathBuf,
    timeout: Duration,
}

impl Smartctl {
    /// `smartctl` from `PATH`, devices under `root`, 60 s per disk before the run is killed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            program: "smartctl".into(),
            root: root.into(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Run smartctl with these arguments then `device`, and read its JSON.
    pub fn run(&self, args: &[&str], device: &Path) -> Result<SmartReport, HalError> {
        let mut child = Command::new(&self.program)
            .arg("--json")
            .args(args)
            .arg(device)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HalError::io(&self.program, e))?;
        let mut out = Vec::new();
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| HalError::invalid("smartctl", "no standard output"))?;
        // smartctl's JSON is small; a hung disk is caught by the deadline below.
        let reader = std::thread::spawn(move || {
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child
                .try_wait()
                .map_err(|e| HalError::io(&self.program, e))?
            {
                Some(s) => break s,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(SmartReport::unavailable(format!(
                        "smartctl did not finish within {} s",
                        self.timeout.as_secs()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let out = reader
            .join()
            .map_err(|_| HalError::invalid("smartctl", "output reader failed"))?;
        parse(&out, status.code().unwrap_or(-1))
    }
}

impl SmartSource for Smartctl {
    fn read(&self, kname: &str) -> SmartReport {
        if let Err(e) = check_name(kname) {
            return SmartReport::unavailable(e.to_string());
        }
        self.run(&["-a"], &self.root.join("dev").join(kname))
            .unwrap_or_else(|e| SmartReport::unavailable(e.to_string()))
    }
}

/// The emulator's source: `<dir>/<kname>.json` files in smartctl's JSON shape.
#[derive(Debug, Clone)]
pub struct SmartFiles {
    dir: PathBuf,
}

impl SmartFiles {
    /// Files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SmartSource for SmartFiles {
    fn read(&self, kname: &str) -> SmartReport {
        if let Err(e) = check_name(kname) {
            return SmartReport::unavailable(e.to_string());
        }
        let path = self.dir.join(format!("{kname}.json"));
        match std::fs::read(&path) {
            Ok(b) => parse(&b, 0).unwrap_or_else(|e| SmartReport::unavailable(e.to_string())),
            Err(e) => SmartReport::unavailable(HalError::io(path, e).to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> SmartReport {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/smart")
            .join(name);
        let b = std::fs::read(&p).unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        let code = v["smartctl"]["exit_status"].as_i64().unwrap_or(0) as i32;
        parse(&b, code).unwrap()
    }

    #[test]
    fn healthy_ata_disk() {
        let r = fixture("ata-healthy.json");
        assert!(r.available);
        assert_eq!(r.passed, Some(true));
        assert_eq!(r.reallocated_sectors, Some(0));
        assert_eq!(r.pending_sectors, Some(0));
        assert_eq!(r.offline_uncorrectable, Some(0));
        assert_eq!(r.temperature_c, Some(34));
        assert_eq!(r.media_errors, None);
    }

    #[test]
    fn ata_disk_reallocating_and_failing() {
        let r = fixture("ata-reallocating.json");
        assert_eq!((r.passed, r.reallocated_sectors), (Some(true), Some(24)));
        assert_eq!(r.pending_sectors, Some(8));
        let r = fixture("ata-failing.json");
        assert!(r.available);
        assert_eq!(r.passed, Some(false));
        assert_eq!(r.reallocated_sectors, Some(3912));
        assert_eq!(r.exit_status, 8);
    }

    #[test]
    fn nvme_disk() {
        let r = fixture("nvme-healthy.json");
        assert!(r.available);
        assert_eq!((r.media_errors, r.percentage_used), (Some(0), Some(3)));
        assert_eq!(r.reallocated_sectors, None);
        assert_eq!(r.temperature_c, Some(41));
    }

    #[test]
    fn unsupported_device_is_unavailable() {
        let r = fixture("unsupported.json");
        assert!(!r.available);
        assert!(r.message.unwrap().contains("Unable to detect device type"));
        assert!(parse(b"not json", 0).is_err());
    }

    /// The real smartctl on a device without SMART: it exits non-zero with JSON, and that is
    /// "SMART unavailable", not a failure.
    #[test]
    fn real_smartctl_on_dev_null() {
        let s = Smartctl::new("/");
        let r = s
            .run(&["-i"], Path::new("/dev/null"))
            .expect("smartctl must be installed (tools/test installs smartmontools)");
        assert!(!r.available, "{r:?}");
        assert_ne!(r.exit_status & 0b11, 0, "{r:?}");
        assert!(r.message.is_some(), "{r:?}");
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("plain-file");
        std::fs::write(&file, [0u8; 4096]).unwrap();
        assert!(!s.run(&["-i"], &file).unwrap().available);
        // A kernel name that walks out of /dev is refused before smartctl runs.
        assert!(!s.read("../etc").available);
    }
}
