//! [`XorrisoDrive`]: the real `/usr/bin/xorriso` on a burner or on an emulated disc image.

use super::{IsoEntry, OpticalDrive, OpticalError, OpticalStatus, SessionInfo};
use std::path::{Path, PathBuf};

/// Where the discs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpticalTarget {
    /// A real drive, e.g. `/dev/sr0`.
    Device(PathBuf),
    /// The disc emulator's tray directory ([`super::emulator`]).
    Emulated(PathBuf),
}

/// An optical drive driven by the `xorriso` program.
#[derive(Debug, Clone)]
pub struct XorrisoDrive {
    program: PathBuf,
    target: OpticalTarget,
}

impl XorrisoDrive {
    /// A real drive (`/dev/sr0` on the box), using `/usr/bin/xorriso`.
    pub fn device(path: &Path) -> Self {
        XorrisoDrive {
            program: PathBuf::from("/usr/bin/xorriso"),
            target: OpticalTarget::Device(path.to_path_buf()),
        }
    }

    /// The disc emulator in `tray_dir`, using `/usr/bin/xorriso`.
    pub fn emulated(tray_dir: &Path) -> Self {
        XorrisoDrive {
            program: PathBuf::from("/usr/bin/xorriso"),
            target: OpticalTarget::Emulated(tray_dir.to_path_buf()),
        }
    }

    /// Uses another xorriso binary.
    pub fn with_program(mut self, program: &Path) -> Self {
        self.program = program.to_path_buf();
        self
    }

    fn not_yet(&self) -> OpticalError {
        OpticalError::Invalid {
            device: format!("{:?}", self.target),
            message: "xorriso drive: not implemented yet (API published first)".into(),
        }
    }
}

impl OpticalDrive for XorrisoDrive {
    fn status(&mut self) -> Result<OpticalStatus, OpticalError> {
        Err(self.not_yet())
    }
    fn write_session(
        &mut self,
        _volume_label: &str,
        _files: &[(String, PathBuf)],
    ) -> Result<SessionInfo, OpticalError> {
        Err(self.not_yet())
    }
    fn check_md5(&mut self) -> Result<(), OpticalError> {
        Err(self.not_yet())
    }
    fn extract(&mut self, _path_in_iso: &str, _host_dest: &Path) -> Result<(), OpticalError> {
        Err(self.not_yet())
    }
    fn list(&mut self) -> Result<Vec<IsoEntry>, OpticalError> {
        Err(self.not_yet())
    }
    fn eject(&mut self) -> Result<(), OpticalError> {
        Err(self.not_yet())
    }
}
