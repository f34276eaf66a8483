//! The commented default configuration shipped with cairn, filled in on first demo run.

use std::net::IpAddr;
use std::path::PathBuf;

/// Values that fill the shipped default config.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Listen address for DICOM and HTTP.
    pub bind: IpAddr,
    /// DICOM port.
    pub dicom_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Accept unknown calling AEs.
    pub accept_unknown_peers: bool,
}

/// The complete commented default configuration, filled in.
pub fn default_toml(d: &Defaults) -> String {
    let data_dir = d.data_dir.display().to_string();
    // TOML basic string escaping for the path.
    let data_dir = data_dir.replace('\\', "\\\\").replace('"', "\\\"");
    include_str!("default.toml")
        .replace("@BIND@", &d.bind.to_string())
        .replace("@DICOM_PORT@", &d.dicom_port.to_string())
        .replace("@HTTP_PORT@", &d.http_port.to_string())
        .replace("@DATA_DIR@", &data_dir)
        .replace("@ACCEPT_UNKNOWN@", &d.accept_unknown_peers.to_string())
}
