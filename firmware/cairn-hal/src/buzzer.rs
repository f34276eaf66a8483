//! Buzzers: a narrow [`Buzzer`] trait (a tone on, or off) with the drivers a board file can
//! choose, and the front button reader.

use crate::board::{ButtonConfig, BuzzerConfig};
use crate::HalError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Something that can make noise.
pub trait Buzzer: Send {
    /// Sound `hz` (a driver without pitch just switches on), or stop with 0.
    fn tone(&mut self, hz: u32) -> Result<(), HalError>;
}

/// Open the driver a board file names.
pub fn open(config: &BuzzerConfig, root: &Path) -> Result<Box<dyn Buzzer>, HalError> {
    Ok(match config {
        BuzzerConfig::Pcspkr { device } => Box::new(PcSpeaker::open(device)?),
        BuzzerConfig::Gpio { chip, line } => Box::new(gpio::GpioLine::open(chip, *line)?),
        BuzzerConfig::SysfsLed { led } => Box::new(SysfsLed::new(root, led)?),
        BuzzerConfig::Emulated { file } => Box::new(EmulatedBuzzer::new(file)),
    })
}

/// One recorded tone change of the emulated buzzer (a line of its JSONL file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToneRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The tone, 0 for silence.
    pub hz: u32,
}

/// The emulator: appends a [`ToneRecord`] line per change to a file, so tests can read what
/// would have been heard and when.
#[derive(Debug)]
pub struct EmulatedBuzzer {
    path: PathBuf,
}

impl EmulatedBuzzer {
    /// Record into `path` (appended, created when missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Read a record file back.
    pub fn read(path: &Path) -> Result<Vec<ToneRecord>, HalError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HalError::io(path, e)),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

impl Buzzer for EmulatedBuzzer {
    fn tone(&mut self, hz: u32) -> Result<(), HalError> {
        let line = serde_json::to_string(&ToneRecord {
            at_ms: crate::now_ms(),
            hz,
        })
        .map_err(|e| HalError::invalid("tone record", e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| HalError::io(&self.path, e))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| HalError::io(&self.path, e))
    }
}

const EV_SYN: u16 = 0x00;
const EV_KEY: u16 = 0x01;
const EV_SND: u16 = 0x12;
const SND_TONE: u16 = 0x02;

/// Bytes of one `struct input_event` (a `timeval`, then type, code, value).
fn input_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut ev = vec![0u8; std::mem::size_of::<libc::timeval>()];
    ev.extend_from_slice(&kind.to_ne_bytes());
    ev.extend_from_slice(&code.to_ne_bytes());
    ev.extend_from_slice(&value.to_ne_bytes());
    ev
}

/// The PC speaker through its evdev node: `EV_SND`/`SND_TONE` events written to it.
#[derive(Debug)]
pub struct PcSpeaker {
    path: PathBuf,
    file: std::fs::File,
}

impl PcSpeaker {
    /// Open the speaker's input device for writing.
    pub fn open(path: &Path) -> Result<Self, HalError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| HalError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl Buzzer for PcSpeaker {
    fn tone(&mut self, hz: u32) -> Result<(), HalError> {
        let mut bytes = input_event(EV_SND, SND_TONE, hz.min(20_000) as i32);
        bytes.extend(input_event(EV_SYN, 0, 0));
        self.file
            .write_all(&bytes)
            .map_err(|e| HalError::io(&self.path, e))
    }
}

/// A buzzer wired to a LED-class device: brightness 1 sounds, 0 stops.
#[derive(Debug)]
pub struct SysfsLed {
    path: PathBuf,
}

impl SysfsLed {
    /// The LED `<root>/sys/class/leds/<led>`.
    pub fn new(root: &Path, led: &str) -> Result<Self, HalError> {
        crate::sysfs::check_name(led)?;
        Ok(Self {
            path: root.join("sys/class/leds").join(led).join("brightness"),
        })
    }
}

impl Buzzer for SysfsLed {
    fn tone(&mut self, hz: u32) -> Result<(), HalError> {
        crate::sysfs::write_attr(&self.path, if hz > 0 { "1" } else { "0" })
    }
}

/// The front button: blocks reading key events and returns on each press.
#[derive(Debug)]
pub struct Button {
    path: PathBuf,
    file: std::fs::File,
    code: u16,
}

impl Button {
    /// Open the button's evdev node.
    pub fn open(config: &ButtonConfig) -> Result<Self, HalError> {
        let file =
            std::fs::File::open(&config.device).map_err(|e| HalError::io(&config.device, e))?;
        Ok(Self {
            path: config.device.clone(),
            file,
            code: config.code,
        })
    }

    /// Block until the button is pressed.
    pub fn wait_press(&mut self) -> Result<(), HalError> {
        let size = std::mem::size_of::<libc::timeval>() + 8;
        let mut buf = vec![0u8; size];
        loop {
            self.file
                .read_exact(&mut buf)
                .map_err(|e| HalError::io(&self.path, e))?;
            let t = std::mem::size_of::<libc::timeval>();
            let kind = u16::from_ne_bytes([buf[t], buf[t + 1]]);
            let code = u16::from_ne_bytes([buf[t + 2], buf[t + 3]]);
            let value = i32::from_ne_bytes([buf[t + 4], buf[t + 5], buf[t + 6], buf[t + 7]]);
            if kind == EV_KEY && code == self.code && value == 1 {
                return Ok(());
            }
        }
    }
}

/// A GPIO line driven through the GPIO character device (uAPI v2).
#[allow(unsafe_code)]
pub mod gpio {
    use super::Buzzer;
    use crate::HalError;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    const GPIO_V2_LINES_MAX: usize = 64;
    const GPIO_MAX_NAME_SIZE: usize = 32;
    const GPIO_V2_LINE_NUM_ATTRS_MAX: usize = 10;
    const GPIO_V2_LINE_FLAG_OUTPUT: u64 = 1 << 3;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct LineAttribute {
        id: u32,
        padding: u32,
        value: u64,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct LineConfigAttribute {
        attr: LineAttribute,
        mask: u64,
    }

    #[repr(C)]
    struct LineConfig {
        flags: u64,
        num_attrs: u32,
        padding: [u32; 5],
        attrs: [LineConfigAttribute; GPIO_V2_LINE_NUM_ATTRS_MAX],
    }

    #[repr(C)]
    struct LineRequest {
        offsets: [u32; GPIO_V2_LINES_MAX],
        consumer: [u8; GPIO_MAX_NAME_SIZE],
        config: LineConfig,
        num_lines: u32,
        event_buffer_size: u32,
        padding: [u32; 5],
        fd: i32,
    }

    #[repr(C)]
    struct LineValues {
        bits: u64,
        mask: u64,
    }

    nix::ioctl_readwrite!(
        /// `GPIO_V2_GET_LINE_IOCTL`: request lines of a chip, returns a line fd.
        gpio_v2_get_line,
        0xB4,
        0x07,
        LineRequest
    );
    nix::ioctl_readwrite!(
        /// `GPIO_V2_LINE_SET_VALUES_IOCTL`: set requested output lines.
        gpio_v2_line_set_values,
        0xB4,
        0x0F,
        LineValues
    );

    /// One output line requested from a GPIO chip; high sounds, low stops.
    #[derive(Debug)]
    pub struct GpioLine {
        line: OwnedFd,
    }

    impl GpioLine {
        /// Request `line` of `chip` as an output named "cairn-buzzer".
        pub fn open(chip: &Path, line: u32) -> Result<Self, HalError> {
            let chip_file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(chip)
                .map_err(|e| HalError::io(chip, e))?;
            let zero_attr = LineConfigAttribute {
                attr: LineAttribute {
                    id: 0,
                    padding: 0,
                    value: 0,
                },
                mask: 0,
            };
            let mut req = LineRequest {
                offsets: [0; GPIO_V2_LINES_MAX],
                consumer: [0; GPIO_MAX_NAME_SIZE],
                config: LineConfig {
                    flags: GPIO_V2_LINE_FLAG_OUTPUT,
                    num_attrs: 0,
                    padding: [0; 5],
                    attrs: [zero_attr; GPIO_V2_LINE_NUM_ATTRS_MAX],
                },
                num_lines: 1,
                event_buffer_size: 0,
                padding: [0; 5],
                fd: -1,
            };
            req.offsets[0] = line;
            let name = b"cairn-buzzer";
            req.consumer[..name.len()].copy_from_slice(name);
            // SAFETY: `req` is a fully initialised `struct gpio_v2_line_request` laid out as the
            // kernel's uAPI (repr(C), same field order and sizes); the chip fd is open for the
            // duration of the call and the kernel only writes `req.fd` back.
            unsafe { gpio_v2_get_line(chip_file.as_raw_fd(), &mut req) }
                .map_err(|e| HalError::io(chip, e.into()))?;
            if req.fd < 0 {
                return Err(HalError::invalid(
                    chip.display().to_string(),
                    "no line fd returned",
                ));
            }
            // SAFETY: on success the kernel returned a new file descriptor in `req.fd` that
            // nothing else owns; `OwnedFd` takes sole ownership and closes it on drop.
            let line = unsafe { OwnedFd::from_raw_fd(req.fd) };
            Ok(Self { line })
        }
    }

    impl Buzzer for GpioLine {
        fn tone(&mut self, hz: u32) -> Result<(), HalError> {
            let mut v = LineValues {
                bits: u64::from(hz > 0),
                mask: 1,
            };
            // SAFETY: `v` is a valid `struct gpio_v2_line_values`; the line fd is owned by
            // `self` and open for the whole call.
            unsafe { gpio_v2_line_set_values(self.line.as_raw_fd(), &mut v) }
                .map_err(|e| HalError::io("gpio line", e.into()))?;
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn uapi_sizes_match_the_kernel() {
            assert_eq!(std::mem::size_of::<LineAttribute>(), 16);
            assert_eq!(std::mem::size_of::<LineConfig>(), 272);
            assert_eq!(std::mem::size_of::<LineRequest>(), 592);
            assert_eq!(std::mem::size_of::<LineValues>(), 16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_records_tones() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b.jsonl");
        let mut b = EmulatedBuzzer::new(&p);
        b.tone(880).unwrap();
        b.tone(0).unwrap();
        let r = EmulatedBuzzer::read(&p).unwrap();
        assert_eq!(r.iter().map(|t| t.hz).collect::<Vec<_>>(), vec![880, 0]);
        assert!(r[0].at_ms <= r[1].at_ms);
    }

    #[test]
    fn input_event_layout() {
        let ev = input_event(EV_SND, SND_TONE, 440);
        assert_eq!(ev.len(), std::mem::size_of::<libc::timeval>() + 8);
    }

    #[test]
    fn sysfs_led_writes_brightness() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/class/leds/bz")).unwrap();
        std::fs::write(t.path().join("sys/class/leds/bz/brightness"), "0").unwrap();
        let mut b = SysfsLed::new(t.path(), "bz").unwrap();
        b.tone(1000).unwrap();
        let v = std::fs::read_to_string(t.path().join("sys/class/leds/bz/brightness")).unwrap();
        assert_eq!(v.trim(), "1");
    }
}
