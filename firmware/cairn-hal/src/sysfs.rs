//! Small sysfs helpers shared by the md, disk, LED, buzzer and SMART code: device names that
//! cannot walk out of their directory, and attributes read and written as sysfs expects.

use crate::HalError;
use std::path::Path;

/// Refuse names that could walk out of the directory they are joined to.
pub(crate) fn check_name(name: &str) -> Result<(), HalError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(HalError::invalid(name, "not a device name"));
    }
    Ok(())
}

/// Write a sysfs attribute in one `write` call, as sysfs expects.
pub(crate) fn write_attr(path: &Path, value: &str) -> Result<(), HalError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| HalError::io(path, e))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(|e| HalError::io(path, e))
}

/// Read a sysfs attribute, trimmed; `None` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, HalError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HalError::io(path, e)),
    }
}
