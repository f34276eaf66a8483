//! The board file (`board/<name>/board.toml`): per-hardware facts only. Disk bays by their
//! `/dev/disk/by-path` names with fault and locate LEDs, the buzzer driver, the front button.

use crate::HalError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole board file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name, e.g. `qemu-x86_64`.
    pub name: String,
    /// The disk bays, numbered as printed on the front of the box.
    #[serde(rename = "bay", default)]
    pub bays: Vec<Bay>,
    /// The buzzer driver.
    pub buzzer: BuzzerConfig,
    /// The front button that silences the alarm, if the box has one.
    #[serde(default)]
    pub button: Option<ButtonConfig>,
}

/// One disk bay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bay {
    /// The number printed on the bay (1-based).
    pub number: u32,
    /// The `/dev/disk/by-path` name of the disk in this bay (the whole disk, no `-partN`).
    pub by_path: String,
    /// The bay's amber fault LED (`/sys/class/leds/<name>`).
    #[serde(default)]
    pub fault_led: Option<String>,
    /// The bay's blue locate LED (`/sys/class/leds/<name>`).
    #[serde(default)]
    pub locate_led: Option<String>,
}

/// Which buzzer driver the board has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BuzzerConfig {
    /// The PC speaker's evdev node (`EV_SND`/`SND_TONE`).
    Pcspkr {
        /// e.g. `/dev/input/by-path/platform-pcspkr-event-spkr`.
        device: PathBuf,
    },
    /// A GPIO line through the GPIO character device.
    Gpio {
        /// e.g. `/dev/gpiochip0`.
        chip: PathBuf,
        /// Line offset on that chip.
        line: u32,
    },
    /// A LED-class device wired to a buzzer (`/sys/class/leds/<led>/brightness`).
    SysfsLed {
        /// The LED name.
        led: String,
    },
    /// The emulator: tones appended to a JSON-lines file (relative to the board file).
    Emulated {
        /// The record file.
        file: PathBuf,
    },
}

/// The front button, read as evdev key events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// The evdev node, e.g. `/dev/input/by-path/platform-gpio-keys-event`.
    pub device: PathBuf,
    /// The key code (`EV_KEY`), e.g. 0x100 (`BTN_0`).
    pub code: u16,
}

impl Board {
    /// Read and check a board file. A relative emulated buzzer file is made relative to the
    /// board file's folder.
    pub fn load(path: &Path) -> Result<Board, HalError> {
        let text = std::fs::read_to_string(path).map_err(|e| HalError::io(path, e))?;
        let mut board = Board::parse(&text).map_err(|e| match e {
            HalError::Invalid { message, .. } => {
                HalError::invalid(path.display().to_string(), message)
            }
            other => other,
        })?;
        if let BuzzerConfig::Emulated { file } = &mut board.buzzer {
            if file.is_relative() {
                *file = path.parent().unwrap_or(Path::new(".")).join(&*file);
            }
        }
        Ok(board)
    }

    /// Parse and check board text.
    pub fn parse(text: &str) -> Result<Board, HalError> {
        let board: Board =
            toml::from_str(text).map_err(|e| HalError::invalid("board file", e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for b in &board.bays {
            if b.number == 0 || !seen.insert(b.number) {
                return Err(HalError::invalid(
                    "board file",
                    format!("bay {} is zero or listed twice", b.number),
                ));
            }
        }
        Ok(board)
    }

    /// The bay whose disk has this by-path name (a `-partN` suffix is ignored).
    pub fn bay_of_path(&self, by_path: &str) -> Option<&Bay> {
        let disk = crate::disks::strip_part(by_path);
        self.bays.iter().find(|b| b.by_path == disk)
    }

    /// The bay with this number.
    pub fn bay(&self, number: u32) -> Option<&Bay> {
        self.bays.iter().find(|b| b.number == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_boards_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("board.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for must in [
            "demo",
            "generic-4bay-x86_64",
            "qemu-x86_64",
            "qemu-x86_64-scsi",
        ] {
            assert!(names.iter().any(|n| n == must), "board/{must} missing");
        }
        for name in &names {
            let b = Board::load(&dir.join(name).join("board.toml")).unwrap();
            assert_eq!(&b.name, name);
            assert!(b.bays.len() >= 4, "{name}");
        }
    }

    #[test]
    fn partitions_map_to_their_bay() {
        let b = Board::parse(
            "name = \"t\"\n[buzzer]\nkind = \"sysfs-led\"\nled = \"bz\"\n\
             [[bay]]\nnumber = 2\nby_path = \"pci-0-ata-2\"\n",
        )
        .unwrap();
        assert_eq!(
            b.bay_of_path("pci-0-ata-2-part1").map(|b| b.number),
            Some(2)
        );
        assert!(b.bay_of_path("pci-0-ata-3").is_none());
    }

    #[test]
    fn unknown_keys_and_duplicate_bays_are_refused() {
        assert!(Board::parse(
            "name = \"t\"\ncolour = 1\n[buzzer]\nkind = \"sysfs-led\"\nled = \"b\"\n"
        )
        .is_err());
        assert!(Board::parse(
            "name = \"t\"\n[buzzer]\nkind = \"sysfs-led\"\nled = \"b\"\n\
             [[bay]]\nnumber = 1\nby_path = \"a\"\n[[bay]]\nnumber = 1\nby_path = \"b\"\n"
        )
        .is_err());
    }
}
