//! [`XorrisoDrive`]: the real `/usr/bin/xorriso` on a burner or on an emulated disc image.
//!
//! xorriso has no JSON output; this module reads only the report lines its manual documents
//! for frontends (`-toc`: `Media status`, `Media blocks`, `Media nwa`, `ISO session`;
//! `-print_size`: `Image size`; `-find ... -exec report_lba`: `File data lba`) and its exit
//! status (`-check_md5_r` exits non-zero on a mismatch).

use super::emulator;
use super::{DiscState, IsoEntry, OpticalDrive, OpticalError, OpticalStatus, SessionInfo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The disc currently in the drive, as xorriso addresses it.
struct Disc {
    /// `-dev` argument: `/dev/sr0` or `stdio:<image>`.
    dev: String,
    /// Image file of an emulated disc and its capacity.
    image: Option<(PathBuf, u64)>,
}

/// Safety margin for the session size prediction (alignment of the growing image).
const MARGIN: u64 = 64 * 1024;
const BLOCK: u64 = 2048;

static SEQ: AtomicU64 = AtomicU64::new(0);

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

    /// Where this drive's discs are.
    pub fn target(&self) -> &OpticalTarget {
        &self.target
    }

    fn device_name(&self) -> String {
        match &self.target {
            OpticalTarget::Device(p) | OpticalTarget::Emulated(p) => p.display().to_string(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> OpticalError {
        OpticalError::Invalid {
            device: self.device_name(),
            message: message.into(),
        }
    }

    /// The disc in the drive; `NoMedium` for an empty emulated tray.
    fn disc(&self) -> Result<Disc, OpticalError> {
        match &self.target {
            OpticalTarget::Device(p) => Ok(Disc {
                dev: p.display().to_string(),
                image: None,
            }),
            OpticalTarget::Emulated(tray) => match emulator::loaded(tray)? {
                Some(d) => Ok(Disc {
                    dev: format!("stdio:{}", d.image.display()),
                    image: Some((d.image, d.capacity)),
                }),
                None => Err(OpticalError::NoMedium {
                    device: self.device_name(),
                }),
            },
        }
    }

    fn run(&self, action: &'static str, args: &[&str]) -> Result<Output, OpticalError> {
        let out = Command::new(&self.program)
            .arg("-report_about")
            .arg("WARNING")
            .args(args)
            .output()
            .map_err(|e| OpticalError::Io {
                path: self.program.clone(),
                source: e,
            })?;
        tracing::debug!(action, status = %out.status, "xorriso");
        Ok(out)
    }

    fn tool_error(&self, action: &'static str, out: &Output) -> OpticalError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("xorriso 1."))
            .collect();
        let tail = tail[tail.len().saturating_sub(6)..].join(" | ");
        let lower = tail.to_ascii_lowercase();
        if lower.contains("no media") || lower.contains("no medium") {
            return OpticalError::NoMedium {
                device: self.device_name(),
            };
        }
        OpticalError::Tool {
            device: self.device_name(),
            action,
            status: out.status.to_string(),
            stderr: tail,
        }
    }

    fn run_ok(&self, action: &'static str, args: &[&str]) -> Result<String, OpticalError> {
        let out = self.run(action, args)?;
        if !out.status.success() {
            return Err(self.tool_error(action, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Is the disc blank without asking xorriso (an emulated image that does not exist yet)?
    fn blank_image(disc: &Disc) -> bool {
        match &disc.image {
            Some((img, _)) => std::fs::metadata(img).map(|m| m.len() == 0).unwrap_or(true),
            None => false,
        }
    }

    fn toc(&self, disc: &Disc) -> Result<Toc, OpticalError> {
        if Self::blank_image(disc) {
            return Ok(Toc::default_blank());
        }
        let out = self.run_ok("-toc", &["-md5", "on", "-indev", &disc.dev, "-toc"])?;
        Ok(Toc::parse(&out))
    }

    /// Writes the `-map` commands for `files` into an options file (safe for many files).
    fn options_file(&self, files: &[(String, PathBuf)]) -> Result<TempFile, OpticalError> {
        let mut body = String::new();
        for (iso, host) in files {
            check_iso_path(iso).map_err(|m| self.invalid(m))?;
            let host_s = host
                .to_str()
                .filter(|s| !s.contains('\'') && !s.contains('\n') && !s.is_empty())
                .ok_or_else(|| {
                    self.invalid(format!(
                        "host path {} cannot be passed to xorriso",
                        host.display()
                    ))
                })?;
            if !host.is_absolute() || !host.exists() {
                return Err(self.invalid(format!(
                    "host file {} must exist and be absolute",
                    host.display()
                )));
            }
            body.push_str(&format!("-map '{host_s}' '{iso}'\n"));
        }
        let path = std::env::temp_dir().join(format!(
            "cairn-xorriso-{}-{}.opts",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, body).map_err(|e| OpticalError::Io {
            path: path.clone(),
            source: e,
        })?;
        Ok(TempFile(path))
    }
}

/// Removes its file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An ISO path this layer accepts: absolute, components of `A-Z a-z 0-9 . _ -`, no `.`/`..`.
fn check_iso_path(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.len() <= 1024
        && p[1..].split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ISO path {p:?}: use /name/name with A-Z a-z 0-9 . _ - only"
        ))
    }
}

fn check_label(l: &str) -> Result<(), String> {
    let ok = !l.is_empty()
        && l.len() <= 32
        && l.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("volume label {l:?}: use 1 to 32 of A-Z 0-9 _"))
    }
}

/// What `-toc` reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Toc {
    state: Option<DiscState>,
    sessions: u32,
    label: Option<String>,
    readable_blocks: u64,
    writable_blocks: u64,
    overall_blocks: u64,
    nwa: u64,
}

impl Toc {
    fn default_blank() -> Self {
        Toc {
            state: Some(DiscState::Blank),
            ..Toc::default()
        }
    }

    fn parse(out: &str) -> Self {
        let mut t = Toc::default();
        for line in out.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "Media status" => {
                    t.state = Some(if value.contains("is blank") {
                        DiscState::Blank
                    } else if value.contains("is closed") {
                        DiscState::Closed
                    } else {
                        DiscState::Appendable
                    });
                }
                "Media blocks" => {
                    // "R readable , W writable , O overall"
                    let nums: Vec<u64> = value
                        .split(',')
                        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
                        .collect();
                    if let [r, w, o] = nums[..] {
                        (t.readable_blocks, t.writable_blocks, t.overall_blocks) = (r, w, o);
                    }
                }
                "Media nwa" => {
                    t.nwa = value.trim_end_matches('s').trim().parse().unwrap_or(0);
                }
                "ISO session" => {
                    // "idx , sbsector , size , volume id"
                    t.sessions += 1;
                    if let Some(l) = value.splitn(4, ',').nth(3) {
                        t.label = Some(l.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        t
    }
}

/// `Image size   : 384s` from `-print_size`.
fn parse_image_size(out: &str) -> Option<u64> {
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Image size")
            .then(|| v.trim().trim_end_matches('s').trim().parse().ok())
            .flatten()
    })
}

/// `File data lba:  0 , 62 , 147 , 300000 , '/objects/x.dcm'` lines from `-exec report_lba`.
fn parse_report_lba(out: &str) -> Vec<IsoEntry> {
    let mut entries: Vec<IsoEntry> = out
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("File data lba:")?;
            let parts: Vec<&str> = rest.splitn(5, ',').map(str::trim).collect();
            if parts.len() != 5 || parts[0] != "0" {
                return None; // later extents of a multi-extent file
            }
            let size = parts[3].parse().ok()?;
            let path = parts[4].trim_matches('\'').to_string();
            Some(IsoEntry { path, size })
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

impl OpticalDrive for XorrisoDrive {
    fn status(&mut self) -> Result<OpticalStatus, OpticalError> {
        let disc = match self.disc() {
            Ok(d) => d,
            Err(e) if e.kind() == super::OpticalErrorKind::NoMedium => {
                return Ok(OpticalStatus {
                    loaded: false,
                    state: None,
                    sessions: 0,
                    volume_label: None,
                    bytes_used: 0,
                    capacity: 0,
                })
            }
            Err(e) => return Err(e),
        };
        let toc = self.toc(&disc)?;
        let (bytes_used, capacity) = match &disc.image {
            Some((img, cap)) => (std::fs::metadata(img).map(|m| m.len()).unwrap_or(0), *cap),
            None => (toc.readable_blocks * BLOCK, toc.overall_blocks * BLOCK),
        };
        Ok(OpticalStatus {
            loaded: true,
            state: toc.state,
            sessions: toc.sessions,
            volume_label: toc.label,
            bytes_used,
            capacity,
        })
    }

    fn write_session(
        &mut self,
        volume_label: &str,
        files: &[(String, PathBuf)],
    ) -> Result<SessionInfo, OpticalError> {
        check_label(volume_label).map_err(|m| self.invalid(m))?;
        if files.is_empty() {
            return Err(self.invalid("a session needs at least one file"));
        }
        let disc = self.disc()?;
        let toc = self.toc(&disc)?;
        if toc.state == Some(DiscState::Closed) {
            return Err(OpticalError::Closed {
                device: self.device_name(),
            });
        }
        let opts = self.options_file(files)?;
        let opts_s = opts.0.display().to_string();
        // Predict the session's size without writing anything (-rollback_end discards it).
        let out = self.run_ok(
            "-print_size",
            &[
                "-md5",
                "on",
                "-dev",
                &disc.dev,
                "-volid",
                volume_label,
                "-options_from_file",
                &opts_s,
                "-print_size",
                "-rollback_end",
            ],
        )?;
        let blocks = parse_image_size(&out)
            .ok_or_else(|| self.invalid("xorriso -print_size reported no image size"))?;
        let needed = blocks * BLOCK + MARGIN;
        let (used, free) = match &disc.image {
            Some((img, cap)) => {
                let size = std::fs::metadata(img).map(|m| m.len()).unwrap_or(0);
                let start = size.max(toc.nwa * BLOCK);
                (start, cap.saturating_sub(start))
            }
            None => (toc.readable_blocks * BLOCK, toc.writable_blocks * BLOCK),
        };
        if needed > free {
            tracing::info!(
                needed,
                free,
                used,
                "optical: session does not fit on the disc"
            );
            return Err(OpticalError::Full {
                device: self.device_name(),
                needed,
                free,
            });
        }
        self.run_ok(
            "-commit",
            &[
                "-abort_on",
                "FAILURE",
                "-md5",
                "on",
                "-dev",
                &disc.dev,
                "-volid",
                volume_label,
                "-options_from_file",
                &opts_s,
                "-close",
                "off",
                "-commit",
            ],
        )?;
        if let Some((img, _)) = &disc.image {
            // The image is the disc: make the session durable before reporting it written.
            std::fs::File::open(img)
                .and_then(|f| f.sync_all())
                .map_err(|e| OpticalError::Io {
                    path: img.clone(),
                    source: e,
                })?;
        }
        let after = self.status()?;
        Ok(SessionInfo {
            number: after.sessions,
            bytes_used: after.bytes_used,
        })
    }

    fn check_md5(&mut self) -> Result<(), OpticalError> {
        let disc = self.disc()?;
        if Self::blank_image(&disc) {
            return Err(self.invalid("the disc is blank: nothing to check"));
        }
        // Every data file must carry an MD5 ...
        let missing = self.run_ok(
            "-find -not -has_md5",
            &[
                "-md5", "on", "-indev", &disc.dev, "-find", "/", "-type", "f", "-not", "-has_md5",
            ],
        )?;
        let missing: Vec<&str> = missing.lines().filter(|l| l.starts_with('\'')).collect();
        if !missing.is_empty() {
            return Err(OpticalError::ChecksumMismatch {
                device: self.device_name(),
                detail: format!(
                    "{} file(s) without a recorded MD5, e.g. {}",
                    missing.len(),
                    missing[0]
                ),
            });
        }
        // ... and match it (xorriso exits non-zero on a mismatch).
        let out = self.run(
            "-check_md5_r",
            &[
                "-md5",
                "on",
                "-indev",
                &disc.dev,
                "-check_md5_r",
                "SORRY",
                "/",
                "--",
            ],
        )?;
        if !out.status.success() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let bad: Vec<&str> = stdout.lines().filter(|l| l.contains("MISMATCH")).collect();
            if !bad.is_empty() {
                return Err(OpticalError::ChecksumMismatch {
                    device: self.device_name(),
                    detail: bad.join("; "),
                });
            }
            return Err(self.tool_error("-check_md5_r", &out));
        }
        Ok(())
    }

    fn extract(&mut self, path_in_iso: &str, host_dest: &Path) -> Result<(), OpticalError> {
        check_iso_path(path_in_iso).map_err(|m| self.invalid(m))?;
        if host_dest.exists() {
            return Err(self.invalid(format!("{} already exists", host_dest.display())));
        }
        let dest = host_dest
            .to_str()
            .ok_or_else(|| self.invalid("destination is not UTF-8"))?;
        let disc = self.disc()?;
        self.run_ok(
            "-extract",
            &[
                "-osirrox",
                "on",
                "-md5",
                "on",
                "-indev",
                &disc.dev,
                "-extract",
                path_in_iso,
                dest,
            ],
        )?;
        if !host_dest.exists() {
            return Err(self.invalid(format!("{path_in_iso} is not on the disc")));
        }
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<IsoEntry>, OpticalError> {
        let disc = self.disc()?;
        if Self::blank_image(&disc) {
            return Ok(Vec::new());
        }
        let out = self.run_ok(
            "-find report_lba",
            &[
                "-indev",
                &disc.dev,
                "-find",
                "/",
                "-type",
                "f",
                "-exec",
                "report_lba",
                "--",
            ],
        )?;
        Ok(parse_report_lba(&out))
    }

    fn eject(&mut self) -> Result<(), OpticalError> {
        match &self.target {
            OpticalTarget::Emulated(tray) => match emulator::eject(tray)? {
                Some(_) => Ok(()),
                None => Err(OpticalError::NoMedium {
                    device: self.device_name(),
                }),
            },
            OpticalTarget::Device(p) => {
                let dev = p.display().to_string();
                self.run_ok("-eject", &["-outdev", &dev, "-eject", "all"])
                    .map(|_| ())
            }
        }
    }

    fn disc_name(&mut self) -> Option<String> {
        match &self.target {
            OpticalTarget::Emulated(tray) => emulator::loaded(tray).ok().flatten().map(|d| d.id),
            OpticalTarget::Device(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_lines_parse() {
        let out = "Media current: stdio file, overwriteable\n\
                   Media status : is written , is appendable\n\
                   Media blocks : 288 readable , 25431054 writable , 25431342 overall\n\
                   ISO session  :   1 ,        32 ,       175s , V1\n\
                   ISO session  :   2 ,       224 ,        32s , V2\n\
                   Media nwa    : 288s\n";
        let t = Toc::parse(out);
        assert_eq!(t.state, Some(DiscState::Appendable));
        assert_eq!(
            (t.sessions, t.label.as_deref(), t.nwa),
            (2, Some("V2"), 288)
        );
        assert_eq!((t.readable_blocks, t.overall_blocks), (288, 25_431_342));
        assert_eq!(
            Toc::parse("Media status : is blank\n").state,
            Some(DiscState::Blank)
        );
    }

    #[test]
    fn report_lba_and_size_parse() {
        let out = "Report layout: xt , Startlba ,   Blocks , Filesize , ISO image path\n\
                   File data lba:  0 ,       62 ,      147 ,   300000 , '/objects/b.dcm'\n\
                   File data lba:  0 ,       59 ,        3 ,     5000 , '/a/f2'\n";
        let e = parse_report_lba(out);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].path.as_str(), e[0].size), ("/a/f2", 5000));
        assert_eq!(parse_image_size("Image size   : 384s\n"), Some(384));
    }

    #[test]
    fn paths_and_labels_are_checked() {
        assert!(check_iso_path("/objects/ab12.dcm").is_ok());
        for bad in [
            "objects/a",
            "/",
            "/a/../b",
            "/a b",
            "/a//b",
            "/a'b",
            "/a\nb",
        ] {
            assert!(check_iso_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_label("CAIRN_0001").is_ok());
        assert!(check_label("cairn").is_err() && check_label("").is_err());
    }
}
